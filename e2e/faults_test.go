package e2e

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-dev/portico/apis/v1alpha1"
	ingressctl "github.com/portico-dev/portico/controllers/ingress"
	"github.com/portico-dev/portico/internal/standin"
)

// freezeFor is how long the apiserver stays frozen.
const freezeFor = 30 * time.Second

func describeFaults() {
	Describe("faults", Label("faults"), Ordered, func() {
		var shared netip.Addr

		BeforeAll(func(ctx SpecContext) {
			needFaults()
			needNetwork()
			ensureS4(ctx)
			shared = serviceAddress(cluster.InstallNamespace(), ingressctl.SharedServiceName)
		})

		// The node stays up: its datapath is pinned and its proxy keeps its listeners,
		// so a connection through the redirect lives through the agent's death, and new
		// ones are redirected while it is away. The client reaches the node by a route,
		// as through an upstream router: which node answers ARP is S2's business.
		It("keeps a connection through the redirect working across kill -9 and SIGTERM of the node's agent", Label("agent-restart"), func() {
			node := notAnnouncing(cluster.InstallNamespace(), ingressctl.SharedServiceName)
			undo, err := cluster.Network().RouteVia(shared, node)
			Expect(err).NotTo(HaveOccurred())
			defer undo()
			addr := netip.AddrPortFrom(shared, 80)
			var conn net.Conn
			Eventually(func() (err error) { conn, err = cluster.Network().Dial(addr, time.Second); return err }).Should(Succeed())
			defer conn.Close()
			Expect(standin.RoundTrip(conn, "before\n")).To(Succeed())
			for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGTERM} {
				cluster.Faults().StopAgent(node, sig)
				Expect(standin.RoundTrip(conn, fmt.Sprintf("agent stopped (%v)\n", sig))).To(Succeed())
				expectTable(addr, node, s3Table[:1])
				restartAgent(node)
				Expect(standin.RoundTrip(conn, fmt.Sprintf("agent back after %v\n", sig))).To(Succeed())
				expectTable(addr, node, s3Table[:1])
			}
		})

		It("keeps every address and config when the controllers restart while objects change", Label("controller-restart"), func(ctx SpecContext) {
			doomed := ingress("doomed", pathTo{path: "/doomed", service: "details", port: 9080})
			ensure(ctx, doomed)
			ingressAddress("default", "doomed")
			addrs := held(ctx, Default)
			before := configGenerations(ctx)
			owner := answeredBy(cluster.InstallNamespace(), ingressctl.SharedServiceName, shared)
			probe, err := cluster.Network().Slots(shared, 20*time.Millisecond)
			Expect(err).NotTo(HaveOccurred())
			defer probe.Stop()

			for _, comp := range cluster.Faults().Controllers() {
				cluster.Faults().StopController(comp)
			}
			// While they are down: a new Service and Ingress, a changed and a deleted one.
			restarted := lbService("restart-web")
			newIng := ingress("restart-ingress", pathTo{path: "/restart", service: "details", port: 9080})
			Expect(k8s().Create(ctx, restarted)).To(Succeed())
			Expect(k8s().Create(ctx, newIng)).To(Succeed())
			DeferCleanup(func(ctx SpecContext) { remove(ctx, restarted, newIng) })
			Expect(k8s().Delete(ctx, doomed)).To(Succeed())
			changed := &networkingv1.Ingress{}
			Expect(k8s().Get(ctx, client.ObjectKey{Namespace: "default", Name: "basic-ingress2"}, changed)).To(Succeed())
			changed.Spec.Rules[0].HTTP.Paths = append(changed.Spec.Rules[0].HTTP.Paths, ingress("", pathTo{path: "/extra", service: "details", port: 9080}).Spec.Rules[0].HTTP.Paths...)
			Expect(k8s().Update(ctx, changed)).To(Succeed())
			time.Sleep(2 * time.Second)
			for _, comp := range cluster.Faults().Controllers() {
				cluster.Faults().StartController(comp)
			}

			Expect(ingressAddress("default", "restart-ingress")).To(Equal(shared))
			newIP := serviceAddress("default", "restart-web")
			Expect(addrs).NotTo(ContainElement(newIP), "the new Service got an address another holds")
			Eventually(func() error {
				return k8s().Get(ctx, client.ObjectKey{Name: "ingress.default.doomed"}, &v1alpha1.NodeProxyConfig{})
			}).
				Should(MatchError(ContainSubstring("not found")), "the deleted Ingress's config is still there")
			expectTable(netip.AddrPortFrom(shared, 80), owner, []request{
				{method: "GET", path: "/restart", backend: "details"}, {method: "GET", path: "/extra", backend: "details"},
				{method: "GET", path: "/details/1", backend: "details"}, {method: "GET", path: "/", backend: "productpage"}})
			// Nothing moved: every address held before is held by the same Service, and
			// the configs of untouched sources were not rewritten.
			Consistently(func(g Gomega) {
				now := held(ctx, g)
				for svc, a := range addrs {
					g.Expect(now).To(HaveKeyWithValue(svc, a), "address of %s", svc)
				}
			}).WithTimeout(5 * time.Second).WithPolling(500 * time.Millisecond).Should(Succeed())
			after := configGenerations(ctx)
			for _, name := range []string{"ingress.default.basic-ingress", "ingress.default.webpod-ingress", "ingress.default.shop"} {
				Expect(after[name]).To(Equal(before[name]), "%s was rewritten", name)
			}
			probe.Stop()
			st := probe.Stats(time.Time{}, time.Time{})
			Expect(st.Doubles).To(BeEmpty())
			// No withdrawal: the untouched configs were not rewritten (above), and no
			// silence as long as a withdrawal and reassignment (a starved machine may
			// still miss a few slots).
			Expect(st.MaxGap).To(BeNumerically("<", time.Second), "no ARP reply for %v around the restart (slots without a reply: %v)", st.MaxGap, st.Missed)
			for mac := range st.First {
				Expect(cluster.Network().NodeOfMAC(mac)).To(Equal(owner), "the shared address moved")
			}
		})

		It("keeps redirects serving and L2 answering while the apiserver is frozen", Label("apiserver-freeze"), func(ctx SpecContext) {
			owner := answeredBy(cluster.InstallNamespace(), ingressctl.SharedServiceName, shared)
			addr := netip.AddrPortFrom(shared, 80)
			conn, err := cluster.Network().Dial(addr, time.Second)
			Expect(err).NotTo(HaveOccurred())
			defer conn.Close()
			probe, err := cluster.Network().Slots(shared, 100*time.Millisecond)
			Expect(err).NotTo(HaveOccurred())
			defer probe.Stop()

			resume, err := cluster.Faults().FreezeAPIServer()
			Expect(err).NotTo(HaveOccurred())
			DeferCleanup(func() { _ = resume() })
			from := time.Now()
			for i := 0; time.Since(from) < freezeFor; i++ {
				Expect(standin.RoundTrip(conn, fmt.Sprintf("frozen %d\n", i))).To(Succeed())
				resp, err := cluster.Network().Request(addr, "GET", "/details/1", nil)
				Expect(err).NotTo(HaveOccurred())
				Expect(resp.Backend).To(Equal("details"), "a new request while the apiserver is frozen: %+v", resp)
				time.Sleep(2 * time.Second)
			}
			to := time.Now()
			Expect(resume()).To(Succeed())
			st := probe.Stats(from, to)
			AddReportEntry("ARP answered while the apiserver was frozen", fmt.Sprintf("%d replies to %d requests, longest gap %v", st.Replies, st.Requests, st.MaxGap))
			Expect(st.Doubles).To(BeEmpty())
			// The owner keeps answering to the end of the outage: a node fenced until the
			// apiserver is back falls silent for the rest of it. (A quorum lapse shorter
			// than the agents' forgiveness, which a starved machine produces, costs a few
			// answers and ends while the apiserver is still frozen.)
			Expect(st.MaxGap).To(BeNumerically("<", time.Second), "no ARP reply for %v while frozen (slots without a reply: %v)", st.MaxGap, st.Missed)
			for mac, last := range st.Last {
				Expect(to.Sub(last)).To(BeNumerically("<", time.Second), "%s fell silent %v before the apiserver came back", cluster.Network().NodeOfMAC(mac), to.Sub(last))
			}
			for mac := range st.First {
				Expect(cluster.Network().NodeOfMAC(mac)).To(Equal(owner))
			}
			// And the cluster carries on.
			thawed := lbService("after-freeze")
			Expect(k8s().Create(ctx, thawed)).To(Succeed())
			DeferCleanup(func(ctx SpecContext) { remove(ctx, thawed) })
			serviceAddress("default", "after-freeze")
			Expect(announcer(cluster.InstallNamespace(), ingressctl.SharedServiceName)).To(Equal(owner))
		})

		It("fails only the bad object of each kind, with its message, next to good ones", Label("bad-objects"), func(ctx SpecContext) {
			expectBadObjectsAlone(ctx, shared)
		})
	})
}

// notAnnouncing is a node other than the one announcing the Service's address.
func notAnnouncing(ns, name string) string {
	GinkgoHelper()
	owner := answeredBy(ns, name, serviceAddress(ns, name))
	for _, n := range cluster.Nodes() {
		if n != owner {
			return n
		}
	}
	Fail("a single node")
	return ""
}

// configGenerations are the NodeProxyConfigs' generations (their spec's version).
func configGenerations(ctx context.Context) map[string]int64 {
	GinkgoHelper()
	var list v1alpha1.NodeProxyConfigList
	Expect(k8s().List(ctx, &list)).To(Succeed())
	out := map[string]int64{}
	for _, c := range list.Items {
		out[c.Name] = c.Generation
	}
	return out
}
