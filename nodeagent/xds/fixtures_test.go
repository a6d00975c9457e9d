package xds

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/portico-dev/portico/nodeagent/xds/xdstest"
)

func mustAny(t testing.TB, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func ads() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
}

func socketAddress(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address:       ip,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

// httpListener is what the agent renders for a redirected listener: RDS over
// ADS, transparent, no SO_REUSEPORT (see design §4).
func httpListener(t testing.TB, name, routeName string, port uint32) *listenerv3.Listener {
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: name,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			RouteConfigName: routeName,
			ConfigSource:    ads(),
		}},
		HttpFilters: []*hcmv3.HttpFilter{{
			Name:       "envoy.filters.http.router",
			ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, &routerv3.Router{})},
		}},
	}
	return &listenerv3.Listener{
		Name:            name,
		Address:         socketAddress("127.0.0.1", port),
		Transparent:     wrapperspb.Bool(true),
		EnableReusePort: wrapperspb.Bool(false),
		FilterChains: []*listenerv3.FilterChain{{
			Filters: []*listenerv3.Filter{{
				Name:       "envoy.filters.network.http_connection_manager",
				ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, hcm)},
			}},
		}},
	}
}

func routeConfig(name, cluster string, n int, tag string) *routev3.RouteConfiguration {
	routes := make([]*routev3.Route, 0, n)
	for i := range n {
		routes = append(routes, &routev3.Route{
			Name:  fmt.Sprintf("r%d", i),
			Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: fmt.Sprintf("/%s/%d", tag, i)}},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{
				ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster},
			}},
		})
	}
	return &routev3.RouteConfiguration{
		Name: name,
		VirtualHosts: []*routev3.VirtualHost{{
			Name:    "default",
			Domains: []string{"*"},
			Routes:  routes,
		}},
	}
}

func edsCluster(name string) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ConnectTimeout:       durationpb.New(time.Second),
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: ads()},
	}
}

func cla(name string, ips ...string) *endpointv3.ClusterLoadAssignment {
	var lbs []*endpointv3.LbEndpoint
	for _, ip := range ips {
		lbs = append(lbs, &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{
			Endpoint: &endpointv3.Endpoint{Address: socketAddress(ip, 8080)},
		}})
	}
	return &endpointv3.ClusterLoadAssignment{
		ClusterName: name,
		Endpoints:   []*endpointv3.LocalityLbEndpoints{{LbEndpoints: lbs}},
	}
}

// baseConfig is one listener → one route configuration → one EDS cluster.
func baseConfig(t testing.TB, routes int, tag string) Resources {
	return Resources{
		Listeners: []*listenerv3.Listener{httpListener(t, "http", "routes", 15001)},
		Routes:    []*routev3.RouteConfiguration{routeConfig("routes", "backend", routes, tag)},
		Clusters:  []*clusterv3.Cluster{edsCluster("backend")},
	}
}

// shortSocketPath keeps the path under the 108-byte sun_path limit, which
// t.TempDir() can exceed with long test names.
func shortSocketPath(t testing.TB) string {
	dir, err := os.MkdirTemp("", "xds")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return filepath.Join(dir, "xds.sock")
}

func startServer(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.SocketPath == "" {
		opts.SocketPath = shortSocketPath(t)
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Stop(ctx)
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s
}

func dial(t testing.TB, s *Server, nodeID string) *xdstest.Client {
	t.Helper()
	c, err := xdstest.Dial(waitCtx(t), "unix://"+s.opts.SocketPath, nodeID)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	return c
}

func waitCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// waitProxy polls Proxies() until cond holds for nodeID, driven by Changes().
func waitProxy(t testing.TB, s *Server, nodeID string, cond func(ProxyState) bool) ProxyState {
	t.Helper()
	ctx := waitCtx(t)
	for {
		for _, p := range s.Proxies() {
			if p.NodeID == nodeID && cond(p) {
				return p
			}
		}
		select {
		case <-s.Changes():
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			t.Fatalf("proxy %s never reached the expected state; have %+v", nodeID, s.Proxies())
		}
	}
}
