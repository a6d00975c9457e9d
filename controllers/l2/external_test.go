package l2_test

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-dev/portico/apis/v1alpha1"
)

// A tenant's Service with the router's address in spec.externalIPs is not announced
// (issue 10 §3): only addresses inside a LoadBalancerIPPool or the policy's
// externalIPCIDRs are, and the Service's condition names the rule. Adding a pool that
// covers the address makes it announced.
func TestExternalIPsOutsidePoolsAreNotAllowed(t *testing.T) {
	ns := newNamespace(t)
	newNodes(t, "ext", "ext-a")
	startAgent(t, "ext-a", 1)
	reportInterfaces(t, "ext-a", "eth1")
	newPolicy(t, "ext-policy", ns, "ext", func(p *v1alpha1.L2AnnouncementPolicy) { p.Spec.ExternalIPCIDRs = nil })
	newExternalIPService(t, ns, "hijack", "10.40.0.1")
	eventuallyCondition(t, ns, "hijack", metav1.ConditionFalse, v1alpha1.ReasonNotAllowed,
		"externalIPs 10.40.0.1 not announced: policy ext-policy announces spec.externalIPs only inside a LoadBalancerIPPool or its spec.externalIPCIDRs")
	g := NewWithT(t)
	g.Consistently(func(g Gomega) { g.Expect(announcers(g, ns, "hijack", "10.40.0.1")).To(BeEmpty()) }).
		WithTimeout(time.Second).Should(Succeed())

	pool := &v1alpha1.LoadBalancerIPPool{ObjectMeta: metav1.ObjectMeta{Name: "ext-pool"},
		Spec: v1alpha1.LoadBalancerIPPoolSpec{Blocks: []v1alpha1.IPBlock{{CIDR: "10.40.0.0/24"}}, Disabled: true}}
	must(t, k8s.Create(context.Background(), pool))
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), pool) })
	if n := eventuallyAnnouncedBy(t, ns, "hijack", "10.40.0.1"); n != "ext-a" {
		t.Errorf("announced by %q", n)
	}
}

// The webhook warns about an unanchored interface pattern (it would also match pod
// veths) and still admits the policy.
func TestWebhookWarnsOnUnanchoredInterface(t *testing.T) {
	var warnings []string
	cfg := *env.Config
	cfg.WarningHandler = warningRecorder{&warnings}
	c, err := client.New(&cfg, client.Options{Scheme: env.Scheme})
	must(t, err)
	p := &v1alpha1.L2AnnouncementPolicy{ObjectMeta: metav1.ObjectMeta{Name: "unanchored"},
		Spec: v1alpha1.L2AnnouncementPolicySpec{LoadBalancerIPs: true, Interfaces: []string{"^bond0$", "eth1"}}}
	g := NewWithT(t)
	g.Eventually(func() error { return c.Create(context.Background(), p) }).Should(Succeed())
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), p) })
	g.Expect(warnings).To(ContainElement(ContainSubstring(`spec.interfaces[1]: "eth1" is not anchored`)))
	g.Expect(warnings).NotTo(ContainElement(ContainSubstring("spec.interfaces[0]")))
}

type warningRecorder struct{ w *[]string }

func (r warningRecorder) HandleWarningHeader(_ int, _ string, text string) { *r.w = append(*r.w, text) }

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
