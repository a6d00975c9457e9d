// Package scale is the input of the Gateway API benchmarks (issue 12's
// scale), shared by the translation benchmark and the controller's
// end-to-end one so that both measure the same routes.
package scale

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	gateway "github.com/portico-dev/portico/internal/translate/gateway"
)

// The scale of issue 12: 10,000 HTTPRoutes of 4 rules each on 100 Gateways
// (100 routes per Gateway, each with its own hostname), over 10 Services per
// namespace in 10 namespaces.
const (
	Gateways   = 100
	Routes     = 10000
	namespaces = 10
	services   = 10
)

func namespace(i int) string { return fmt.Sprintf("bench-%02d", i%namespaces) }

// Input is the benchmark's input: Gateways with an HTTP listener
// accepting routes from every namespace, and routes with an exact, two
// prefixes (one with a header match) and a catch-all rule, weighted backends
// on one of them.
func Input() gateway.Input { return InputN(Routes, Gateways) }

// InputN is Input with routes routes on gateways Gateways.
func InputN(routes, gateways int) gateway.Input {
	in := gateway.Input{Services: map[types.NamespacedName]*corev1.Service{}, Secrets: map[types.NamespacedName]string{},
		Addresses: map[types.NamespacedName][]string{}, Namespaces: map[string]map[string]string{}}
	created := metav1.NewTime(time.Unix(1_767_225_600, 0))
	for n := range namespaces {
		in.Namespaces[namespace(n)] = map[string]string{}
		for s := range services {
			svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: namespace(n), Name: fmt.Sprintf("svc-%d", s)},
				Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 8080}}}}
			in.Services[types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}] = svc
		}
	}
	all := gatewayv1.NamespacesFromAll
	for g := range gateways {
		gw := &gatewayv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: namespace(g), Name: fmt.Sprintf("gw-%03d", g), CreationTimestamp: created},
			Spec: gatewayv1.GatewaySpec{GatewayClassName: "portico", Listeners: []gatewayv1.Listener{{Name: "http", Protocol: gatewayv1.HTTPProtocolType, Port: 80,
				AllowedRoutes: &gatewayv1.AllowedRoutes{Namespaces: &gatewayv1.RouteNamespaces{From: &all}}}}}}
		in.Gateways = append(in.Gateways, gw)
		in.Addresses[types.NamespacedName{Namespace: gw.Namespace, Name: gw.Name}] = []string{fmt.Sprintf("10.1.%d.%d", g/250, g%250+1)}
	}
	for i := range routes {
		in.HTTPRoutes = append(in.HTTPRoutes, route(i, gateways, created))
	}
	return in
}

// Route is route i of the benchmark.
func Route(i int, created metav1.Time) *gatewayv1.HTTPRoute { return route(i, Gateways, created) }

func route(i, gateways int, created metav1.Time) *gatewayv1.HTTPRoute {
	ns := namespace(i)
	gw := i % gateways
	ref := func(s int, w int32) gatewayv1.HTTPBackendRef {
		port := gatewayv1.PortNumber(8080)
		return gatewayv1.HTTPBackendRef{BackendRef: gatewayv1.BackendRef{Weight: &w, BackendObjectReference: gatewayv1.BackendObjectReference{
			Name: gatewayv1.ObjectName(fmt.Sprintf("svc-%d", s%services)), Port: &port}}}
	}
	path := func(t gatewayv1.PathMatchType, v string) *gatewayv1.HTTPPathMatch {
		return &gatewayv1.HTTPPathMatch{Type: &t, Value: &v}
	}
	return &gatewayv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("route-%05d", i), CreationTimestamp: created},
		Spec: gatewayv1.HTTPRouteSpec{
			CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{
				Name: gatewayv1.ObjectName(fmt.Sprintf("gw-%03d", gw)), Namespace: (*gatewayv1.Namespace)(ptr(namespace(gw)))}}},
			Hostnames: []gatewayv1.Hostname{gatewayv1.Hostname(fmt.Sprintf("app-%05d.example.com", i))},
			Rules: []gatewayv1.HTTPRouteRule{
				{Matches: []gatewayv1.HTTPRouteMatch{{Path: path(gatewayv1.PathMatchExact, "/healthz")}}, BackendRefs: []gatewayv1.HTTPBackendRef{ref(i, 1)}},
				{Matches: []gatewayv1.HTTPRouteMatch{{Path: path(gatewayv1.PathMatchPathPrefix, "/api")}}, BackendRefs: []gatewayv1.HTTPBackendRef{ref(i+1, 90), ref(i+2, 10)}},
				{Matches: []gatewayv1.HTTPRouteMatch{{Path: path(gatewayv1.PathMatchPathPrefix, "/api/v1/items"),
					Headers: []gatewayv1.HTTPHeaderMatch{{Name: "x-version", Value: "1"}}}}, BackendRefs: []gatewayv1.HTTPBackendRef{ref(i+2, 1)}},
				{BackendRefs: []gatewayv1.HTTPBackendRef{ref(i, 1)}},
			}}}
}

func ptr[T any](v T) *T { return &v }
