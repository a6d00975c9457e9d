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
	translate "github.com/portico-dev/portico/internal/translate/gateway"
)

// passes counts the gateway controller's passes, whatever their result, as
// controller-runtime's controller_runtime_reconcile_total reports them.
func passes(g Gomega) float64 {
	return counter(g, "controller_runtime_reconcile_total", "controller", "gateway")
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
	var before, fullBefore, partialBefore float64
	g.Eventually(func() bool {
		n := passes(g)
		time.Sleep(1500 * time.Millisecond)
		before = passes(g)
		fullBefore, partialBefore = statusPasses(g, "full"), statusPasses(g, "partial")
		return n > 0 && n == before
	}).WithTimeout(timeout).Should(BeTrue())

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
	g.Expect(statusPasses(g, "full")-fullBefore).To(BeZero(), "status passes over every config for one route change")
	g.Expect(statusPasses(g, "partial")-partialBefore).To(BeNumerically(">=", 2), "status passes after one route change (Pending, then Programmed)")
}
