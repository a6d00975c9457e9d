package xds

import (
	"context"
	"github.com/portico-dev/portico/internal/xdsres/fixture"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/portico-dev/portico/nodeagent/xds/xdstest"
)

func endpointIPs(c *xdstest.Client, name string) []string {
	m, ok := c.State(resourcev3.EndpointType).Resources[name]
	if !ok {
		return nil
	}
	var out []string
	for _, l := range m.(*endpointv3.ClusterLoadAssignment).GetEndpoints() {
		for _, e := range l.GetLbEndpoints() {
			out = append(out, e.GetEndpoint().GetAddress().GetSocketAddress().GetAddress())
		}
	}
	return out
}

func hasAll(c *xdstest.Client) bool {
	_, l := c.State(resourcev3.ListenerType).Resources["http"]
	_, r := c.State(resourcev3.RouteType).Resources["routes"]
	_, cl := c.State(resourcev3.ClusterType).Resources["backend"]
	_, e := c.State(resourcev3.EndpointType).Resources["backend"]
	return l && r && cl && e
}

func TestServesEveryNodeAndTracksACKs(t *testing.T) {
	s := startServer(t, Options{})
	fi, err := os.Stat(s.opts.SocketPath)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o660 || fi.Mode().Type() != os.ModeSocket {
		t.Errorf("socket mode = %v, want srw-rw----", fi.Mode())
	}

	v, err := s.SetResources(context.Background(), baseConfig(t, 3, "a"))
	if err != nil || v != "1" {
		t.Fatalf("SetResources = %q, %v; want \"1\", nil", v, err)
	}
	if err := s.SetEndpoints(map[string]*endpointv3.ClusterLoadAssignment{"backend": fixture.CLA("backend", "10.0.0.1")}); err != nil {
		t.Fatal(err)
	}

	// Node IDs differ between Envoys; every one must get the snapshot.
	a, b := dial(t, s, "node-a"), dial(t, s, "node-b")
	for _, c := range []*xdstest.Client{a, b} {
		if err := c.WaitFor(waitCtx(t), hasAll); err != nil {
			t.Fatal(err)
		}
	}
	if got := len(a.State(resourcev3.RouteType).Resources["routes"].(*routev3.RouteConfiguration).GetVirtualHosts()[0].GetRoutes()); got != 3 {
		t.Errorf("routes received = %d, want 3", got)
	}

	p := waitProxy(t, s, "node-a", func(p ProxyState) bool {
		for _, typ := range []string{resourcev3.ListenerType, resourcev3.RouteType, resourcev3.ClusterType} {
			if ts := p.Types[typ]; !ts.InSync || ts.Acked != "1" {
				return false
			}
		}
		return p.Connected && p.Types[resourcev3.EndpointType].Acked != ""
	})
	if p.Cluster != "portico-test" || p.Streams != 1 || p.ConnectedSince.IsZero() {
		t.Errorf("proxy = %+v", p)
	}
	if len(s.Proxies()) != 2 {
		t.Errorf("Proxies() has %d entries, want 2", len(s.Proxies()))
	}

	// A changed endpoint is pushed as a new EDS version.
	edsBefore := a.State(resourcev3.EndpointType)
	if err := s.SetEndpoints(map[string]*endpointv3.ClusterLoadAssignment{"backend": fixture.CLA("backend", "10.0.0.2", "10.0.0.3")}); err != nil {
		t.Fatal(err)
	}
	err = a.WaitFor(waitCtx(t), func(c *xdstest.Client) bool {
		ips := endpointIPs(c, "backend")
		return len(ips) == 2 && ips[0] == "10.0.0.2" && ips[1] == "10.0.0.3"
	})
	if err != nil {
		t.Fatal(err)
	}
	edsAfter := a.State(resourcev3.EndpointType)
	if edsAfter.Version == edsBefore.Version {
		t.Errorf("EDS version stayed %q after an endpoint change", edsAfter.Version)
	}

	// An identical endpoint set is not a change: nothing is sent.
	if err := s.SetEndpoints(map[string]*endpointv3.ClusterLoadAssignment{"backend": fixture.CLA("backend", "10.0.0.2", "10.0.0.3")}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if got := a.State(resourcev3.EndpointType).Responses; got != edsAfter.Responses {
		t.Errorf("identical SetEndpoints sent %d more EDS responses", got-edsAfter.Responses)
	}

	// Disconnect is visible.
	_ = b.Close()
	p = waitProxy(t, s, "node-b", func(p ProxyState) bool { return !p.Connected })
	if p.DisconnectedAt.IsZero() || p.Streams != 0 {
		t.Errorf("after close: %+v", p)
	}
}

func TestNACKIsReportedAndClearedByLaterACK(t *testing.T) {
	s := startServer(t, Options{})
	cfg := baseConfig(t, 1, "a")
	if _, err := s.SetResources(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	if err := s.SetEndpoints(map[string]*endpointv3.ClusterLoadAssignment{"backend": fixture.CLA("backend", "10.0.0.1")}); err != nil {
		t.Fatal(err)
	}
	c := dial(t, s, "node-a")
	if err := c.WaitFor(waitCtx(t), hasAll); err != nil {
		t.Fatal(err)
	}
	waitProxy(t, s, "node-a", func(p ProxyState) bool { return p.Types[resourcev3.ListenerType].Acked == "1" })

	const envoyText = "Error adding/updating listener(s) http: cannot bind '127.0.0.1:15002': Address already in use"
	c.SetReject(func(typeURL string, resp *discoveryv3.DiscoveryResponse) string {
		if typeURL == resourcev3.ListenerType && resp.GetVersionInfo() == "2" {
			return envoyText
		}
		return ""
	})
	cfg.Listeners = []*listenerv3.Listener{fixture.HTTPListener(t, "http", "routes", 15002)}
	if v, err := s.SetResources(context.Background(), cfg); err != nil || v != "2" {
		t.Fatalf("SetResources = %q, %v", v, err)
	}
	p := waitProxy(t, s, "node-a", func(p ProxyState) bool { return p.Types[resourcev3.ListenerType].LastNACK != nil })
	lds := p.Types[resourcev3.ListenerType]
	if lds.LastNACK.Message != envoyText || lds.LastNACK.Version != "2" || lds.Acked != "1" || lds.InSync {
		t.Errorf("LDS state after NACK = %+v (NACK %+v)", lds, *lds.LastNACK)
	}
	if p.Types[resourcev3.ClusterType].LastNACK != nil || !p.Types[resourcev3.ClusterType].InSync {
		t.Errorf("CDS should be untouched: %+v", p.Types[resourcev3.ClusterType])
	}

	// The rejected version must not be resent in a loop.
	time.Sleep(300 * time.Millisecond)
	if st := c.State(resourcev3.ListenerType); st.Responses != 2 || len(st.Nacks) != 1 || st.Version != "1" {
		// Without the NACK handling in the tracker, go-control-plane resends
		// the rejected version thousands of times a second.
		t.Errorf("after NACK client LDS = %d responses, %d NACKs, version %q; want 2, 1, \"1\"", st.Responses, len(st.Nacks), st.Version)
	}

	cfg.Listeners = []*listenerv3.Listener{fixture.HTTPListener(t, "http", "routes", 15003)}
	if v, err := s.SetResources(context.Background(), cfg); err != nil || v != "3" {
		t.Fatalf("SetResources = %q, %v", v, err)
	}
	p = waitProxy(t, s, "node-a", func(p ProxyState) bool { return p.Types[resourcev3.ListenerType].Acked == "3" })
	if lds := p.Types[resourcev3.ListenerType]; lds.LastNACK != nil || !lds.InSync {
		t.Errorf("LDS after ACK of a newer version = %+v", lds)
	}
}

func TestInvalidResourceKeepsServedSnapshot(t *testing.T) {
	s := startServer(t, Options{})
	good := baseConfig(t, 2, "a")
	if _, err := s.SetResources(context.Background(), good); err != nil {
		t.Fatal(err)
	}
	if err := s.SetEndpoints(map[string]*endpointv3.ClusterLoadAssignment{"backend": fixture.CLA("backend", "10.0.0.1")}); err != nil {
		t.Fatal(err)
	}
	c := dial(t, s, "node-a")
	if err := c.WaitFor(waitCtx(t), hasAll); err != nil {
		t.Fatal(err)
	}

	badCluster := fixture.EDSCluster("bad-timeout")
	badCluster.ConnectTimeout = durationpb.New(-time.Second)
	noAddress := fixture.HTTPListener(t, "no-address", "routes", 1)
	noAddress.Address = nil

	for name, tc := range map[string]struct {
		r        Resources
		kind, rn string
	}{
		"cluster connect_timeout":  {Resources{Listeners: good.Listeners, Routes: good.Routes, Clusters: append(good.Clusters[:1:1], badCluster)}, KindCluster, "bad-timeout"},
		"listener without address": {Resources{Listeners: append(good.Listeners[:1:1], noAddress), Routes: good.Routes, Clusters: good.Clusters}, KindListener, "no-address"},
	} {
		t.Run(name, func(t *testing.T) {
			v, err := s.SetResources(context.Background(), tc.r)
			errs, ok := IsInvalid(err)
			if !ok || v != "" {
				t.Fatalf("SetResources = %q, %v; want an InvalidResourcesError", v, err)
			}
			if len(errs) != 1 || errs[0].Kind != tc.kind || errs[0].Name != tc.rn || errs[0].TypeURL == "" {
				t.Fatalf("errors = %+v, want one for %s %q", errs, tc.kind, tc.rn)
			}
			t.Logf("error: %v", err)
		})
	}
	if s.Version() != "1" {
		t.Errorf("served version = %q after rejected updates, want 1", s.Version())
	}
	time.Sleep(200 * time.Millisecond)
	for _, typ := range []string{resourcev3.ListenerType, resourcev3.ClusterType, resourcev3.RouteType} {
		if st := c.State(typ); numbered(s, typ, st.Version) != "1" || st.Responses != 1 {
			t.Errorf("%s: version %q after %d responses; want only version 1", typ, st.Version, st.Responses)
		}
	}
	if _, ok := c.State(resourcev3.ClusterType).Resources["bad-timeout"]; ok {
		t.Error("invalid cluster reached the client")
	}

	// An invalid endpoint assignment is refused alone; the valid one applies.
	err := s.SetEndpoints(map[string]*endpointv3.ClusterLoadAssignment{
		"backend": fixture.CLA("backend", "10.0.0.9"),
		"other":   fixture.CLA("mismatch", "10.0.0.1"),
	})
	if errs, ok := IsInvalid(err); !ok || len(errs) != 1 || errs[0].Name != "other" || errs[0].Kind != KindClusterLoadAssignment {
		t.Errorf("SetEndpoints error = %v", err)
	}
	if err := c.WaitFor(waitCtx(t), func(c *xdstest.Client) bool {
		ips := endpointIPs(c, "backend")
		return len(ips) == 1 && ips[0] == "10.0.0.9"
	}); err != nil {
		t.Fatal(err)
	}
}

func TestVersionsOnlyGoUp(t *testing.T) {
	s, err := New(Options{SocketPath: shortSocketPath(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var last uint64
	step := func(r Resources, wantChange bool) {
		t.Helper()
		v, err := s.SetResources(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("version %q is not an integer", v)
		}
		if n < last || (wantChange && n == last) || (!wantChange && n != last) {
			t.Fatalf("version went from %d to %d (change expected: %v)", last, n, wantChange)
		}
		last = n
	}
	step(baseConfig(t, 1, "a"), true)
	step(baseConfig(t, 1, "a"), false) // same content: same version
	step(baseConfig(t, 2, "a"), true)
	bad := baseConfig(t, 1, "a")
	bad.Clusters[0].ConnectTimeout = durationpb.New(0)
	if _, err := s.SetResources(ctx, bad); err == nil {
		t.Fatal("zero connect_timeout accepted")
	}
	step(baseConfig(t, 3, "a"), true)
	if s.Version() != strconv.FormatUint(last, 10) {
		t.Errorf("Version() = %q, want %d", s.Version(), last)
	}
}

func TestSocketLifecycle(t *testing.T) {
	path := shortSocketPath(t)
	if err := os.WriteFile(path, []byte("not a socket"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{SocketPath: path})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err == nil {
		t.Fatal("Listen replaced a regular file")
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}

	// A socket left behind by a crashed agent is replaced.
	stale, err := New(Options{SocketPath: path})
	if err != nil {
		t.Fatal(err)
	}
	if err := stale.Listen(); err != nil {
		t.Fatal(err)
	}
	for _, l := range stale.listeners {
		l.(interface{ SetUnlinkOnClose(bool) }).SetUnlinkOnClose(false)
		_ = l.Close()
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("stale socket not left behind: %v", err)
	}

	s = startServer(t, Options{SocketPath: path})
	if _, err := s.SetResources(context.Background(), baseConfig(t, 1, "a")); err != nil {
		t.Fatal(err)
	}
	c := dial(t, s, "node-a")
	if err := c.WaitFor(waitCtx(t), func(c *xdstest.Client) bool { return c.State(resourcev3.ListenerType).Version == "1" }); err != nil {
		t.Fatal(err)
	}

	// Graceful stop must not wait for the never-ending ADS stream.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	s.Stop(ctx)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Stop took %v", d)
	}
	if err := c.WaitFor(waitCtx(t), func(c *xdstest.Client) bool { return c.Err() != nil }); err != nil {
		t.Error(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("socket still present after Stop: %v", err)
	}
}

func TestTCPLoopback(t *testing.T) {
	if _, err := New(Options{SocketPath: "x", TCPAddress: "10.1.2.3:18000"}); err == nil {
		t.Error("non-loopback TCP address accepted")
	}
	s := startServer(t, Options{TCPAddress: "127.0.0.1:0"})
	if _, err := s.SetResources(context.Background(), baseConfig(t, 1, "a")); err != nil {
		t.Fatal(err)
	}
	addrs := s.Addrs()
	if len(addrs) != 2 {
		t.Fatalf("Addrs = %v", addrs)
	}
	c, err := xdstest.Dial(context.Background(), addrs[1].String(), "tcp-node")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitFor(waitCtx(t), func(c *xdstest.Client) bool {
		_, ok := c.State(resourcev3.ClusterType).Resources["backend"]
		return ok
	}); err != nil {
		t.Fatal(err)
	}
}

func TestDeltaADS(t *testing.T) {
	s := startServer(t, Options{})
	if _, err := s.SetResources(context.Background(), baseConfig(t, 1, "a")); err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient("unix://"+s.opts.SocketPath, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	ctx := waitCtx(t)
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{
		Node:    &corev3.Node{Id: "delta-node"},
		TypeUrl: resourcev3.ClusterType,
	}); err != nil {
		t.Fatal(err)
	}
	resp, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetResources()) != 1 || resp.GetResources()[0].GetName() != "backend" {
		t.Fatalf("delta CDS response = %v", resp)
	}
	cl := &clusterv3.Cluster{}
	if err := resp.GetResources()[0].GetResource().UnmarshalTo(cl); err != nil || cl.GetName() != "backend" {
		t.Fatalf("decoding cluster: %v", err)
	}
	if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType, ResponseNonce: resp.GetNonce()}); err != nil {
		t.Fatal(err)
	}
	waitProxy(t, s, "delta-node", func(p ProxyState) bool {
		return p.Connected && p.Types[resourcev3.ClusterType].Acked == resp.GetSystemVersionInfo()
	})
}

func TestStartStopsOnContext(t *testing.T) {
	s, err := New(Options{SocketPath: shortSocketPath(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Start(ctx) }()
	if _, err := s.SetResources(context.Background(), baseConfig(t, 1, "a")); err != nil {
		t.Fatal(err)
	}
	// Start binds asynchronously here; the client retries until it can connect.
	c := dial(t, s, "node-a")
	if err := c.WaitFor(waitCtx(t), func(c *xdstest.Client) bool { return c.State(resourcev3.ListenerType).Version == "1" }); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Start returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Start did not return after cancel")
	}
	if _, err := os.Stat(s.opts.SocketPath); !os.IsNotExist(err) {
		t.Errorf("socket left behind: %v", err)
	}
}

// TestServedMessagesAreNotTrustedBlindly: the server remembers what passed validation
// by identity, but a new table made of routes it already serves is still judged as a
// table, and a new route in it on its own.
func TestServedMessagesAreNotTrustedBlindly(t *testing.T) {
	s := startServer(t, Options{})
	ctx := context.Background()
	good := baseConfig(t, 3, "a")
	v1, err := s.SetResources(ctx, good)
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, s, "node-a")
	if err := c.WaitFor(waitCtx(t), func(c *xdstest.Client) bool {
		return numbered(s, resourcev3.RouteType, c.State(resourcev3.RouteType).Version) == v1
	}); err != nil {
		t.Fatal(err)
	}
	if v, err := s.SetResources(ctx, good); err != nil || v != v1 {
		t.Fatalf("the same messages again: %q, %v; want %q", v, err, v1)
	}
	table := func(mutate func(*routev3.VirtualHost)) Resources {
		old := good.Routes[0]
		rc := &routev3.RouteConfiguration{Name: old.GetName()}
		for _, vh := range old.GetVirtualHosts() {
			c := &routev3.VirtualHost{Name: vh.GetName(), Domains: vh.GetDomains(), Routes: vh.GetRoutes()}
			mutate(c)
			rc.VirtualHosts = append(rc.VirtualHosts, c)
		}
		return Resources{Listeners: good.Listeners, Routes: []*routev3.RouteConfiguration{rc}, Clusters: good.Clusters}
	}
	if _, err := s.SetResources(ctx, table(func(vh *routev3.VirtualHost) { vh.Domains = nil })); err == nil {
		t.Fatal("a virtual host without domains, over served routes, was accepted")
	}
	badRoute := &routev3.Route{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/x"}}}
	if _, err := s.SetResources(ctx, table(func(vh *routev3.VirtualHost) { vh.Routes = append(slices.Clone(vh.Routes), badRoute) })); err == nil {
		t.Fatal("a route without an action, among served routes, was accepted")
	}
	if v, err := s.SetResources(ctx, table(func(*routev3.VirtualHost) {})); err != nil || v != v1 {
		t.Fatalf("an equal table of the served routes: %q, %v; want %q (same content, same version)", v, err, v1)
	}
	if st := c.State(resourcev3.RouteType); numbered(s, resourcev3.RouteType, st.Version) != v1 || st.Responses != 1 {
		t.Fatalf("the client got routes version %q in %d responses, want only %q", st.Version, st.Responses, v1)
	}
}

// numbered is a version a client got, in the snapshots' numbering: route tables
// come from a linear cache with versions of its own (routeTables).
func numbered(s *Server, typeURL, v string) string {
	if typeURL != resourcev3.RouteType {
		return v
	}
	s.resMu.Lock()
	defer s.resMu.Unlock()
	return s.routes.numberedAs(v)
}
