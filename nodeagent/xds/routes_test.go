package xds

import (
	"context"
	"fmt"
	"sync"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/portico-dev/portico/internal/xdsres/fixture"
	"github.com/portico-dev/portico/nodeagent/xds/xdstest"
)

// tables is n listeners, each with its own table of routes routes, and the
// cluster they send to; changed names the tables whose routes carry tag.
func tables(t testing.TB, n, routes int, tag string, changed ...int) Resources {
	var r Resources
	_, _, r.Clusters = fixture.Base(t, 1, "x")
	for i := range n {
		name := fmt.Sprintf("table-%02d", i)
		r.Listeners = append(r.Listeners, fixture.HTTPListener(t, fmt.Sprintf("l-%02d", i), name, uint32(16000+i)))
		rtag := "base"
		for _, c := range changed {
			if c == i {
				rtag = tag
			}
		}
		r.Routes = append(r.Routes, fixture.RouteConfig(name, "backend", routes, rtag))
	}
	return r
}

// rdsResponses records the RDS responses a client receives (names per response).
type rdsResponses struct {
	mu   sync.Mutex
	seen [][]string
}

func (r *rdsResponses) record(typeURL string, resp *discoveryv3.DiscoveryResponse) string {
	if typeURL != resourcev3.RouteType {
		return ""
	}
	var names []string
	for _, a := range resp.GetResources() {
		rc := &routev3.RouteConfiguration{}
		if err := a.UnmarshalTo(rc); err == nil {
			names = append(names, rc.GetName())
		}
	}
	r.mu.Lock()
	r.seen = append(r.seen, names)
	r.mu.Unlock()
	return ""
}

func (r *rdsResponses) since(n int) [][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]string(nil), r.seen[n:]...)
}

func (r *rdsResponses) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seen)
}

// TestOneTableChangedSendsOneTable: with 20 route tables served, changing one
// sends the proxy that table alone (each response used to carry all 20, every
// one marshalled again), the proxy holds every table with the change, and the
// server reports it in sync only once it ACKed the change.
func TestOneTableChangedSendsOneTable(t *testing.T) {
	s := startServer(t, Options{VersionBase: 1000})
	ctx := context.Background()
	if _, err := s.SetResources(ctx, tables(t, 20, 10, "")); err != nil {
		t.Fatal(err)
	}
	c := dial(t, s, "node-a")
	rec := &rdsResponses{}
	c.SetReject(rec.record)
	if err := c.WaitFor(waitCtx(t), func(c *xdstest.Client) bool { return len(c.State(resourcev3.RouteType).Resources) == 20 }); err != nil {
		t.Fatal(err)
	}
	waitProxy(t, s, "node-a", func(p ProxyState) bool { return p.Types[resourcev3.RouteType].InSync })
	before := rec.count()

	v, err := s.SetResources(ctx, tables(t, 20, 10, "changed", 7))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WaitFor(waitCtx(t), func(c *xdstest.Client) bool {
		rc, _ := c.State(resourcev3.RouteType).Resources["table-07"].(*routev3.RouteConfiguration)
		return rc.GetVirtualHosts()[0].GetRoutes()[0].GetMatch().GetPrefix() == "/changed/0"
	}); err != nil {
		t.Fatal(err)
	}
	p := waitProxy(t, s, "node-a", func(p ProxyState) bool { return p.Types[resourcev3.RouteType].InSync })
	if got := p.Types[resourcev3.RouteType].Acked; got != v {
		t.Errorf("the proxy's ACKed route version is reported as %q, want the served version %q", got, v)
	}
	if got := rec.since(before); len(got) != 1 || len(got[0]) != 1 || got[0][0] != "table-07" {
		t.Errorf("RDS responses after one table changed: %v, want one with table-07 alone", got)
	}
	if n := len(c.State(resourcev3.RouteType).Resources); n != 20 {
		t.Errorf("the proxy holds %d tables, want 20", n)
	}
	if served := s.Served(); len(served.Routes) != 20 || served.Versions["routes"] != v || served.Version != v {
		t.Errorf("Served: %d tables, routes version %q, version %q; want 20, %q, %q", len(served.Routes), served.Versions["routes"], served.Version, v, v)
	}
}

// TestRouteWireVersionsMirrorTheCache: the server's count of the linear cache's
// versions stays the cache's through updates, removals and both at once (the
// in-sync judgement rests on it), and removing a table, which sends the proxy
// nothing, does not make it look behind.
func TestRouteWireVersionsMirrorTheCache(t *testing.T) {
	s := startServer(t, Options{VersionBase: 2000})
	ctx := context.Background()
	c := dial(t, s, "node-a")
	steps := []Resources{
		tables(t, 3, 2, ""),
		tables(t, 3, 2, "a", 1),    // one table changed
		tables(t, 2, 2, "a", 1),    // one removed (with its listener): nothing is sent
		tables(t, 3, 2, "b", 0, 2), // one back, another changed
		tables(t, 1, 2, "c", 0),    // removals and a change at once
	}
	for i, r := range steps {
		if _, err := s.SetResources(ctx, r); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		want := map[string]string{}
		for _, rc := range r.Routes {
			want[rc.GetName()] = rc.GetVirtualHosts()[0].GetRoutes()[0].GetMatch().GetPrefix()
		}
		if err := c.WaitFor(waitCtx(t), func(c *xdstest.Client) bool {
			held := c.State(resourcev3.RouteType).Resources
			if len(held) != len(want) {
				return false
			}
			for name, prefix := range want {
				rc, _ := held[name].(*routev3.RouteConfiguration)
				if rc.GetVirtualHosts()[0].GetRoutes()[0].GetMatch().GetPrefix() != prefix {
					return false
				}
			}
			return true
		}); err != nil {
			t.Fatalf("step %d: the proxy does not hold %v: %v", i, want, err)
		}
		waitProxy(t, s, "node-a", func(p ProxyState) bool {
			return p.Types[resourcev3.RouteType].InSync && p.Types[resourcev3.ListenerType].InSync
		})
		s.resMu.Lock()
		wire, cached := s.routes.wire, len(s.routes.cache.GetResources())
		mirrored := s.routes.prefix + fmt.Sprint(wire)
		s.resMu.Unlock()
		if cached != len(want) {
			t.Errorf("step %d: the linear cache holds %d tables, want %d", i, cached, len(want))
		}
		// A probe subscribing to everything served gets the cache's own version.
		probe := dial(t, s, fmt.Sprintf("probe-%d", i))
		if err := probe.WaitFor(waitCtx(t), func(c *xdstest.Client) bool {
			return len(c.State(resourcev3.RouteType).Resources) == len(want)
		}); err != nil {
			t.Fatalf("step %d: probe: %v", i, err)
		}
		if got := probe.State(resourcev3.RouteType).Version; got != mirrored {
			t.Fatalf("step %d: the cache sends version %q, the server counts %q", i, got, mirrored)
		}
		_ = probe.Close()
	}
	var listeners []*listenerv3.Listener
	for _, l := range s.Served().Listeners {
		listeners = append(listeners, l)
	}
	if len(listeners) != 1 {
		t.Fatalf("served %d listeners at the end, want 1", len(listeners))
	}
}
