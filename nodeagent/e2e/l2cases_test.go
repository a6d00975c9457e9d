package e2e

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/controllers/l2"
	"github.com/portico-dev/portico/internal/l2assign"
)

// kill -9 of the agent announcing the IPv6 address: another node answers NDP, and the
// client's neighbour entry moves to it from the unsolicited Neighbor Advertisement,
// without the client soliciting again.
func TestL2IPv6FailoverMovesNeighbourByUnsolicitedNA(t *testing.T) {
	r := newL2Rig(t)
	g := NewWithT(t)
	setupS1S2(t, r)
	r.waitEligible(g, "policy1", 3)
	owner := r.waitAnswered(g, "default", "web6", lbIPv6)

	// The client resolves the address through its kernel, so it has an entry to move.
	_, _ = r.client.Run("ping", "-6", "-c", "1", "-W", "1", lbIPv6.String())
	g.Eventually(func() string { return r.neighbour(lbIPv6) }).WithTimeout(5 * time.Second).Should(Equal(r.nodes[owner].MAC.String()))
	killed := time.Now()
	r.stopAgent(owner, unix.SIGKILL)
	var moved string
	g.Eventually(func() string {
		moved = r.nodeOfMAC(r.neighbour(lbIPv6))
		return moved
	}).WithTimeout(10*time.Second).WithPolling(20*time.Millisecond).ShouldNot(Equal(owner), "the client's IPv6 neighbour entry never moved")
	t.Logf("kill -9 of %s's agent: the client's IPv6 neighbour entry moved to %s after %v", owner, moved, time.Since(killed).Round(time.Millisecond))
	g.Expect(slices.Contains([]string{"n1", "n2", "n3"}, moved)).To(BeTrue(), "moved to an unknown MAC: %s", moved)
	g.Expect(r.waitAnswered(g, "default", "web6", lbIPv6)).To(Equal(moved))
}

// A node labelled node.kubernetes.io/exclude-from-external-load-balancers never answers:
// labelling the announcing node moves the address off it, and even as the last live
// node it stays silent.
func TestL2ExcludedNodeNeverAnswers(t *testing.T) {
	r := newL2Rig(t)
	g := NewWithT(t)
	ctx := context.Background()
	setupS1S2(t, r)
	r.waitEligible(g, "policy1", 3)
	owner := r.waitAnswered(g, "default", "web4", lbIPv4)

	n := &corev1.Node{}
	must(t, r.env.Client.Get(ctx, client.ObjectKey{Name: owner}, n))
	n.Labels[l2assign.LabelExcludeFromLB] = ""
	must(t, r.env.Client.Update(ctx, n))
	g.Eventually(func() string { return r.announcer("default", "web4") }).WithTimeout(10 * time.Second).ShouldNot(Or(BeEmpty(), Equal(owner)))
	next := r.waitAnswered(g, "default", "web4", lbIPv4)
	g.Expect(next).NotTo(Equal(owner))
	t.Logf("labelling %s excluded moved %s to %s", owner, lbIPv4, next)

	// Only the excluded node left: nobody answers, and the condition says why.
	for name := range r.nodes {
		if name != owner {
			r.stopAgent(name, unix.SIGTERM)
		}
	}
	g.Eventually(func(g Gomega) {
		c := r.l2Condition(g, "default", "web4")
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(c.Message).To(ContainSubstring(owner + ": excluded by label " + l2assign.LabelExcludeFromLB))
	}).WithTimeout(10 * time.Second).Should(Succeed())
	for range 3 {
		g.Expect(r.answerers(lbIPv4, 500*time.Millisecond)).To(BeEmpty(), "someone answers with every announcing agent stopped but the excluded one")
	}
}

// externalTrafficPolicy: Local: only a node with a ready local endpoint announces, and
// moving the endpoint moves the announcement (and the client's neighbour entry, by
// gratuitous ARP). The endpoint is placed on the node rendezvous hashing ranks lowest,
// so the hash alone could not have chosen it.
func TestL2LocalTrafficPolicyFollowsEndpoint(t *testing.T) {
	r := newL2Rig(t)
	g := NewWithT(t)
	ctx := context.Background()
	setupS1S2(t, r)
	r.waitEligible(g, "policy1", 3)
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "local", Namespace: "default"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol},
			ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal,
			Selector:              map[string]string{"app": "local"}, Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}
	must(t, r.env.Client.Create(ctx, svc))
	var ip netip.Addr
	g.Eventually(func(g Gomega) {
		g.Expect(r.env.Client.Get(ctx, client.ObjectKeyFromObject(svc), svc)).To(Succeed())
		g.Expect(svc.Status.LoadBalancer.Ingress).NotTo(BeEmpty())
		ip = netip.MustParseAddr(svc.Status.LoadBalancer.Ingress[0].IP)
	}).WithTimeout(10 * time.Second).Should(Succeed())

	// No endpoint yet: nobody may announce.
	g.Eventually(func(g Gomega) {
		c := r.l2Condition(g, "default", "local")
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.Reason).To(Equal(string(v1alpha1.ReasonNoEligibleNode)))
		g.Expect(c.Message).To(ContainSubstring("no ready endpoint (externalTrafficPolicy: Local)"))
	}).WithTimeout(10 * time.Second).Should(Succeed())
	g.Expect(r.answerers(ip, 500*time.Millisecond)).To(BeEmpty())

	ranked := []string{"n1", "n2", "n3"}
	slices.SortFunc(ranked, func(a, b string) int {
		if l2assign.Score(ip, a) < l2assign.Score(ip, b) {
			return -1
		}
		return 1
	})
	first, second := ranked[0], ranked[1]
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "default", Name: "local-1", Labels: map[string]string{discoveryv1.LabelServiceName: "local"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.244.0.5"}, NodeName: ptr.To(first),
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
	}
	must(t, r.env.Client.Create(ctx, slice))
	g.Expect(r.waitAnswered(g, "default", "local", ip)).To(Equal(first))
	_, _ = r.client.Run("ping", "-c", "1", "-W", "1", ip.String())
	g.Eventually(func() string { return r.neighbour(ip) }).WithTimeout(5 * time.Second).Should(Equal(r.nodes[first].MAC.String()))

	slice.Endpoints[0].NodeName = ptr.To(second)
	must(t, r.env.Client.Update(ctx, slice))
	g.Eventually(func() string { return r.nodeOfMAC(r.neighbour(ip)) }).WithTimeout(10*time.Second).WithPolling(20*time.Millisecond).
		Should(Equal(second), "the client's neighbour entry did not follow the endpoint")
	g.Expect(r.waitAnswered(g, "default", "local", ip)).To(Equal(second))
}

// A policy whose interface regex matches nothing on a node: that node is never
// assigned and never answers, even as the last live node, and the policy status and
// Service condition say why. When the interface appears, the agent reports it and the
// node takes over.
func TestL2NodeWithoutMatchingInterfaceNeverAnswers(t *testing.T) {
	const odd = "n3"
	rename := func(r *l2rig, from, to string) {
		h := r.nodes[odd]
		h.MustRun("ip", "link", "set", from, "down")
		h.MustRun("ip", "link", "set", from, "name", to)
		h.MustRun("ip", "link", "set", to, "up")
	}
	r := newL2Rig(t, func(r *l2rig) { rename(r, "eth1", "uplink") })
	g := NewWithT(t)
	ctx := context.Background()
	setupS1S2(t, r)

	r.waitEligible(g, "policy1", 2)
	g.Eventually(func(g Gomega) {
		np := &v1alpha1.NodeProxy{}
		g.Expect(r.env.Client.Get(ctx, client.ObjectKey{Name: odd}, np)).To(Succeed())
		g.Expect(np.Status.Interfaces).To(Equal([]string{"uplink"}))
		p := &v1alpha1.L2AnnouncementPolicy{}
		g.Expect(r.env.Client.Get(ctx, client.ObjectKey{Name: "policy1"}, p)).To(Succeed())
		g.Expect(p.Status.Conditions).To(ContainElement(HaveField("Message",
			ContainSubstring("1 selected node(s) skipped because no interface matches spec.interfaces: "+odd))))
	}).WithTimeout(10 * time.Second).Should(Succeed())
	for _, c := range []struct {
		svc string
		ip  netip.Addr
	}{{"web4", lbIPv4}, {"web6", lbIPv6}} {
		g.Expect(r.waitAnswered(g, "default", c.svc, c.ip)).NotTo(Equal(odd))
	}

	// The others stop: n3 is the only live node, and still gets nothing.
	for name := range r.nodes {
		if name != odd {
			r.stopAgent(name, unix.SIGTERM)
		}
	}
	g.Eventually(func(g Gomega) {
		c := r.l2Condition(g, "default", "web4")
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(c.Message).To(ContainSubstring(odd + ": no interface matches spec.interfaces of policy policy1 (^eth1$); its agent reports uplink"))
	}).WithTimeout(10 * time.Second).Should(Succeed())
	for range 3 {
		g.Expect(r.answerers(lbIPv4, 500*time.Millisecond)).To(BeEmpty())
	}
	err := r.env.Client.Get(ctx, client.ObjectKey{Name: l2.NPCName(odd)}, &v1alpha1.NodeProxyConfig{})
	g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "%s has a NodeProxyConfig: %v", odd, err)

	// eth1 appears on n3: its agent sees the link change, reports it, and n3 takes over.
	rename(r, "uplink", "eth1")
	g.Expect(r.waitAnswered(g, "default", "web4", lbIPv4)).To(Equal(odd))
}
