package l2_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/controllers/l2"
	"github.com/portico-dev/portico/controllers/lbipam"
	"github.com/portico-dev/portico/internal/conditions"
	"github.com/portico-dev/portico/internal/l2assign"
	"github.com/portico-dev/portico/internal/testenv"
	"github.com/portico-dev/portico/webhooks"
)

const leaseNS = "portico-system"

// bypassLabel exempts a policy from the test's webhook registration, to test what the
// controller does with a policy the webhook would have refused (webhook off).
const bypassLabel = "test.portico.dev/bypass-webhook"

var (
	env *testenv.Env
	k8s client.Client
	// writes counts the L2 controller's own mutating requests, by "VERB resource".
	writes = &writeCounter{counts: map[string]int64{}}
)

func TestMain(m *testing.M) {
	testenv.Main(m, testenv.Options{
		Webhooks: true,
		// The steady-state measurement creates 1,111 Services.
		APIServerArgs: map[string]string{"service-cluster-ip-range": "10.0.0.0/16"},
	}, func(e *testenv.Env) (func(), error) {
		env, k8s = e, e.Client
		return start()
	})
}

// start runs the L2 controller in a manager of its own whose requests are counted, and
// LB-IPAM with both webhooks in another, as the two binaries would run.
func start() (func(), error) {
	ctx := context.Background()
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: leaseNS}}); err != nil {
		return nil, err
	}
	// The generated configuration (config/webhook) registers the L2 webhook for every
	// policy. TestInvalidPolicy must also create a policy the webhook would refuse, to see
	// what the controller does with it: so the generated entry is swapped for the same
	// webhook with an object selector that lets labelled policies bypass it.
	var installed admissionv1.ValidatingWebhookConfigurationList
	if err := k8s.List(ctx, &installed); err != nil {
		return nil, err
	}
	for i := range installed.Items {
		vwc := &installed.Items[i]
		kept := vwc.Webhooks[:0]
		for _, w := range vwc.Webhooks {
			if w.Name != "vl2announcementpolicy.portico.dev" {
				kept = append(kept, w)
			}
		}
		vwc.Webhooks = kept
		if err := k8s.Update(ctx, vwc); err != nil {
			return nil, err
		}
	}
	url := fmt.Sprintf("https://%s:%d/validate-portico-dev-v1alpha1-l2announcementpolicy", env.Webhook.LocalServingHost, env.Webhook.LocalServingPort)
	vwc := &admissionv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "l2-policy-test"},
		Webhooks: []admissionv1.ValidatingWebhook{{
			Name: "vl2announcementpolicy.portico.dev", AdmissionReviewVersions: []string{"v1"},
			ClientConfig: admissionv1.WebhookClientConfig{URL: &url, CABundle: env.Webhook.LocalServingCAData},
			Rules: []admissionv1.RuleWithOperations{{
				Operations: []admissionv1.OperationType{admissionv1.Create, admissionv1.Update},
				Rule:       admissionv1.Rule{APIGroups: []string{"portico.dev"}, APIVersions: []string{"v1alpha1"}, Resources: []string{"l2announcementpolicies"}},
			}},
			FailurePolicy:  ptr.To(admissionv1.Fail),
			SideEffects:    ptr.To(admissionv1.SideEffectClassNone),
			ObjectSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: bypassLabel, Operator: metav1.LabelSelectorOpDoesNotExist}}},
		}},
	}
	if err := k8s.Create(ctx, vwc); err != nil {
		return nil, err
	}

	counted := rest.CopyConfig(env.Config)
	counted.Wrap(func(rt http.RoundTripper) http.RoundTripper { return writes.wrap(rt) })
	counted.QPS, counted.Burst = 200, 400
	stopL2, err := run(counted, nil, func(mgr ctrl.Manager) error { return l2.Setup(mgr, l2.Options{Namespace: leaseNS}) })
	if err != nil {
		return nil, err
	}
	hooks := webhook.NewServer(webhook.Options{Host: env.Webhook.LocalServingHost, Port: env.Webhook.LocalServingPort, CertDir: env.Webhook.LocalServingCertDir})
	stopIPAM, err := run(env.Config, hooks, func(mgr ctrl.Manager) error {
		if err := lbipam.Setup(mgr, lbipam.Options{}); err != nil {
			return err
		}
		if err := webhooks.SetupIPPoolWebhook(mgr); err != nil {
			return err
		}
		return webhooks.SetupL2PolicyWebhook(mgr)
	})
	if err != nil {
		stopL2()
		return nil, err
	}
	return func() { stopIPAM(); stopL2() }, nil
}

func run(cfg *rest.Config, hooks webhook.Server, setup func(ctrl.Manager) error) (func(), error) {
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{Scheme: env.Scheme, Metrics: metricsserver.Options{BindAddress: "0"},
		WebhookServer: hooks, Controller: config.Controller{SkipNameValidation: ptr.To(true)},
		// As cmd/l2-controller configures it, so the tests see what the binary sees.
		Cache: cache.Options{ByObject: map[client.Object]cache.ByObject{&v1alpha1.NodeProxy{}: {Transform: l2.TrimNodeProxy}}}})
	if err != nil {
		return nil, err
	}
	if err := setup(mgr); err != nil {
		return nil, err
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

type writeCounter struct {
	mu     sync.Mutex
	counts map[string]int64
}

type countingRT struct {
	rt http.RoundTripper
	c  *writeCounter
}

func (w *writeCounter) wrap(rt http.RoundTripper) http.RoundTripper { return &countingRT{rt: rt, c: w} }

func (r *countingRT) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodGet {
		r.c.mu.Lock()
		r.c.counts[req.Method+" "+resourceOf(req.URL.Path)]++
		r.c.mu.Unlock()
	}
	return r.rt.RoundTrip(req)
}

// resourceOf extracts the resource of /api/v1/... or /apis/<group>/<version>/... paths.
func resourceOf(path string) string {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	i := 3
	if parts[0] == "api" {
		i = 2
	}
	if i < len(parts) && parts[i] == "namespaces" && i+2 < len(parts) {
		i += 2
	}
	if i >= len(parts) {
		return path
	}
	if parts[len(parts)-1] == "status" {
		return parts[i] + "/status"
	}
	return parts[i]
}

func (w *writeCounter) snapshot() map[string]int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string]int64{}
	for k, v := range w.counts {
		out[k] = v
	}
	return out
}

// --- what the node agents do -----------------------------------------------------------

// agent writes a node's heartbeat Lease exactly as nodeagent/agent.Heartbeat does.
type agent struct {
	node     string
	duration int32
	stop     chan struct{}
	done     chan struct{}
	mu       sync.Mutex
	lastSent time.Time // when the last successful renewal was sent
	renewals atomic.Int64
}

// startAgent renews node's heartbeat every 200 ms with a lease of durationSeconds.
func startAgent(t *testing.T, node string, durationSeconds int32) *agent {
	t.Helper()
	a := &agent{node: node, duration: durationSeconds, stop: make(chan struct{}), done: make(chan struct{})}
	reportInterfaces(t, node, "eth1")
	if err := a.renew(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(a.done)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-a.stop:
				return
			case <-tick.C:
				_ = a.renew()
			}
		}
	}()
	t.Cleanup(func() { a.crash() })
	return a
}

func (a *agent) renew() error {
	ctx := context.Background()
	sent := time.Now()
	now := metav1.NewMicroTime(sent)
	l := &coordinationv1.Lease{}
	err := k8s.Get(ctx, types.NamespacedName{Namespace: leaseNS, Name: l2assign.LeasePrefix + a.node}, l)
	if apierrors.IsNotFound(err) {
		l = &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: leaseNS, Name: l2assign.LeasePrefix + a.node}}
		l.Spec = coordinationv1.LeaseSpec{HolderIdentity: ptr.To(a.node), LeaseDurationSeconds: ptr.To(a.duration), RenewTime: &now, AcquireTime: &now}
		err = k8s.Create(ctx, l)
	} else if err == nil {
		l.Spec.HolderIdentity, l.Spec.LeaseDurationSeconds, l.Spec.RenewTime = ptr.To(a.node), ptr.To(a.duration), &now
		err = k8s.Update(ctx, l)
	}
	if err == nil {
		a.mu.Lock()
		a.lastSent = sent
		a.mu.Unlock()
		a.renewals.Add(1)
	}
	return err
}

// crash stops renewing without releasing (idempotent) and returns when the last
// successful renewal was sent.
func (a *agent) crash() time.Time {
	select {
	case <-a.stop:
	default:
		close(a.stop)
	}
	<-a.done
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.lastSent
}

// reportInterfaces writes the node's NodeProxy status.interfaces as its agent does.
func reportInterfaces(t *testing.T, node string, names ...string) {
	t.Helper()
	ctx := context.Background()
	np := &v1alpha1.NodeProxy{}
	err := k8s.Get(ctx, types.NamespacedName{Name: node}, np)
	if apierrors.IsNotFound(err) {
		np = &v1alpha1.NodeProxy{ObjectMeta: metav1.ObjectMeta{Name: node}}
		if err = k8s.Create(ctx, np); err == nil {
			t.Cleanup(func() { _ = k8s.Delete(context.Background(), np) })
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	np.Status.Interfaces = names
	if err := k8s.Status().Update(ctx, np); err != nil {
		t.Fatal(err)
	}
}

// reportApplied writes what the node's agent reports once it has applied and
// programmed everything up to rv, with its proxy connected and its datapath ready.
func reportApplied(t *testing.T, node, rv string) {
	t.Helper()
	ctx := context.Background()
	np := &v1alpha1.NodeProxy{}
	if err := k8s.Get(ctx, types.NamespacedName{Name: node}, np); err != nil {
		t.Fatal(err)
	}
	np.Status.AppliedResourceVersion, np.Status.ProgrammedResourceVersion = rv, rv
	conditions.Set(&np.Status.Conditions, np.Generation, v1alpha1.ConditionProxyConnected, metav1.ConditionTrue, v1alpha1.ReasonConnected, "1 proxy connected")
	conditions.Set(&np.Status.Conditions, np.Generation, v1alpha1.ConditionDatapathReady, metav1.ConditionTrue, v1alpha1.ReasonProgrammed, "ready")
	if err := k8s.Status().Update(ctx, np); err != nil {
		t.Fatal(err)
	}
}

// --- fixtures ----------------------------------------------------------------------------

// newNodes creates Node objects labelled as a kubelet would, plus group=<group> so a
// test's policy selects only its own nodes.
func newNodes(t *testing.T, group string, names ...string) {
	t.Helper()
	for _, n := range names {
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n, Labels: map[string]string{corev1.LabelHostname: n, "l2test/group": group}}}
		if err := k8s.Create(context.Background(), node); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = k8s.Delete(context.Background(), node) })
	}
}

func newNamespace(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("%s-%d", strings.ToLower(strings.TrimPrefix(t.Name(), "Test")), time.Now().UnixNano()%100000)
	if len(name) > 60 {
		name = name[len(name)-60:]
	}
	name = strings.Trim(name, "-")
	if err := k8s.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
		t.Fatal(err)
	}
	return name
}

// newPolicy creates a policy selecting the Services of ns and the nodes of group.
func newPolicy(t *testing.T, name, ns, group string, mod ...func(*v1alpha1.L2AnnouncementPolicy)) *v1alpha1.L2AnnouncementPolicy {
	t.Helper()
	p := &v1alpha1.L2AnnouncementPolicy{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.L2AnnouncementPolicySpec{
		Interfaces: []string{"^eth1$"}, ExternalIPs: true, LoadBalancerIPs: true,
		// The tests' external addresses are in no pool; the allow-list has its own test.
		ExternalIPCIDRs: []string{"10.20.0.0/14", "10.24.0.0/16", "10.30.0.0/16"},
		ServiceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{l2assign.LabelServiceNamespace: ns}},
		NodeSelector:    &metav1.LabelSelector{MatchLabels: map[string]string{"l2test/group": group}},
	}}
	for _, m := range mod {
		m(p)
	}
	if err := k8s.Create(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), p) })
	return p
}

// newExternalIPService creates a ClusterIP Service with external addresses: the cheapest
// Service with something to announce (no status write needed).
func newExternalIPService(t *testing.T, ns, name string, ips ...string) {
	t.Helper()
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: corev1.ServiceSpec{
		ExternalIPs: ips, Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}}}
	if err := k8s.Create(context.Background(), s); err != nil {
		t.Fatal(err)
	}
}

// newForeignLBService creates a LoadBalancer Service of another class (LB-IPAM leaves it
// alone) and sets its status address as that implementation would.
func newForeignLBService(t *testing.T, ns, name, ip string, local bool) {
	t.Helper()
	ctx := context.Background()
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: corev1.ServiceSpec{
		Type: corev1.ServiceTypeLoadBalancer, LoadBalancerClass: ptr.To("test.portico.dev/other"),
		AllocateLoadBalancerNodePorts: ptr.To(false), Selector: map[string]string{"app": name},
		Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}}}
	if local {
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	}
	if err := k8s.Create(ctx, s); err != nil {
		t.Fatal(err)
	}
	s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: ip}}
	if err := k8s.Status().Update(ctx, s); err != nil {
		t.Fatal(err)
	}
}

// announcers returns the nodes whose l2 NodeProxyConfig announces ip for ns/name.
func announcers(g Gomega, ns, name, ip string) []string {
	var list v1alpha1.NodeProxyConfigList
	g.Expect(k8s.List(context.Background(), &list, client.MatchingLabels{v1alpha1.LabelProducer: l2.Producer})).To(Succeed())
	var out []string
	for _, npc := range list.Items {
		for _, a := range npc.Spec.Announcements {
			if a.IP == ip && a.Service.Namespace == ns && a.Service.Name == name {
				out = append(out, l2.NodeOf(&npc))
			}
		}
	}
	return out
}

// eventuallyAnnouncedBy waits until exactly one node announces ip and returns it.
func eventuallyAnnouncedBy(t *testing.T, ns, name, ip string) string {
	t.Helper()
	var node string
	NewWithT(t).Eventually(func(g Gomega) {
		got := announcers(g, ns, name, ip)
		g.Expect(got).To(HaveLen(1))
		node = got[0]
	}).WithTimeout(10 * time.Second).WithPolling(20 * time.Millisecond).Should(Succeed())
	return node
}

func l2Condition(g Gomega, ns, name string) *metav1.Condition {
	s := &corev1.Service{}
	g.Expect(k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, s)).To(Succeed())
	return conditions.Get(s.Status.Conditions, v1alpha1.ConditionL2Announced)
}

func eventuallyCondition(t *testing.T, ns, name string, status metav1.ConditionStatus, reason v1alpha1.ConditionReason, msg string) {
	t.Helper()
	NewWithT(t).Eventually(func(g Gomega) {
		c := l2Condition(g, ns, name)
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.Status).To(Equal(status))
		g.Expect(c.Reason).To(Equal(string(reason)))
		g.Expect(c.Message).To(ContainSubstring(msg))
	}).WithTimeout(10 * time.Second).Should(Succeed())
}

// eventuallyEvent waits for an Event on the Service whose note contains substr.
func eventuallyEvent(t *testing.T, ns, substr string) {
	t.Helper()
	NewWithT(t).Eventually(func() string {
		out, _ := env.Kubectl(context.Background(), "get", "events", "-n", ns, "-o", "custom-columns=NOTE:.note,MSG:.message")
		return out
	}).WithTimeout(10 * time.Second).Should(ContainSubstring(substr))
}
