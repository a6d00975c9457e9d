package lbipam_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/controllers/lbipam"
	"github.com/portico-dev/portico/internal/conditions"
	"github.com/portico-dev/portico/internal/testenv"
	"github.com/portico-dev/portico/internal/vipguard"
	"github.com/portico-dev/portico/webhooks"
)

var (
	env         *testenv.Env
	k8s         client.Client
	stopManager context.CancelFunc
)

func TestMain(m *testing.M) {
	testenv.Main(m, testenv.Options{
		Webhooks: true,
		// Dual-stack Services need a dual-stack service CIDR.
		APIServerArgs: map[string]string{"service-cluster-ip-range": "10.0.0.0/16,fd00:10::/108"},
	}, func(e *testenv.Env) (func(), error) {
		env, k8s = e, e.Client
		stopWebhook, err := startManager(false, true, lbipam.Options{})
		if err != nil {
			return nil, err
		}
		if stopManager, err = startController(lbipam.Options{}); err != nil {
			stopWebhook()
			return nil, err
		}
		return func() { stopManager(); stopWebhook() }, nil
	})
}

// ctrlOpts lets the restart test run a second manager with the same controller names.
func ctrlOpts() config.Controller { return config.Controller{SkipNameValidation: ptr.To(true)} }

// startController runs the LB-IPAM controller as the binary does. The webhook runs in a
// manager of its own for the whole suite, so that restarting the controller in a test
// does not make admission fail.
func startController(opts lbipam.Options) (context.CancelFunc, error) {
	return startManager(true, false, opts)
}

func startManager(controller, hooks bool, opts lbipam.Options) (context.CancelFunc, error) {
	mopts := ctrl.Options{Scheme: env.Scheme, Metrics: metricsserver.Options{BindAddress: "0"}, Controller: ctrlOpts()}
	if hooks {
		mopts.WebhookServer = webhook.NewServer(webhook.Options{
			Host: env.Webhook.LocalServingHost, Port: env.Webhook.LocalServingPort, CertDir: env.Webhook.LocalServingCertDir,
		})
		// As cmd/lbipam-controller caches Nodes.
		mopts.Cache = cache.Options{ByObject: map[client.Object]cache.ByObject{&corev1.Node{}: {Transform: vipguard.TrimNode}}}
	}
	mgr, err := ctrl.NewManager(env.Config, mopts)
	if err != nil {
		return nil, err
	}
	if controller {
		if err := lbipam.Setup(mgr, opts); err != nil {
			return nil, err
		}
	}
	if hooks {
		if err := webhooks.SetupIPPoolWebhook(mgr); err != nil {
			return nil, err
		}
		if err := webhooks.SetupNodeProxyConfigWebhook(mgr); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "manager:", err)
		}
	}()
	return func() { cancel(); <-done }, nil
}

// newNamespace creates a namespace for one test.
func newNamespace(t *testing.T) string {
	t.Helper()
	name := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	if len(name) > 50 {
		name = name[:50]
	}
	name = strings.Trim(name, "-") + fmt.Sprintf("-%d", time.Now().UnixNano()%100000)
	if err := k8s.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
		t.Fatal(err)
	}
	return name
}

// newPool creates a pool selecting only Services of ns (all when ns is ""), removed after the test.
func newPool(t *testing.T, name, ns string, blocks ...v1alpha1.IPBlock) *v1alpha1.LoadBalancerIPPool {
	t.Helper()
	p := &v1alpha1.LoadBalancerIPPool{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.LoadBalancerIPPoolSpec{Blocks: blocks}}
	if ns != "" {
		p.Spec.ServiceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"io.kubernetes.service.namespace": ns}}
	}
	if err := k8s.Create(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deletePool(t, name) })
	return p
}

func deletePool(t *testing.T, name string) {
	ctx := context.Background()
	p := &v1alpha1.LoadBalancerIPPool{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := k8s.Delete(ctx, p); err != nil && !apierrors.IsNotFound(err) {
		t.Error(err)
	}
	NewWithT(t).Eventually(func() bool {
		return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(p), p))
	}).Should(BeTrue())
}

type svcOpt func(*corev1.Service)

func withAnnotation(k, v string) svcOpt {
	return func(s *corev1.Service) {
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		s.Annotations[k] = v
	}
}

func withPorts(ports ...int32) svcOpt {
	return func(s *corev1.Service) {
		s.Spec.Ports = nil
		for _, p := range ports {
			s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: fmt.Sprintf("p%d", p), Port: p, Protocol: corev1.ProtocolTCP})
		}
	}
}

func newService(t *testing.T, ns, name string, opts ...svcOpt) *corev1.Service {
	t.Helper()
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"app": name},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}},
	}
	for _, o := range opts {
		o(s)
	}
	if err := k8s.Create(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	return s
}

// ips returns the Service's status addresses and its IPAMRequestSatisfied condition.
func ips(t *testing.T, ns, name string) ([]string, *metav1.Condition) {
	t.Helper()
	s := &corev1.Service{}
	if err := k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, s); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, in := range s.Status.LoadBalancer.Ingress {
		out = append(out, in.IP)
	}
	return out, conditions.Get(s.Status.Conditions, v1alpha1.ConditionIPAMRequestSatisfied)
}

// eventuallyIPs waits until the Service shows exactly want and returns its condition.
func eventuallyIPs(t *testing.T, ns, name string, want ...string) *metav1.Condition {
	t.Helper()
	var cond *metav1.Condition
	NewWithT(t).Eventually(func(g Gomega) {
		var got []string
		got, cond = ips(t, ns, name)
		g.Expect(got).To(Equal(want), "condition: %+v", cond)
		g.Expect(cond).NotTo(BeNil())
	}).WithTimeout(10 * time.Second).Should(Succeed())
	return cond
}

// eventuallyCondition waits for the Service's condition to have reason and a message with substr.
func eventuallyCondition(t *testing.T, ns, name string, status metav1.ConditionStatus, reason v1alpha1.ConditionReason, substr string) {
	t.Helper()
	NewWithT(t).Eventually(func(g Gomega) {
		_, cond := ips(t, ns, name)
		g.Expect(cond).NotTo(BeNil())
		g.Expect(cond.Status).To(Equal(status))
		g.Expect(cond.Reason).To(Equal(string(reason)))
		g.Expect(cond.Message).To(ContainSubstring(substr))
	}).WithTimeout(10 * time.Second).Should(Succeed())
}

// disableWebhook removes the webhook configuration, as a cluster without the webhook
// has it, and returns the function that puts it back and waits until admission uses it
// again (idempotent). The apiserver sees the removal through its own informer, so
// admission may still call the webhook for a moment after this returns.
func disableWebhook(t *testing.T) (restore func()) {
	t.Helper()
	ctx := context.Background()
	g := NewWithT(t)
	vwcs := &admissionv1.ValidatingWebhookConfigurationList{}
	g.Expect(k8s.List(ctx, vwcs)).To(Succeed())
	g.Expect(vwcs.Items).NotTo(BeEmpty())
	saved := vwcs.Items[0].DeepCopy()
	g.Expect(k8s.Delete(ctx, &vwcs.Items[0])).To(Succeed())
	restored := false
	return func() {
		if restored {
			return
		}
		restored = true
		saved.ResourceVersion, saved.UID = "", ""
		g.Expect(k8s.Create(ctx, saved)).To(Succeed())
		// Wait until admission uses it again, or a later test could be admitted
		// without it: a pool with host bits is refused only by the webhook.
		g.Eventually(func() error {
			probe := &v1alpha1.LoadBalancerIPPool{ObjectMeta: metav1.ObjectMeta{Name: "webhook-probe"},
				Spec: v1alpha1.LoadBalancerIPPoolSpec{Blocks: []v1alpha1.IPBlock{{CIDR: "10.54.9.1/24"}}}}
			err := k8s.Create(ctx, probe)
			if err == nil {
				_ = k8s.Delete(ctx, probe)
				return errors.New("the webhook is not back yet")
			}
			if !strings.Contains(err.Error(), "has host bits set") {
				return err
			}
			return nil
		}).Should(Succeed())
	}
}
