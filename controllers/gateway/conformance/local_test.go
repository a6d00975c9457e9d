package conformance_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/controllers/gateway"
	"github.com/portico-dev/portico/controllers/lbipam"
	"github.com/portico-dev/portico/internal/testenv"
	"github.com/portico-dev/portico/internal/testnode"
	translate "github.com/portico-dev/portico/internal/translate/gateway"
)

// The local control plane's addresses: LB-IPAM hands Gateways addresses from
// the pool; the static-addresses test asks for one inside it (usable) and one
// outside (unusable). No traffic is ever sent to them.
const (
	poolStart = "192.168.10.100"
	poolStop  = "192.168.10.199"
	usable    = "192.168.10.250"
	unusable  = "192.168.11.250"
	poolExtra = "192.168.10.250"
)

const className = "portico"

// kwokNode is the node kwok simulates: Pods bound to it become Ready.
const kwokNode = "kwok-node"

// local starts what a cluster would run: kube-controller-manager (Deployments
// make Pods, EndpointSlices), kwok making those Pods Ready on a simulated node,
// a binder standing in for the scheduler, LB-IPAM, the gateway controller and
// node agents whose Envoy-like proxies acknowledge what they are served.
func local(env *testenv.Env) (func(), error) {
	ctx := context.Background()
	var stops []func()
	stopAll := func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	fail := func(err error) (func(), error) { stopAll(); return nil, err }
	logDir := os.Getenv("PORTICO_CONFORMANCE_LOGS")
	logFile := func(name string) string {
		if logDir == "" {
			return ""
		}
		return filepath.Join(logDir, name)
	}
	kcm, err := env.StartControllerManager([]string{"deployment", "replicaset", "endpointslice", "garbagecollector", "namespace", "serviceaccount"}, logFile("kcm.log"))
	if err != nil {
		return fail(err)
	}
	stops = append(stops, kcm)
	kw, err := env.StartKwok(logFile("kwok.log"))
	if err != nil {
		return fail(err)
	}
	stops = append(stops, kw)
	for _, obj := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "portico-system"}},
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: kwokNode, Annotations: map[string]string{"kwok.x-k8s.io/node": "fake"},
			Labels: map[string]string{corev1.LabelHostname: kwokNode, "type": "kwok"}}},
		&v1alpha1.LoadBalancerIPPool{ObjectMeta: metav1.ObjectMeta{Name: "conformance"}, Spec: v1alpha1.LoadBalancerIPPoolSpec{
			Blocks: []v1alpha1.IPBlock{{Start: poolStart, Stop: poolStop}, {Start: poolExtra, Stop: poolExtra}}}},
		&gatewayv1.GatewayClass{ObjectMeta: metav1.ObjectMeta{Name: className}, Spec: gatewayv1.GatewayClassSpec{ControllerName: translate.ControllerName}},
	} {
		if err := env.Client.Create(ctx, obj); err != nil && !apierrors.IsAlreadyExists(err) {
			return fail(err)
		}
	}
	bctx, bcancel := context.WithCancel(ctx)
	stops = append(stops, bcancel)
	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		return fail(err)
	}
	go bind(bctx, cs)

	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{Scheme: env.Scheme, Metrics: metricsserver.Options{BindAddress: "0"}})
	if err != nil {
		return fail(err)
	}
	if err := lbipam.Setup(mgr, lbipam.Options{}); err != nil {
		return fail(err)
	}
	if err := gateway.Setup(mgr, gateway.Options{}); err != nil {
		return fail(err)
	}
	mctx, mcancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(mctx); err != nil {
			fmt.Fprintln(os.Stderr, "manager:", err)
		}
	}()
	stops = append(stops, func() { mcancel(); <-done })
	for _, name := range []string{"node-a", "node-b"} {
		n, err := testnode.Start(ctx, env.Config, env.Client, name, testnode.Options{Namespace: "portico-system"})
		if err != nil {
			return fail(err)
		}
		stops = append(stops, n.Stop)
	}
	return stopAll, nil
}

// bind stands in for kube-scheduler: every unscheduled Pod goes to the kwok node.
func bind(ctx context.Context, cs kubernetes.Interface) {
	for ctx.Err() == nil {
		pods, err := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("spec.nodeName", "").String()})
		if err == nil {
			for _, p := range pods.Items {
				b := &corev1.Binding{ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: p.Name, UID: p.UID},
					Target: corev1.ObjectReference{Kind: "Node", Name: kwokNode}}
				_ = cs.CoreV1().Pods(p.Namespace).Bind(ctx, b, metav1.CreateOptions{})
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}
