package gateway_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/controllers/gateway"
	"github.com/portico-dev/portico/controllers/lbipam"
	"github.com/portico-dev/portico/internal/npcwriter"
	"github.com/portico-dev/portico/internal/testenv"
	"github.com/portico-dev/portico/internal/testnode"
	"github.com/portico-dev/portico/webhooks"
)

var (
	env  *testenv.Env
	k8s  client.Client
	node *testnode.Node
)

const installNS = "portico-system"

// nodeName is the suite's one node.
const nodeName = "gateway-node"

// TestMain runs a real apiserver with the Gateway API CRDs, the webhooks,
// LB-IPAM and the gateway controller, and one node: the real agent with an Envoy-like proxy,
// so Programmed comes from the nodes as in a cluster. The pool hands out
// 192.168.10.211 onwards; scenario S5's Gateway is the first to ask.
func TestMain(m *testing.M) {
	testenv.Main(m, testenv.Options{GatewayAPI: true, Webhooks: true}, func(e *testenv.Env) (func(), error) {
		env, k8s = e, e.Client
		return setup()
	})
}

func setup() (func(), error) {
	ctx := context.Background()
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: installNS}}); err != nil {
		return nil, err
	}
	// The class every test's Gateways use (scenario S5 applies the sample of it too).
	class := &gatewayv1.GatewayClass{ObjectMeta: metav1.ObjectMeta{Name: "portico"}, Spec: gatewayv1.GatewayClassSpec{ControllerName: "portico.dev/gateway-controller"}}
	if err := k8s.Create(ctx, class); err != nil {
		return nil, err
	}
	if err := bypassable(ctx, "vgatewayclassconfig.portico.dev"); err != nil {
		return nil, err
	}
	mopts := ctrl.Options{Scheme: env.Scheme, Metrics: metricsserver.Options{BindAddress: "0"},
		WebhookServer: webhook.NewServer(webhook.Options{
			Host: env.Webhook.LocalServingHost, Port: env.Webhook.LocalServingPort, CertDir: env.Webhook.LocalServingCertDir,
		})}
	// As the binary's cache holds them (cmd/*-controller).
	npcwriter.TrimCache(&mopts.Cache)
	mgr, err := ctrl.NewManager(env.Config, mopts)
	if err != nil {
		return nil, err
	}
	// The webhooks of the lbipam-controller and gateway-controller binaries,
	// served by this one manager.
	for _, setup := range []func(ctrl.Manager) error{
		func(mgr ctrl.Manager) error { return lbipam.Setup(mgr, lbipam.Options{}) },
		func(mgr ctrl.Manager) error { return gateway.Setup(mgr, gateway.Options{}) },
		webhooks.SetupIPPoolWebhook, webhooks.SetupNodeProxyConfigWebhook, webhooks.SetupGatewayClassConfigWebhook,
	} {
		if err := setup(mgr); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "manager:", err)
		}
	}()
	// The pool's webhook is served once the manager has started.
	pool := &v1alpha1.LoadBalancerIPPool{ObjectMeta: metav1.ObjectMeta{Name: "gateway-pool"},
		Spec: v1alpha1.LoadBalancerIPPoolSpec{Blocks: []v1alpha1.IPBlock{{Start: "192.168.10.211", Stop: "192.168.10.230"}}}}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		err := k8s.Create(ctx, pool)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			cancel()
			<-done
			return nil, err
		}
	}
	node, err = testnode.Start(ctx, env.Config, k8s, nodeName, testnode.Options{Namespace: installNS})
	if err != nil {
		cancel()
		<-done
		return nil, err
	}
	return func() { node.Stop(); cancel(); <-done }, nil
}

// bypassLabel exempts an object from the webhook named to bypassable, so a
// test can see what the controller does with what the webhook would refuse
// (webhook off, or an object older than a rule).
const bypassLabel = "test.portico.dev/bypass-webhook"

func bypassable(ctx context.Context, name string) error {
	var installed admissionv1.ValidatingWebhookConfigurationList
	if err := k8s.List(ctx, &installed); err != nil {
		return err
	}
	for i := range installed.Items {
		vwc := &installed.Items[i]
		for j := range vwc.Webhooks {
			if vwc.Webhooks[j].Name == name {
				vwc.Webhooks[j].ObjectSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
					{Key: bypassLabel, Operator: metav1.LabelSelectorOpDoesNotExist}}}
				return k8s.Update(ctx, vwc)
			}
		}
	}
	return fmt.Errorf("webhook %s is not installed", name)
}
