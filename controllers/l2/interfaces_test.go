package l2_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/conditions"
)

// A node is eligible only if an interface its agent reports matches the policy's
// regexes: it gets no address while it has none, the policy's status names it, it takes
// its share once the interface appears, and losing it moves its addresses away with an
// Event that says why.
func TestInterfacesDecideEligibility(t *testing.T) {
	ctx := context.Background()
	g := NewWithT(t)
	ns := newNamespace(t)
	nodes := []string{"if-node-a", "if-node-b", "if-node-c"}
	newNodes(t, "if", nodes...)
	for _, n := range nodes {
		startAgent(t, n, 1)
	}
	reportInterfaces(t, "if-node-c", "uplink")
	p := newPolicy(t, "ifaces", ns, "if")
	for i := range 20 {
		newExternalIPService(t, ns, fmt.Sprintf("svc-%d", i), fmt.Sprintf("10.24.0.%d", i+1))
	}
	policyStatus := func(g Gomega) *metav1.Condition {
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(p), p)).To(Succeed())
		return conditions.Get(p.Status.Conditions, v1alpha1.ConditionReady)
	}
	g.Eventually(func(g Gomega) {
		c := policyStatus(g)
		g.Expect(p.Status.AnnouncedIPs).To(Equal(int32(20)))
		g.Expect(p.Status.EligibleNodes).To(Equal(int32(2)))
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.Status).To(Equal(metav1.ConditionTrue))
		g.Expect(c.Message).To(ContainSubstring("1 selected node(s) skipped because no interface matches spec.interfaces: if-node-c"))
	}).WithTimeout(10 * time.Second).Should(Succeed())
	g.Expect(npcExists(g, "if-node-c")).To(BeFalse(), "a node without eth1 got addresses")

	// The interface appears: the node takes its share (rendezvous: some of 20 addresses).
	reportInterfaces(t, "if-node-c", "eth1", "uplink")
	g.Eventually(func(g Gomega) {
		c := policyStatus(g)
		g.Expect(p.Status.EligibleNodes).To(Equal(int32(3)))
		g.Expect(c.Message).To(Equal("valid"))
		g.Expect(npcExists(g, "if-node-c")).To(BeTrue())
	}).WithTimeout(10 * time.Second).Should(Succeed())

	// node-a loses it: its addresses move, and the Services' events say why.
	reportInterfaces(t, "if-node-a")
	g.Eventually(func(g Gomega) { g.Expect(npcExists(g, "if-node-a")).To(BeFalse()) }).WithTimeout(10 * time.Second).Should(Succeed())
	eventuallyEvent(t, ns, "(was if-node-a: no interface matches spec.interfaces of policy ifaces (^eth1$); its agent reports no interface ARP/NDP can run on)")

	// Left with node-c alone, which lacks eth1 again: nothing is announced, and each
	// Service's condition names the interfaces node-c does have.
	reportInterfaces(t, "if-node-c", "uplink")
	n := &v1alpha1.NodeProxy{}
	g.Expect(k8s.Get(ctx, types.NamespacedName{Name: "if-node-b"}, n)).To(Succeed())
	g.Expect(k8s.Delete(ctx, n)).To(Succeed()) // no NodeProxy: nothing reported
	eventuallyCondition(t, ns, "svc-0", metav1.ConditionFalse, v1alpha1.ReasonNoEligibleNode,
		"if-node-c: no interface matches spec.interfaces of policy ifaces (^eth1$); its agent reports uplink")
	g.Eventually(func(g Gomega) {
		for _, node := range nodes {
			g.Expect(npcExists(g, node)).To(BeFalse(), node)
		}
		c := policyStatus(g)
		g.Expect(c.Message).To(ContainSubstring("no node is eligible"))
		g.Expect(c.Message).To(ContainSubstring("3 selected node(s) skipped because no interface matches spec.interfaces: if-node-a, if-node-b, if-node-c"))
	}).WithTimeout(10 * time.Second).Should(Succeed())
}

func npcExists(g Gomega, node string) bool {
	err := k8s.Get(context.Background(), types.NamespacedName{Name: "l2-" + node}, &v1alpha1.NodeProxyConfig{})
	if apierrors.IsNotFound(err) {
		return false
	}
	g.Expect(err).NotTo(HaveOccurred())
	return true
}
