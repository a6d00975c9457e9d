package gateway

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/portico-dev/portico/internal/routeoracle"
	"github.com/portico-dev/portico/nodeagent/xds/xdsfetch"
)

// served is the route table name as an Envoy-like client fetched it from the
// agent's real xDS server, after the agent's render merged every config.
func served(t *testing.T, dir, table string) *routev3.RouteConfiguration {
	t.Helper()
	res := renderCase(t, Translate(loadCase(t, filepath.Join("testdata", dir))))
	got, err := xdsfetch.Fetch(context.Background(), res.Resources, res.BackendServices, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	rc, ok := got[resourcev3.RouteType][table].(*routev3.RouteConfiguration)
	if !ok {
		t.Fatalf("route table %s not served", table)
	}
	return rc
}

type routingCase struct {
	req     routeoracle.Request
	cluster string // "" with route set: the route must match, whatever it does
	route   string
}

func checkRouting(t *testing.T, rc *routev3.RouteConfiguration, cases []routingCase) {
	t.Helper()
	for _, c := range cases {
		got := routeoracle.Route(rc, c.req)
		switch {
		case c.route == "" && c.cluster == "":
			if got.Matched {
				t.Errorf("%s %s%s: matched %s, want 404", c.req.Method, c.req.Host, c.req.Path, got.Route)
			}
		case c.route != "" && got.Route != c.route:
			t.Errorf("%s %s%s %v: route %q, want %q", c.req.Method, c.req.Host, c.req.Path, c.req.Headers, got.Route, c.route)
		case c.cluster != "" && !slices.Equal(got.Clusters, []string{c.cluster}):
			t.Errorf("%s %s%s %v: clusters %v, want %s", c.req.Method, c.req.Host, c.req.Path, c.req.Headers, got.Clusters, c.cluster)
		}
	}
}

// TestScenarioS5Routing: scenario S5's table, asked of what the agent serves.
func TestScenarioS5Routing(t *testing.T) {
	rc := served(t, "scenario-s5", "gateway.default.my-gateway/80")
	magic := map[string]string{"magic": "foo"}
	checkRouting(t, rc, []routingCase{
		{req: routeoracle.Request{Method: "GET", Host: "192.168.10.211", Path: "/details/1"}, cluster: "default/details:9080"},
		{req: routeoracle.Request{Method: "GET", Host: "192.168.10.211", Path: "/?great=example", Headers: magic}, cluster: "default/productpage:9080"},
		// Every condition of the second rule must hold.
		{req: routeoracle.Request{Method: "POST", Host: "192.168.10.211", Path: "/?great=example", Headers: magic}},
		{req: routeoracle.Request{Method: "GET", Host: "192.168.10.211", Path: "/?great=example"}},
		{req: routeoracle.Request{Method: "GET", Host: "192.168.10.211", Path: "/", Headers: magic}},
		{req: routeoracle.Request{Method: "GET", Host: "192.168.10.211", Path: "/detailsx", Headers: magic}},
	})
}

// TestPrecedenceRouting: the spec's precedence through the agent's merge:
// a hostname's own routes first, then those of the wildcard and of no
// hostname; within one, Exact, regex, longest prefix, method, headers, query.
func TestPrecedenceRouting(t *testing.T) {
	rc := served(t, "precedence", "gateway.default.gw/80")
	req := func(host, method, path string, h map[string]string) routeoracle.Request {
		return routeoracle.Request{Method: method, Host: host, Path: path, Headers: h}
	}
	checkRouting(t, rc, []routingCase{
		{req: req("foo.example.com", "GET", "/api/v2/items", nil), route: "default/foo/0/4"},
		{req: req("foo.example.com", "POST", "/api/v1/x", nil), route: "default/foo/0/1"},
		{req: req("foo.example.com", "GET", "/api/v1/x", map[string]string{"a": "1", "b": "2"}), route: "default/foo/0/2"},
		{req: req("foo.example.com", "GET", "/api/v1?q=1", nil), route: "default/foo/0/3"},
		{req: req("foo.example.com", "GET", "/api/v1", nil), route: "default/foo/0/0"},
		// Not foo's: the wildcard route's, then the catch-all route's.
		{req: req("foo.example.com", "GET", "/api/other", nil), route: "default/wildcard/0/0"},
		{req: req("foo.example.com", "GET", "/exact", nil), route: "default/catch-all/1/0"},
		{req: req("foo.example.com", "GET", "/else", nil), route: "default/catch-all/0/0"},
		// Identical routes: the older wins; same age, "a" before "a-b".
		{req: req("foo.example.com", "GET", "/same", nil), route: "default/a/0/0"},
		{req: req("bar.example.com", "GET", "/api", nil), route: "default/wildcard/0/0"},
		{req: req("bar.example.com", "GET", "/api/v1", nil), route: "default/wildcard/0/0"},
		{req: req("example.org", "GET", "/api", nil), route: "default/catch-all/0/0"},
	})
}
