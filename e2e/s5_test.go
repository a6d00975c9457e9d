package e2e

import (
	"net/http"
	"net/netip"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	gatewayctl "github.com/portico-dev/portico/controllers/gateway"
	gwtranslate "github.com/portico-dev/portico/internal/translate/gateway"
)

// s5Table is scenario S5's: /details to details; GET / with query great=example and
// header magic: foo to productpage; a request matching no rule gets Envoy's 404.
var s5Table = []request{
	{method: "GET", path: "/details/1", backend: "details"},
	{method: "GET", path: "/?great=example", header: http.Header{"Magic": {"foo"}}, backend: "productpage"},
	{method: "GET", path: "/?great=example", code: http.StatusNotFound},
	{method: "POST", path: "/?great=example", header: http.Header{"Magic": {"foo"}}, code: http.StatusNotFound},
	{method: "GET", path: "/ratings", code: http.StatusNotFound},
}

func describeS5() {
	Describe("S5: Gateway API", Label("S5"), Ordered, func() {
		var addr netip.Addr
		svc := gatewayctl.ServiceName("my-gateway")

		BeforeAll(func(ctx SpecContext) {
			ensureBase(ctx)
			ensureBackends(ctx, 9080, "details", "productpage")
			for _, o := range s5Objects() {
				ensure(ctx, o)
			}
			addr = serviceAddress("default", svc)
		})

		It("accepts the class, programs the Gateway with its Service's address, and accepts the route", func() {
			Eventually(kubectlFn("get", "gatewayclass", "portico")).Should(MatchRegexp(`(?m)^portico\s+portico\.dev/gateway-controller\s+True\s`))
			Eventually(kubectlFn("get", "gateway", "my-gateway")).WithTimeout(60 * time.Second).
				Should(MatchRegexp(`(?m)^my-gateway\s+portico\s+%s\s+True\s`, addr))
			Eventually(kubectlFn("get", "gateway", "my-gateway", "-o", `jsonpath={range .status.listeners[*]}{.name} {.attachedRoutes} {range .conditions[*]}{.type}={.status} {end}{"\n"}{end}`)).
				Should(And(HavePrefix("web-gw 1 "), ContainSubstring("Accepted=True"), ContainSubstring("Programmed=True"), ContainSubstring("ResolvedRefs=True")))
			Eventually(kubectlFn("get", "httproute", "http-app-1", "-o", `jsonpath={range .status.parents[*].conditions[*]}{.type}={.status} {end}`)).
				Should(And(ContainSubstring("Accepted=True"), ContainSubstring("ResolvedRefs=True")))
			// `kubectl portico status` follows the Gateway and the route to every node and
			// to the address (exit status 0 only when all of it is in effect).
			n := len(cluster.Nodes())
			Eventually(porticoFn("status", "gateway/my-gateway", "-n", "default")).Should(And(
				ContainSubstring("published:       "+addr.String()),
				MatchRegexp(`(?m)^gateway\.default\.my-gateway\s+gateway\s+\d+\s+True\s+Programmed\s+%d/%d$`, n, n),
				MatchRegexp(`(?m)^httproute\.default\.http-app-1\.[0-9a-f]{10}\s+gateway\s+\d+\s+True\s+Programmed\s+%d/%d$`, n, n)))
			Eventually(porticoFn("status", "httproute/http-app-1", "-n", "default")).Should(
				MatchRegexp(`(?m)^httproute\.default\.http-app-1\.[0-9a-f]{10}\s+gateway\s+\d+\s+True\s+Programmed\s+%d/%d$`, n, n))
		})

		It("is served by every node with both backends resolved", func(ctx SpecContext) {
			expectBookinfoServed(ctx)
		})

		It("answers the request table through the redirect on the announcing node", func() {
			needNetwork()
			owner := answeredBy("default", svc, addr)
			expectTable(netip.AddrPortFrom(addr, 80), owner, s5Table)
		})
	})
}

// s5Objects are scenario S5's GatewayClass, Gateway and HTTPRoute.
func s5Objects() []client.Object {
	pathPrefix, exact, get := gatewayv1.PathMatchPathPrefix, gatewayv1.HeaderMatchExact, gatewayv1.HTTPMethodGet
	qExact := gatewayv1.QueryParamMatchExact
	backend := func(name string) []gatewayv1.HTTPBackendRef {
		return []gatewayv1.HTTPBackendRef{{BackendRef: gatewayv1.BackendRef{BackendObjectReference: gatewayv1.BackendObjectReference{
			Name: gatewayv1.ObjectName(name), Port: ptr.To(gatewayv1.PortNumber(9080))}}}}
	}
	same := gatewayv1.NamespacesFromSame
	return []client.Object{
		&gatewayv1.GatewayClass{ObjectMeta: objectMeta("", "portico"), Spec: gatewayv1.GatewayClassSpec{ControllerName: gwtranslate.ControllerName}},
		&gatewayv1.Gateway{ObjectMeta: objectMeta("default", "my-gateway"), Spec: gatewayv1.GatewaySpec{GatewayClassName: "portico",
			Listeners: []gatewayv1.Listener{{Name: "web-gw", Protocol: gatewayv1.HTTPProtocolType, Port: 80,
				AllowedRoutes: &gatewayv1.AllowedRoutes{Namespaces: &gatewayv1.RouteNamespaces{From: &same}}}}}},
		&gatewayv1.HTTPRoute{ObjectMeta: objectMeta("default", "http-app-1"), Spec: gatewayv1.HTTPRouteSpec{
			CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{Name: "my-gateway"}}},
			Rules: []gatewayv1.HTTPRouteRule{
				{Matches: []gatewayv1.HTTPRouteMatch{{Path: &gatewayv1.HTTPPathMatch{Type: &pathPrefix, Value: ptr.To("/details")}}}, BackendRefs: backend("details")},
				{Matches: []gatewayv1.HTTPRouteMatch{{Path: &gatewayv1.HTTPPathMatch{Type: &pathPrefix, Value: ptr.To("/")}, Method: &get,
					Headers:     []gatewayv1.HTTPHeaderMatch{{Type: &exact, Name: "magic", Value: "foo"}},
					QueryParams: []gatewayv1.HTTPQueryParamMatch{{Type: &qExact, Name: "great", Value: "example"}}}}, BackendRefs: backend("productpage")},
			}}},
	}
}
