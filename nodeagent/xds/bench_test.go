package xds

import (
	"context"
	"fmt"
	"github.com/portico-dev/portico/internal/xdsres/fixture"
	"slices"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/portico-dev/portico/nodeagent/xds/xdstest"
)

// BenchmarkSetResourcesToClient measures the time from SetResources to a
// connected ADS client holding the new version, for a RouteConfiguration of
// 1,000 routes plus a listener and a cluster. Run with -benchtime=200x to get
// the p50/p99 over 200 updates.
func BenchmarkSetResourcesToClient(b *testing.B) {
	b.Run("routes-changed", func(b *testing.B) {
		benchUpdates(b, func(i int, cfg *Resources) []string {
			cfg.Routes = []*routev3.RouteConfiguration{fixture.RouteConfig("routes", "backend", 1000, fmt.Sprintf("v%d", i))}
			return []string{resourcev3.RouteType}
		})
	})
	b.Run("all-changed", func(b *testing.B) {
		benchUpdates(b, func(i int, cfg *Resources) []string {
			cfg.Routes = []*routev3.RouteConfiguration{fixture.RouteConfig("routes", "backend", 1000, fmt.Sprintf("v%d", i))}
			cfg.Listeners = []*listenerv3.Listener{fixture.HTTPListener(b, "http", "routes", uint32(20000+i%10000))}
			c := fixture.EDSCluster("backend")
			c.ConnectTimeout = durationpb.New(time.Duration(i+1) * time.Millisecond)
			cfg.Clusters = []*clusterv3.Cluster{c}
			return []string{resourcev3.ListenerType, resourcev3.RouteType, resourcev3.ClusterType}
		})
	})
}

func benchUpdates(b *testing.B, mutate func(i int, cfg *Resources) []string) {
	s := startServer(b, Options{})
	ctx := context.Background()
	cfg := baseConfig(b, 1000, "v0")
	if _, err := s.SetResources(ctx, cfg); err != nil {
		b.Fatal(err)
	}
	if err := s.SetEndpoints(map[string]*endpointv3.ClusterLoadAssignment{"backend": fixture.CLA("backend", "10.0.0.1")}); err != nil {
		b.Fatal(err)
	}
	c := dial(b, s, "bench")
	if err := c.WaitFor(waitCtx(b), hasAll); err != nil {
		b.Fatal(err)
	}

	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		types := mutate(i+1, &cfg)
		b.StartTimer()

		start := time.Now()
		v, err := s.SetResources(ctx, cfg)
		if err != nil {
			b.Fatal(err)
		}
		err = c.WaitFor(waitCtx(b), func(c *xdstest.Client) bool {
			for _, typ := range types {
				if c.State(typ).Version != v {
					return false
				}
			}
			return true
		})
		if err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()

	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[int(p*float64(len(lat)-1))]) / float64(time.Millisecond)
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(pct(1), "max-ms")
}
