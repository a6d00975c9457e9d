package gateway_test

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/conditions"
	"github.com/portico-dev/portico/internal/routeoracle"
	translate "github.com/portico-dev/portico/internal/translate/gateway"
)

// passes counts the gateway controller's passes, whatever their result, as
// controller-runtime's controller_runtime_reconcile_total reports them.
func passes(g Gomega) float64 {
	return counter(g, "controller_runtime_reconcile_total", "controller", "gateway")
}

// gatewayPasses counts the gateway controller's passes of a kind (full,
// delta, refused).
func gatewayPasses(g Gomega, kind string) float64 {
	return counter(g, "portico_gateway_passes_total", "kind", kind)
}

// statusPasses counts the gateway status loop's passes of a kind (full, partial).
func statusPasses(g Gomega, kind string) float64 {
	return counter(g, "portico_npcstatus_passes_total", "producer", translate.Producer, "kind", kind)
}

// counter sums the samples of the counter name whose labels include the given
// name/value pairs.
func counter(g Gomega, name string, labels ...string) float64 {
	families, err := metrics.Registry.Gather()
	g.Expect(err).NotTo(HaveOccurred())
	n := 0.0
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			match := true
			for i := 0; i+1 < len(labels); i += 2 {
				match = match && have[labels[i]] == labels[i+1]
			}
			if match {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return n
}

// settle waits until the controller has run no pass for longer than the
// status loop's spacing: what a test does next is the only cause of a pass.
func settle(g *WithT) {
	g.Eventually(func() bool {
		n := passes(g)
		time.Sleep(1500 * time.Millisecond)
		return n > 0 && n == passes(g)
	}).WithTimeout(timeout).Should(BeTrue())
}

// TestRouteChangeIsOnePass: one route changed costs one pass over every
// Gateway and route, not three. Its config's verdict moves twice afterwards
// (Pending at the new generation, then Programmed), and each move used to run
// a pass, though only a Gateway's own config is in a status a pass writes.
// A Gateway's config moving still runs one: Programmed follows it. The status
// loop judges the moved config alone: while the node only progresses, none of
// its passes looks at every config.
func TestRouteChangeIsOnePass(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t, "one-pass", nil)
	r := route(ns, "r", ns, "gw", backendRef("", "web", 8080))
	create(t, service(ns, "web", 8080), httpGateway(ns, "gw", gatewayv1.NamespacesFromSame), r)
	cfgName := translate.RouteConfigName(translate.RouteKey{Kind: translate.KindHTTPRoute, Namespace: ns, Name: "r"},
		types.NamespacedName{Namespace: ns, Name: "gw"})
	programmedAt := func(g Gomega) int64 {
		cfg := &v1alpha1.NodeProxyConfig{}
		g.Expect(k8s.Get(ctx, client.ObjectKey{Name: cfgName}, cfg)).To(Succeed())
		g.Expect(conditions.IsTrue(cfg.Status.Conditions, cfg.Generation, v1alpha1.ConditionProgrammed)).To(BeTrue(), condStrings(cfg.Status.Conditions))
		return cfg.Generation
	}
	var gen int64
	g.Eventually(func(g Gomega) { gen = programmedAt(g) }).WithTimeout(timeout).Should(Succeed())
	g.Eventually(func(g Gomega) {
		gw := getGateway(g, ns, "gw")
		expectCond(g, gw.Status.Conditions, "Programmed", metav1.ConditionTrue, "Programmed", gw.Generation)
	}).WithTimeout(timeout).Should(Succeed())

	// Settled: no pass for longer than the status loop's spacing.
	settle(g)
	before := passes(g)
	fullBefore, partialBefore := statusPasses(g, "full"), statusPasses(g, "partial")
	deltaBefore, gwFullBefore := gatewayPasses(g, "delta"), gatewayPasses(g, "full")

	g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(r), r)).To(Succeed())
	r.Spec.Rules[0].Matches = []gatewayv1.HTTPRouteMatch{{Path: &gatewayv1.HTTPPathMatch{
		Type: ptrTo(gatewayv1.PathMatchPathPrefix), Value: ptrTo("/changed")}}}
	g.Expect(k8s.Update(ctx, r)).To(Succeed())
	g.Eventually(func(g Gomega) { g.Expect(programmedAt(g)).To(BeNumerically(">", gen)) }).WithTimeout(timeout).Should(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(clustersFor(g, "gateway."+ns+".gw/80", "/changed").Clusters).To(Equal([]string{ns + "/web:8080"}))
	}).WithTimeout(timeout).Should(Succeed())
	time.Sleep(time.Second) // any pass the verdict's moves would run has started by now
	g.Expect(passes(g)-before).To(Equal(1.0), "passes for one route change")
	g.Expect(gatewayPasses(g, "delta")-deltaBefore).To(Equal(1.0), "delta passes for one route's rules changed")
	g.Expect(gatewayPasses(g, "full")-gwFullBefore).To(BeZero(), "full passes for one route's rules changed")
	g.Eventually(func(g Gomega) {
		got := &gatewayv1.HTTPRoute{}
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(r), got)).To(Succeed())
		g.Expect(got.Status.Parents).To(HaveLen(1))
		expectCond(g, got.Status.Parents[0].Conditions, "Accepted", metav1.ConditionTrue, "Accepted", got.Generation)
		expectCond(g, got.Status.Parents[0].Conditions, "ResolvedRefs", metav1.ConditionTrue, "ResolvedRefs", got.Generation)
	}).WithTimeout(timeout).Should(Succeed())
	g.Expect(statusPasses(g, "full")-fullBefore).To(BeZero(), "status passes over every config for one route change")
	g.Expect(statusPasses(g, "partial")-partialBefore).To(BeNumerically(">=", 2), "status passes after one route change (Pending, then Programmed)")
}

// TestDeltaPassesAsTheUserSeesThem: a route's rules changed to a missing
// Service are one delta pass, after which the route says BackendNotFound and
// its path answers 500 on the node; back to the Service, another delta, and
// the path reaches it. A hostname edit moves where the route attaches: the
// delta is refused and a full pass serves the new hostname.
func TestDeltaPassesAsTheUserSeesThem(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t, "delta-user", nil)
	r := route(ns, "r", ns, "gw", backendRef("", "web", 8080))
	create(t, service(ns, "web", 8080), httpGateway(ns, "gw", gatewayv1.NamespacesFromSame), r)
	routeResolved(t, ns, "r", metav1.ConditionTrue, "ResolvedRefs", "")
	table := "gateway." + ns + ".gw/80"
	g.Eventually(func(g Gomega) { g.Expect(clustersFor(g, table, "/").Clusters).To(Equal([]string{ns + "/web:8080"})) }).
		WithTimeout(timeout).Should(Succeed())

	edit := func(change func(r *gatewayv1.HTTPRoute)) {
		t.Helper()
		g.Eventually(func() error {
			cur := &gatewayv1.HTTPRoute{}
			if err := k8s.Get(ctx, client.ObjectKeyFromObject(r), cur); err != nil {
				return err
			}
			change(cur)
			return k8s.Update(ctx, cur)
		}).WithTimeout(timeout).Should(Succeed())
	}
	settle(g)
	delta, refused, full := gatewayPasses(g, "delta"), gatewayPasses(g, "refused"), gatewayPasses(g, "full")
	edit(func(r *gatewayv1.HTTPRoute) {
		r.Spec.Rules[0].BackendRefs = []gatewayv1.HTTPBackendRef{backendRef("", "gone", 8080)}
	})
	routeResolved(t, ns, "r", metav1.ConditionFalse, "BackendNotFound", "Service "+ns+"/gone not found")
	g.Eventually(func(g Gomega) { g.Expect(clustersFor(g, table, "/").DirectStatus).To(Equal(uint32(500))) }).WithTimeout(timeout).Should(Succeed())
	g.Expect(gatewayPasses(g, "delta")-delta).To(BeNumerically(">=", 1), "the rules' change was not a delta pass")

	settle(g)
	delta = gatewayPasses(g, "delta")
	edit(func(r *gatewayv1.HTTPRoute) {
		r.Spec.Rules[0].BackendRefs = []gatewayv1.HTTPBackendRef{backendRef("", "web", 8080)}
	})
	routeResolved(t, ns, "r", metav1.ConditionTrue, "ResolvedRefs", "")
	g.Eventually(func(g Gomega) { g.Expect(clustersFor(g, table, "/").Clusters).To(Equal([]string{ns + "/web:8080"})) }).
		WithTimeout(timeout).Should(Succeed())
	g.Expect(gatewayPasses(g, "delta")-delta).To(BeNumerically(">=", 1), "the rules' change back was not a delta pass")
	g.Expect(gatewayPasses(g, "full")-full).To(BeZero(), "full passes for changes of the rules alone")

	settle(g)
	edit(func(r *gatewayv1.HTTPRoute) { r.Spec.Hostnames = []gatewayv1.Hostname{"moved.example.org"} })
	g.Eventually(func(g Gomega) {
		res := routeoracle.Route(servedTable(g, table), routeoracle.Request{Method: "GET", Host: "moved.example.org", Path: "/"})
		g.Expect(res.Clusters).To(Equal([]string{ns + "/web:8080"}))
		g.Expect(clustersFor(g, table, "/").Matched).To(BeFalse(), "the route still answers the hostnames it no longer has")
	}).WithTimeout(timeout).Should(Succeed())
	g.Expect(gatewayPasses(g, "refused")-refused).To(BeNumerically(">=", 1), "a hostname edit was not refused by the delta")
}
