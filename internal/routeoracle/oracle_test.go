package routeoracle

import (
	"slices"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func toCluster(name string, m *routev3.RouteMatch, c string) *routev3.Route {
	return &routev3.Route{Name: name, Match: m, Action: &routev3.Route_Route{Route: &routev3.RouteAction{
		ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: c}}}}
}

func prefix(p string) *routev3.RouteMatch {
	return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: p}}
}

func exact(s string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}}
}

// Virtual host selection, from Envoy's VirtualHost.domains documentation: an
// exact domain first, then suffix wildcards (longest first), then prefix
// wildcards (longest first), then "*".
func TestVirtualHostOrder(t *testing.T) {
	rc := &routev3.RouteConfiguration{VirtualHosts: []*routev3.VirtualHost{
		{Name: "any", Domains: []string{"*"}},
		{Name: "suffix", Domains: []string{"*.example.com"}},
		{Name: "longer-suffix", Domains: []string{"*.api.example.com"}},
		{Name: "dash-suffix", Domains: []string{"*-bar.example.com"}},
		{Name: "prefix", Domains: []string{"foo.*"}},
		{Name: "exact", Domains: []string{"www.example.com"}},
	}}
	for host, want := range map[string]string{
		"www.example.com":      "exact",
		"WWW.Example.com:8080": "exact",
		"a.example.com":        "suffix",
		"a.b.example.com":      "suffix",
		"v1.api.example.com":   "longer-suffix",
		"foo-bar.example.com":  "dash-suffix",
		"foo.org":              "prefix",
		"example.com":          "any",
		"other.org":            "any",
	} {
		if got := VirtualHost(rc, host); got.GetName() != want {
			t.Errorf("host %s: virtual host %q, want %q", host, got.GetName(), want)
		}
	}
	if VirtualHost(&routev3.RouteConfiguration{VirtualHosts: []*routev3.VirtualHost{{Name: "x", Domains: []string{"x.org"}}}}, "y.org") != nil {
		t.Error("a host no domain matches found a virtual host")
	}
}

// Routes are tried in order and the first match wins; path matchers behave
// as Envoy documents them.
func TestRouteMatching(t *testing.T) {
	vh := &routev3.VirtualHost{Name: "*", Domains: []string{"*"}, Routes: []*routev3.Route{
		toCluster("exact", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/exact"}}, "exact"),
		toCluster("regex", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "/items/[0-9]+"}}}, "regex"),
		toCluster("separated", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: "/api"}}, "separated"),
		toCluster("insensitive", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/CASE"}, CaseSensitive: wrapperspb.Bool(false)}, "insensitive"),
		toCluster("post", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/form"},
			Headers: []*routev3.HeaderMatcher{{Name: ":method", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: exact("POST")}}}}, "post"),
		toCluster("not-beta", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/form"},
			Headers: []*routev3.HeaderMatcher{{Name: "x-beta", HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}, InvertMatch: true}}}, "not-beta"),
		toCluster("query", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"},
			QueryParameters: []*routev3.QueryParameterMatcher{{Name: "v", QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_StringMatch{StringMatch: exact("2")}}}}, "query"),
		toCluster("grpc", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/pkg.Svc/"}, Grpc: &routev3.RouteMatch_GrpcRouteMatchOptions{}}, "grpc"),
		{Name: "split", Match: prefix("/split"), Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_WeightedClusters{
			WeightedClusters: &routev3.WeightedCluster{Clusters: []*routev3.WeightedCluster_ClusterWeight{{Name: "b", Weight: wrapperspb.UInt32(1)}, {Name: "a", Weight: wrapperspb.UInt32(9)}}}}}}},
		{Name: "gone", Match: prefix("/gone"), Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 410}}},
		toCluster("rest", prefix("/"), "rest"),
	}}
	rc := &routev3.RouteConfiguration{VirtualHosts: []*routev3.VirtualHost{vh}}
	for _, c := range []struct {
		req  Request
		want string
	}{
		{Request{Method: "GET", Path: "/exact"}, "exact"},
		{Request{Method: "GET", Path: "/exact/more"}, "rest"},
		{Request{Method: "GET", Path: "/exact?x=1"}, "exact"}, // the query is not part of the path
		{Request{Method: "GET", Path: "/items/42"}, "regex"},
		{Request{Method: "GET", Path: "/items/42/x"}, "rest"}, // safe_regex matches the whole path
		{Request{Method: "GET", Path: "/api"}, "separated"},
		{Request{Method: "GET", Path: "/api/v1"}, "separated"},
		{Request{Method: "GET", Path: "/apis"}, "rest"},
		{Request{Method: "GET", Path: "/case/x"}, "insensitive"},
		{Request{Method: "POST", Path: "/form"}, "post"},
		{Request{Method: "GET", Path: "/form"}, "not-beta"},
		{Request{Method: "GET", Path: "/form", Headers: map[string]string{"X-Beta": "1"}}, "rest"},
		{Request{Method: "GET", Path: "/x?v=2"}, "query"},
		{Request{Method: "GET", Path: "/x?v=3"}, "rest"},
		{Request{Method: "POST", Path: "/pkg.Svc/Call", Headers: map[string]string{"content-type": "application/grpc"}}, "grpc"},
		{Request{Method: "POST", Path: "/pkg.Svc/Call"}, "rest"},
	} {
		got := Route(rc, c.req)
		if !got.Matched || !slices.Equal(got.Clusters, []string{c.want}) {
			t.Errorf("%s %s %v: %+v, want cluster %s", c.req.Method, c.req.Path, c.req.Headers, got, c.want)
		}
	}
	if got := Route(rc, Request{Method: "GET", Path: "/split/x"}); !slices.Equal(got.Clusters, []string{"a", "b"}) {
		t.Errorf("weighted clusters: %v", got.Clusters)
	}
	if got := Route(rc, Request{Method: "GET", Path: "/gone"}); got.DirectStatus != 410 || len(got.Clusters) != 0 {
		t.Errorf("direct response: %+v", got)
	}
	noRoot := &routev3.RouteConfiguration{VirtualHosts: []*routev3.VirtualHost{{Name: "*", Domains: []string{"*"}, Routes: vh.Routes[:1]}}}
	if got := Route(noRoot, Request{Method: "GET", Path: "/other"}); got.Matched {
		t.Errorf("a path no route matches: %+v (Envoy answers 404)", got)
	}
}
