package gateway_test

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/portico-dev/portico/internal/routeoracle"
	"github.com/portico-dev/portico/internal/testenv"
)

const timeout = 20 * time.Second

func sample(name string) string { return filepath.Join(testenv.RepoRoot(), "config", "samples", name) }

func kubectl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := env.Kubectl(context.Background(), args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// condition returns the condition of type typ, or fails.
func condition(g Gomega, conds []metav1.Condition, typ string) metav1.Condition {
	c := meta.FindStatusCondition(conds, typ)
	g.Expect(c).NotTo(BeNil(), "no %s condition in %v", typ, conds)
	return *c
}

func expectCond(g Gomega, conds []metav1.Condition, typ string, status metav1.ConditionStatus, reason string, gen int64) {
	c := condition(g, conds, typ)
	g.Expect(c.Status).To(Equal(status), "%s: %s", typ, c.Message)
	g.Expect(c.Reason).To(Equal(reason), "%s: %s", typ, c.Message)
	g.Expect(c.ObservedGeneration).To(Equal(gen), typ)
}

func getGateway(g Gomega, ns, name string) *gatewayv1.Gateway {
	gw := &gatewayv1.Gateway{}
	g.Expect(k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, gw)).To(Succeed())
	return gw
}

func getRoute(g Gomega, ns, name string) *gatewayv1.HTTPRoute {
	r := &gatewayv1.HTTPRoute{}
	g.Expect(k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, r)).To(Succeed())
	return r
}

// parentConds are the conditions Portico reports for a route's only parent.
func parentConds(g Gomega, r *gatewayv1.HTTPRoute) []metav1.Condition {
	g.Expect(r.Status.Parents).To(HaveLen(1))
	g.Expect(r.Status.Parents[0].ControllerName).To(Equal(gatewayv1.GatewayController("portico.dev/gateway-controller")))
	return r.Status.Parents[0].Conditions
}

// servedTable is the route table the node's proxy holds now.
func servedTable(g Gomega, name string) *routev3.RouteConfiguration {
	rc, ok := node.Proxy.State(resourcev3.RouteType).Resources[name].(*routev3.RouteConfiguration)
	g.Expect(ok).To(BeTrue(), "route table %s not served to the proxy", name)
	return rc
}

// TestScenarioS5 applies scenario S5 as a user would and checks what the
// user sees (kubectl get/describe) and what the node's proxy is served.
func TestScenarioS5(t *testing.T) {
	g := NewWithT(t)
	kubectl(t, "apply", "-f", sample("gatewayclass.yaml"))
	kubectl(t, "apply", "-f", sample("bookinfo-services.yaml"))
	kubectl(t, "apply", "-f", sample("gateway-s5.yaml"))

	g.Eventually(func(g Gomega) {
		gc := &gatewayv1.GatewayClass{}
		g.Expect(k8s.Get(context.Background(), client.ObjectKey{Name: "portico"}, gc)).To(Succeed())
		expectCond(g, gc.Status.Conditions, "Accepted", metav1.ConditionTrue, "Accepted", gc.Generation)
		g.Expect(gc.Status.SupportedFeatures).To(ContainElement(gatewayv1.SupportedFeature{Name: "HTTPRoute"}))
	}).WithTimeout(timeout).Should(Succeed())
	g.Eventually(func(g Gomega) {
		gw := getGateway(g, "default", "my-gateway")
		g.Expect(gw.Status.Addresses).To(Equal([]gatewayv1.GatewayStatusAddress{{Type: ptrTo(gatewayv1.IPAddressType), Value: "192.168.10.211"}}))
		expectCond(g, gw.Status.Conditions, "Accepted", metav1.ConditionTrue, "Accepted", gw.Generation)
		expectCond(g, gw.Status.Conditions, "Programmed", metav1.ConditionTrue, "Programmed", gw.Generation)
		g.Expect(gw.Status.Listeners).To(HaveLen(1))
		l := gw.Status.Listeners[0]
		g.Expect(l.AttachedRoutes).To(Equal(int32(1)))
		for _, typ := range []string{"Accepted", "Programmed", "ResolvedRefs"} {
			g.Expect(condition(g, l.Conditions, typ).Status).To(Equal(metav1.ConditionTrue), typ)
		}
		g.Expect(condition(g, l.Conditions, "Conflicted").Status).To(Equal(metav1.ConditionFalse))
		r := getRoute(g, "default", "http-app-1")
		expectCond(g, parentConds(g, r), "Accepted", metav1.ConditionTrue, "Accepted", r.Generation)
		expectCond(g, parentConds(g, r), "ResolvedRefs", metav1.ConditionTrue, "ResolvedRefs", r.Generation)
	}).WithTimeout(timeout).Should(Succeed())

	// What the user sees.
	out := kubectl(t, "get", "gatewayclass", "portico")
	g.Expect(out).To(MatchRegexp(`portico\s+portico.dev/gateway-controller\s+True`))
	out = kubectl(t, "get", "gateway", "-n", "default", "my-gateway")
	g.Expect(out).To(MatchRegexp(`my-gateway\s+portico\s+192\.168\.10\.211\s+True`))
	out = kubectl(t, "describe", "gateway", "-n", "default", "my-gateway")
	for _, want := range []string{"Attached Routes:  1", "ResolvedRefs", "Programmed", "web-gw"} {
		g.Expect(out).To(ContainSubstring(want))
	}
	out = kubectl(t, "describe", "httproute", "-n", "default", "http-app-1")
	g.Expect(out).To(ContainSubstring("ResolvedRefs"))

	// What the node's proxy is served routes as the scenario says.
	g.Eventually(func(g Gomega) {
		rc := servedTable(g, "gateway.default.my-gateway/80")
		got := routeoracle.Route(rc, routeoracle.Request{Method: "GET", Host: "192.168.10.211", Path: "/details/1"})
		g.Expect(got.Clusters).To(Equal([]string{"default/details:9080"}))
		got = routeoracle.Route(rc, routeoracle.Request{Method: "GET", Host: "192.168.10.211", Path: "/?great=example", Headers: map[string]string{"magic": "foo"}})
		g.Expect(got.Clusters).To(Equal([]string{"default/productpage:9080"}))
	}).WithTimeout(timeout).Should(Succeed())
}

func ptrTo[T any](v T) *T { return &v }

// newNamespace creates a namespace for one test.
func newNamespace(t *testing.T, name string, labels map[string]string) string {
	t.Helper()
	if err := k8s.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}); err != nil {
		t.Fatal(err)
	}
	return name
}

func create(t *testing.T, objs ...client.Object) {
	t.Helper()
	for _, o := range objs {
		if err := k8s.Create(context.Background(), o); err != nil {
			t.Fatal(err)
		}
	}
}

func service(ns, name string, port int32) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": name}, Ports: []corev1.ServicePort{{Name: "http", Port: port}}}}
}

func httpGateway(ns, name string, from gatewayv1.FromNamespaces) *gatewayv1.Gateway {
	return &gatewayv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: gatewayv1.GatewaySpec{
		GatewayClassName: "portico",
		Listeners: []gatewayv1.Listener{{Name: "http", Protocol: gatewayv1.HTTPProtocolType, Port: 80,
			AllowedRoutes: &gatewayv1.AllowedRoutes{Namespaces: &gatewayv1.RouteNamespaces{From: &from}}}}}}
}

func route(ns, name, gwNS, gw string, backends ...gatewayv1.HTTPBackendRef) *gatewayv1.HTTPRoute {
	return &gatewayv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: gatewayv1.HTTPRouteSpec{
		CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{Name: gatewayv1.ObjectName(gw), Namespace: ptrTo(gatewayv1.Namespace(gwNS))}}},
		Rules:           []gatewayv1.HTTPRouteRule{{BackendRefs: backends}}}}
}

func backendRef(ns, name string, port int32) gatewayv1.HTTPBackendRef {
	ref := gatewayv1.HTTPBackendRef{BackendRef: gatewayv1.BackendRef{BackendObjectReference: gatewayv1.BackendObjectReference{
		Name: gatewayv1.ObjectName(name), Port: ptrTo(port)}}}
	if ns != "" {
		ref.Namespace = ptrTo(gatewayv1.Namespace(ns))
	}
	return ref
}

// routeResolved waits for a route's ResolvedRefs condition.
func routeResolved(t *testing.T, ns, name string, status metav1.ConditionStatus, reason, msg string) {
	t.Helper()
	NewWithT(t).Eventually(func(g Gomega) {
		r := getRoute(g, ns, name)
		c := condition(g, parentConds(g, r), "ResolvedRefs")
		g.Expect(c.Status).To(Equal(status), c.Message)
		g.Expect(c.Reason).To(Equal(reason), c.Message)
		g.Expect(c.Message).To(ContainSubstring(msg))
		g.Expect(c.ObservedGeneration).To(Equal(r.Generation))
	}).WithTimeout(timeout).Should(Succeed())
}

// clustersFor asks the served table where a request goes.
func clustersFor(g Gomega, table, path string) routeoracle.Result {
	return routeoracle.Route(servedTable(g, table), routeoracle.Request{Method: "GET", Host: "example.com", Path: path})
}

// TestMissingService: a route to a Service that does not exist is accepted,
// says BackendNotFound and answers 500; creating the Service resolves it.
func TestMissingService(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t, "missing-svc", nil)
	create(t, httpGateway(ns, "gw", gatewayv1.NamespacesFromSame), route(ns, "r", ns, "gw", backendRef("", "later", 8080)))
	routeResolved(t, ns, "r", metav1.ConditionFalse, "BackendNotFound", "Service missing-svc/later not found")
	table := "gateway." + ns + ".gw/80"
	g.Eventually(func(g Gomega) { g.Expect(clustersFor(g, table, "/").DirectStatus).To(Equal(uint32(500))) }).WithTimeout(timeout).Should(Succeed())
	create(t, service(ns, "later", 8080))
	routeResolved(t, ns, "r", metav1.ConditionTrue, "ResolvedRefs", "")
	g.Eventually(func(g Gomega) {
		g.Expect(clustersFor(g, table, "/").Clusters).To(Equal([]string{ns + "/later:8080"}))
	}).WithTimeout(timeout).Should(Succeed())
}

// TestCrossNamespaceBackend: a Service in another namespace is refused
// (RefNotPermitted) until a ReferenceGrant there allows it.
func TestCrossNamespaceBackend(t *testing.T) {
	g := NewWithT(t)
	apps := newNamespace(t, "xns-apps", nil)
	backends := newNamespace(t, "xns-backends", nil)
	create(t, service(backends, "api", 8080), httpGateway(apps, "gw", gatewayv1.NamespacesFromSame),
		route(apps, "r", apps, "gw", backendRef(backends, "api", 8080)))
	routeResolved(t, apps, "r", metav1.ConditionFalse, "RefNotPermitted", "no ReferenceGrant")
	create(t, &gatewayv1.ReferenceGrant{ObjectMeta: metav1.ObjectMeta{Namespace: backends, Name: "from-apps"}, Spec: gatewayv1.ReferenceGrantSpec{
		From: []gatewayv1.ReferenceGrantFrom{{Group: gatewayv1.GroupName, Kind: "HTTPRoute", Namespace: gatewayv1.Namespace(apps)}},
		To:   []gatewayv1.ReferenceGrantTo{{Group: "", Kind: "Service"}}}})
	routeResolved(t, apps, "r", metav1.ConditionTrue, "ResolvedRefs", "")
	g.Eventually(func(g Gomega) {
		g.Expect(clustersFor(g, "gateway."+apps+".gw/80", "/x").Clusters).To(Equal([]string{backends + "/api:8080"}))
	}).WithTimeout(timeout).Should(Succeed())
}

// condStrings flattens conditions for messages.
func condStrings(conds []metav1.Condition) string {
	var out []string
	for _, c := range conds {
		out = append(out, c.Type+"="+string(c.Status)+"/"+c.Reason)
	}
	slices.Sort(out)
	return strings.Join(out, " ")
}
