package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/portico-dev/portico/internal/l2probe"
	"github.com/portico-dev/portico/internal/l2quorum"
)

func describeS2() {
	Describe("S2: L2 announcement of that address", Label("S2"), Ordered, func() {
		svc := lbService("s2-web")
		var ip netip.Addr

		BeforeAll(func(ctx SpecContext) {
			ensureBase(ctx)
			ensure(ctx, svc)
			DeferCleanup(func(ctx SpecContext) { remove(ctx, svc) })
			ip = serviceAddress("default", "s2-web")
		})

		It("names the announcing node in the Service's condition and Event, and counts it on the policy", func(ctx SpecContext) {
			var owner string
			Eventually(func() string { owner = announcer("default", "s2-web"); return owner }).ShouldNot(BeEmpty())
			Expect(cluster.Nodes()).To(ContainElement(owner))
			Eventually(kubectlFn("get", "l2policy", "policy1")).Should(MatchRegexp(`(?m)^policy1\s+True\s+\d+\s+\d+\s+%d\s+`, len(cluster.Nodes())))
			Eventually(kubectlFn("get", "events", "-n", "default", "--field-selector", "involvedObject.name=s2-web", "-o", "custom-columns=MSG:.message")).
				Should(ContainSubstring(fmt.Sprintf("%s announced by %s", ip, owner)))
			// The node's verdict reaches the user: its l2 config Programmed, the
			// condition saying the announcement is in effect.
			Eventually(kubectlFn("get", "nodeproxyconfigs", "-l", "portico.dev/producer=l2", "--no-headers")).
				Should(MatchRegexp(`(?m)^l2-%s\s+l2\s+True\s`, owner))
			Eventually(kubectlFn("get", "service", "s2-web", "-o", `jsonpath={.status.conditions[?(@.type=="L2Announced")].message}`)).
				Should(Equal(fmt.Sprintf("%s announced by %s (in effect)", ip, owner)))
		})

		It("is answered on ARP by exactly that node, as a client on the segment sees it", func() {
			needNetwork()
			owner := answeredBy("default", "s2-web", ip)
			for range 3 {
				who, out := cluster.Network().Arping(ip, 500*time.Millisecond)
				Expect(who).To(ConsistOf(owner), out)
			}
		})

		// kill -9: memberlist declares the agent dead (the node itself is fine, its
		// datapath pinned), the controller reassigns, the new node sends gratuitous ARP.
		It("moves to another node when the announcing agent is killed (kill -9), and the client learns it unasked", Label("faults"), func() {
			needNetwork()
			needFaults()
			owner := answeredBy("default", "s2-web", ip)
			// Give the client a neighbour entry for the address, for the gratuitous ARP to move.
			if c, err := cluster.Network().Dial(netip.AddrPortFrom(ip, 80), 300*time.Millisecond); err == nil {
				c.Close()
			}
			Eventually(func() string { return cluster.Network().Neighbour(ip) }).Should(Equal(owner))
			moved, took := failover(ip, owner, syscall.SIGKILL)
			AddReportEntry("kill -9 failover", fmt.Sprintf("%s -> %s after %v", owner, moved, took))
			Eventually(func() string { return cluster.Network().Neighbour(ip) }).WithTimeout(10*time.Second).
				Should(Equal(moved), "the client's neighbour entry did not follow the gratuitous ARP")
			Eventually(func() string { return announcer("default", "s2-web") }).Should(Equal(moved))
			restartAgent(owner)
		})

		It("hands over on SIGTERM, the Event saying the agent left", Label("faults"), func() {
			needNetwork()
			needFaults()
			owner := answeredBy("default", "s2-web", ip)
			moved, took := failover(ip, owner, syscall.SIGTERM)
			AddReportEntry("SIGTERM handover", fmt.Sprintf("%s -> %s after %v", owner, moved, took))
			Eventually(kubectlFn("get", "events", "-n", "default", "--field-selector", "involvedObject.name=s2-web", "-o", "custom-columns=MSG:.message")).
				Should(ContainSubstring(fmt.Sprintf("announced by %s (was %s: %s)", moved, owner, l2quorum.DownLeft)))
			restartAgent(owner)
		})
	})
}

// failover stops owner's agent with sig while the client probes ip every 2 ms, and
// returns the node that answered next and how long after the signal. Probing goes on
// until the old agent has exited plus 1 s; no request may be answered by two nodes, and
// the old node none after the new one started.
func failover(ip netip.Addr, owner string, sig syscall.Signal) (string, time.Duration) {
	GinkgoHelper()
	probe, err := cluster.Network().Slots(ip, 2*time.Millisecond)
	Expect(err).NotTo(HaveOccurred())
	defer probe.Stop()
	start := time.Now()
	cluster.Faults().StopAgent(owner, sig) // returns once it has exited
	time.Sleep(time.Second)
	var next string
	var at time.Time
	Eventually(func(g Gomega) {
		next, at = firstOther(probe, owner, start)
		g.Expect(next).NotTo(BeEmpty(), "no other node answered for %s after stopping %s", ip, owner)
	}).WithTimeout(15 * time.Second).WithPolling(20 * time.Millisecond).Should(Succeed())
	time.Sleep(time.Second)
	probe.Stop()
	st := probe.Stats(time.Time{}, time.Time{})
	Expect(st.Doubles).To(BeEmpty(), "requests answered by two nodes")
	for mac, last := range st.Last {
		if cluster.Network().NodeOfMAC(mac) == owner {
			Expect(last).To(BeTemporally("<", at), "%s answered after %s took over", owner, next)
		}
	}
	return next, at.Sub(start).Round(time.Millisecond)
}

// firstOther is the first node other than owner that answered after since, and when.
func firstOther(p *l2probe.Slots, owner string, since time.Time) (string, time.Time) {
	var who string
	var at time.Time
	for mac, first := range p.Stats(since, time.Time{}).First {
		if n := cluster.Network().NodeOfMAC(mac); n != owner && (at.IsZero() || first.Before(at)) {
			who, at = n, first
		}
	}
	return who, at
}

// restartAgent starts node's agent again and waits until every node is eligible.
func restartAgent(node string) {
	GinkgoHelper()
	cluster.Faults().StartAgent(node)
	ensureBase(context.Background())
}
