package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/l2quorum"
)

var (
	lbIPv4 = netip.MustParseAddr("10.253.0.211")
	lbIPv6 = netip.MustParseAddr("fd00:253::211")
)

// setupS1S2 applies scenario S1's pool (in the lab's subnet) and S2's policy, and one
// LoadBalancer Service per family.
func setupS1S2(t testing.TB, r *l2rig) {
	ctx := context.Background()
	must(t, r.env.Client.Create(ctx, &v1alpha1.LoadBalancerIPPool{ObjectMeta: metav1.ObjectMeta{Name: "lb-pool"},
		Spec: v1alpha1.LoadBalancerIPPoolSpec{Blocks: []v1alpha1.IPBlock{
			{Start: "10.253.0.211", Stop: "10.253.0.215"}, {Start: "fd00:253::211", Stop: "fd00:253::215"}}}}))
	must(t, r.env.Client.Create(ctx, &v1alpha1.L2AnnouncementPolicy{ObjectMeta: metav1.ObjectMeta{Name: "policy1"},
		Spec: v1alpha1.L2AnnouncementPolicySpec{Interfaces: []string{"^eth1$"}, ExternalIPs: true, LoadBalancerIPs: true}}))
	for name, fam := range map[string]corev1.IPFamily{"web4": corev1.IPv4Protocol, "web6": corev1.IPv6Protocol} {
		must(t, r.env.Client.Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, IPFamilies: []corev1.IPFamily{fam},
				Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}))
	}
}

// TestL2AnnouncementAndFailover is scenarios S1 and S2 on a real bridge: exactly the
// assigned node answers ARP and NDP for the Service addresses; kill -9 of its agent makes
// another node answer, and the client's neighbour entry moves to it from the gratuitous
// ARP without the client asking; SIGTERM hands over at once.
func TestL2AnnouncementAndFailover(t *testing.T) {
	r := newL2Rig(t)
	g := NewWithT(t)
	setupS1S2(t, r)

	r.waitEligible(g, "policy1", 3)
	for _, c := range []struct {
		svc string
		ip  netip.Addr
	}{{"web4", lbIPv4}, {"web6", lbIPv6}} {
		owner := r.waitAnswered(g, "default", c.svc, c.ip)
		for range 3 {
			g.Expect(r.answerers(c.ip, 500*time.Millisecond)).To(HaveEach(Equal(owner)))
		}
		t.Logf("%s (%s) is announced by %s", c.ip, c.svc, owner)
	}

	// kill -9: the client learns the new owner from the gratuitous ARP. The client first
	// resolves the address through its kernel, so it has an entry to be moved.
	owner := r.announcer("default", "web4")
	_, _ = r.client.Run("ping", "-c", "1", "-W", "1", lbIPv4.String())
	g.Eventually(func() string { return r.neighbour(lbIPv4) }).WithTimeout(5 * time.Second).Should(Equal(r.nodes[owner].MAC.String()))
	killed := time.Now()
	r.stopAgent(owner, unix.SIGKILL)
	var moved string
	g.Eventually(func() string {
		moved = r.nodeOfMAC(r.neighbour(lbIPv4))
		return moved
	}).WithTimeout(10*time.Second).WithPolling(20*time.Millisecond).ShouldNot(Equal(owner), "the client's neighbour entry never moved")
	t.Logf("kill -9 of %s's agent: the client's neighbour entry moved to %s after %v", owner, moved, time.Since(killed).Round(time.Millisecond))
	g.Expect(slices.Contains([]string{"n1", "n2", "n3"}, moved)).To(BeTrue())
	g.Eventually(func() string { return r.announcer("default", "web4") }).Should(Equal(moved))
	for _, m := range r.arping(lbIPv4, time.Second) {
		g.Expect(r.nodeOfMAC(m)).To(Equal(moved), "the killed node must not answer")
	}

	// SIGTERM of the new owner: the agent stops answering, then leaves the memberlist
	// cluster, and the controller hands over on the leave (the Event says so) rather than
	// on a failure detection. A client probing throughout never hears both nodes at once.
	r.startAgent(owner)
	r.waitEligible(g, "policy1", 3)
	current := r.waitAnswered(g, "default", "web4", lbIPv4)
	probe := r.startSlotProbe(t, lbIPv4, 2*time.Millisecond)
	stopped := time.Now()
	r.stopAgent(current, unix.SIGTERM) // returns once the process has exited
	mac, at, ok := probe.FirstOther(r.nodes[current].MAC.String(), stopped, 10*time.Second)
	time.Sleep(time.Second)
	probe.Stop()
	g.Expect(ok).To(BeTrue(), "no other node answered after SIGTERM of %s's agent", current)
	st := probe.Stats(time.Time{}, time.Time{})
	g.Expect(st.Doubles).To(BeEmpty(), "requests answered by two nodes around the SIGTERM")
	g.Expect(st.Last[r.nodes[current].MAC.String()]).To(BeTemporally("<", at), "%s still answered after %s took over", current, r.nodeOfMAC(mac))
	t.Logf("SIGTERM of %s's agent: %s answered after %v", current, r.nodeOfMAC(mac), at.Sub(stopped).Round(time.Millisecond))
	g.Eventually(func() string {
		out, _ := r.env.Kubectl(context.Background(), "get", "events", "-n", "default", "-o", "custom-columns=NOTE:.note,MSG:.message")
		return out
	}).WithTimeout(10 * time.Second).Should(ContainSubstring(fmt.Sprintf("announced by %s (was %s: %s)", r.nodeOfMAC(mac), current, l2quorum.DownLeft)))
}
