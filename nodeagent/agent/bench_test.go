package agent

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/envoykit"
	"github.com/portico-dev/portico/nodeagent/xds/xdstest"
)

const benchListenerJSON = `{"@type":"type.googleapis.com/envoy.config.listener.v3.Listener","name":"bench-http",
 "address":{"socketAddress":{"address":"0.0.0.0","portValue":8080}},
 "filterChains":[{"filters":[{"name":"envoy.filters.network.http_connection_manager","typedConfig":{
  "@type":"type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
  "statPrefix":"bench","rds":{"routeConfigName":"bench-routes","configSource":{"ads":{},"resourceApiVersion":"V3"}},
  "httpFilters":[{"name":"envoy.filters.http.router","typedConfig":{"@type":"type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]}]}`

const benchClusterJSON = `{"@type":"type.googleapis.com/envoy.config.cluster.v3.Cluster","name":"bench-backend","type":"EDS",
 "connectTimeout":"1s","edsClusterConfig":{"edsConfig":{"ads":{},"resourceApiVersion":"V3"},"serviceName":"default/bench:80"}}`

// benchBackend gives the EDS name benchClusterJSON asks for.
var benchBackend = v1alpha1.BackendService{ServiceRef: v1alpha1.ServiceRef{Namespace: "default", Name: "bench"}, Ports: []string{"80"}}

func benchRoutes(n int, gen int) []v1alpha1.FragmentRoute {
	routes := make([]v1alpha1.FragmentRoute, n)
	for i := range routes {
		prefix := fmt.Sprintf("/r%05d", i)
		if i == 0 {
			prefix = fmt.Sprintf("/changed-%d", gen)
		}
		routes[i] = v1alpha1.FragmentRoute{
			Precedence: fmt.Sprintf("%05d", i),
			Route:      apiextensionsv1.JSON{Raw: []byte(fmt.Sprintf(`{"match":{"prefix":%q},"route":{"cluster":"bench-backend"}}`, prefix))},
		}
	}
	return routes
}

// acceptedAt records when the apiserver answered the last write: RoundTrip returns as
// soon as the response headers arrive, which the apiserver sends once the object is
// stored, before the client has read and decoded the 1,000-route object it sends back.
// Timing from Update's return instead would leave those milliseconds out, and the
// watch event often reaches the agent before Update returns.
type acceptedAt struct {
	rt http.RoundTripper
	at *atomic.Int64 // UnixNano
}

func (a acceptedAt) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := a.rt.RoundTrip(req)
	if req.Method == http.MethodPut {
		a.at.Store(time.Now().UnixNano())
	}
	return resp, err
}

// BenchmarkConfigChangeToSnapshot measures, for a NodeProxyConfig with 1,000 routes, the
// time from the apiserver accepting a change (its response to the write) to a connected
// ADS client holding the route table that carries it: watch, debounce, render,
// validation and xDS push together. Reports p50, p99 and max (goal: p99 ≤ 100 ms); with
// -benchtime 100x, p99 is the second slowest change.
func BenchmarkConfigChangeToSnapshot(b *testing.B) {
	const routes = 1000
	npc := &v1alpha1.NodeProxyConfig{
		ObjectMeta: metav1.ObjectMeta{Name: "bench"},
		Spec: v1alpha1.NodeProxyConfigSpec{
			Envoy: &v1alpha1.EnvoyResources{Resources: []v1alpha1.EnvoyResource{
				mustResource(benchListenerJSON), mustResource(benchClusterJSON)},
				BackendServices: []v1alpha1.BackendService{benchBackend}},
			RouteFragments: []v1alpha1.RouteFragment{{RouteTable: "bench-routes", Host: "*", Routes: benchRoutes(routes, 0)}},
		},
	}
	firstPrefix := func(cl *xdstest.Client) string {
		rc, _ := cl.State(resourcev3.RouteType).Resources["bench-routes"].(*routev3.RouteConfiguration)
		if len(rc.GetVirtualHosts()) == 0 || len(rc.GetVirtualHosts()[0].GetRoutes()) != routes {
			return ""
		}
		return rc.GetVirtualHosts()[0].GetRoutes()[0].GetMatch().GetPrefix()
	}
	benchChanges(b, []*v1alpha1.NodeProxyConfig{npc}, func(gen int) (*v1alpha1.NodeProxyConfig, func(*xdstest.Client) bool) {
		// Update refreshes npc from the response, so its resourceVersion is current.
		npc.Spec.RouteFragments[0].Routes = benchRoutes(routes, gen)
		want := fmt.Sprintf("/changed-%d", gen)
		return npc, func(cl *xdstest.Client) bool { return firstPrefix(cl) == want }
	})
}

// BenchmarkConfigChangeToSnapshot5000Configs is the same measure with 5,000 configs
// selected on the node, shaped like shared Ingresses: one listener whose route table
// is made of the fragments of 5,000 configs (500 hosts, two routes and a cluster
// each), one of which changes a route per iteration (issue 16).
//
//	go test ./nodeagent/agent/ -run '^$' -bench ConfigChangeToSnapshot5000Configs -benchtime 50x
func BenchmarkConfigChangeToSnapshot5000Configs(b *testing.B) {
	const n, hosts = 5000, 500
	shared := &v1alpha1.NodeProxyConfig{
		ObjectMeta: metav1.ObjectMeta{Name: "bench-shared"},
		Spec: v1alpha1.NodeProxyConfigSpec{
			Envoy:          &v1alpha1.EnvoyResources{Resources: []v1alpha1.EnvoyResource{mustResource(benchListenerJSON)}},
			RouteFragments: []v1alpha1.RouteFragment{envoykit.EmptyTable("bench-routes")},
		},
	}
	configs := []*v1alpha1.NodeProxyConfig{shared}
	route := func(prefix, cluster string) v1alpha1.FragmentRoute {
		return v1alpha1.FragmentRoute{Precedence: prefix, Route: apiextensionsv1.JSON{
			Raw: fmt.Appendf(nil, `{"match":{"prefix":%q},"route":{"cluster":%q}}`, prefix, cluster)}}
	}
	for i := range n {
		svc := fmt.Sprintf("svc-%04d", i)
		cluster := "default/" + svc + ":80"
		configs = append(configs, &v1alpha1.NodeProxyConfig{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("bench-ing-%04d", i)},
			Spec: v1alpha1.NodeProxyConfigSpec{
				Envoy: &v1alpha1.EnvoyResources{
					Resources: []v1alpha1.EnvoyResource{mustResource(fmt.Sprintf(`{"@type":"type.googleapis.com/envoy.config.cluster.v3.Cluster",`+
						`"name":%q,"type":"EDS","connectTimeout":"1s","edsClusterConfig":{"edsConfig":{"ads":{},"resourceApiVersion":"V3"}}}`, cluster))},
					BackendServices: []v1alpha1.BackendService{{ServiceRef: v1alpha1.ServiceRef{Namespace: "default", Name: svc}, Ports: []string{"80"}}},
				},
				RouteFragments: []v1alpha1.RouteFragment{{RouteTable: "bench-routes", Host: fmt.Sprintf("h%03d.example.com", i%hosts),
					Routes: []v1alpha1.FragmentRoute{route(fmt.Sprintf("/i%04d/api", i), cluster), route(fmt.Sprintf("/i%04d", i), cluster)}}},
			},
		})
	}
	benchChanges(b, configs, func(gen int) (*v1alpha1.NodeProxyConfig, func(*xdstest.Client) bool) {
		if gen == 0 { // as created: the agent's first render has every config
			host, prefix := configs[n].Spec.RouteFragments[0].Host, fmt.Sprintf("/i%04d/api", n-1)
			return nil, func(cl *xdstest.Client) bool { return servesPrefix(cl, "bench-routes", host, prefix) }
		}
		i := 1 + (gen*7919)%n
		c := configs[i]
		host := c.Spec.RouteFragments[0].Host
		prefix := fmt.Sprintf("/changed-%d", gen)
		c.Spec.RouteFragments[0].Routes[0] = route(prefix, "default/"+c.Spec.Envoy.BackendServices[0].Name+":80")
		return c, func(cl *xdstest.Client) bool { return servesPrefix(cl, "bench-routes", host, prefix) }
	})
}

// servesPrefix reports whether the client holds table with a route for prefix on host.
func servesPrefix(cl *xdstest.Client, table, host, prefix string) bool {
	rc, _ := cl.State(resourcev3.RouteType).Resources[table].(*routev3.RouteConfiguration)
	for _, vh := range rc.GetVirtualHosts() {
		if vh.GetName() != host {
			continue
		}
		for _, r := range vh.GetRoutes() {
			if r.GetMatch().GetPrefix() == prefix {
				return true
			}
		}
	}
	return false
}

// benchChanges creates configs (the first must be served before the others' routes
// are: it defines the listener), runs an agent and an ADS client, and then per
// iteration writes the config change(gen) returns and times, from the apiserver's
// answer to that write, until served reports the change at the client.
func benchChanges(b *testing.B, configs []*v1alpha1.NodeProxyConfig,
	change func(gen int) (*v1alpha1.NodeProxyConfig, func(*xdstest.Client) bool)) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const nodeName = "bench-node"
	var accepted atomic.Int64
	wcfg := rest.CopyConfig(env.Config)
	wcfg.QPS, wcfg.Burst = 500, 500
	wcfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return acceptedAt{rt: rt, at: &accepted} })
	writer, err := client.New(wcfg, client.Options{Scheme: env.Client.Scheme()})
	if err != nil {
		b.Fatal(err)
	}
	created := time.Now()
	if err := createAll(ctx, writer, configs); err != nil {
		b.Fatal(err)
	}
	defer func() {
		for _, c := range configs {
			_ = env.Client.Delete(context.Background(), c)
		}
	}()
	if len(configs) > 1 {
		b.Logf("%d configs created in %s", len(configs), time.Since(created).Round(time.Second))
	}

	sock := filepath.Join(shortDir(b), "xds.sock")
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{NodeName: nodeName, Namespace: testNamespace, RestConfig: env.Config,
			StateDir: b.TempDir(), XDSSocket: sock, DisableDatapath: true, Log: log.Log})
	}()
	defer func() { cancel(); <-done }()
	ads, err := xdstest.Dial(ctx, "unix://"+sock, "envoy-bench")
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = ads.Close() }()
	if err := ads.Start(); err != nil {
		b.Fatal(err)
	}
	// Generation 0 is what was created: wait until it is served.
	_, served0 := change(0)
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Minute)
	err = ads.WaitFor(wctx, served0)
	wcancel()
	if err != nil {
		b.Fatal(err)
	}

	var lat []time.Duration
	gen := 0
	for b.Loop() {
		gen++
		c, served := change(gen)
		if err := writer.Update(ctx, c); err != nil {
			b.Fatal(err)
		}
		start := time.Unix(0, accepted.Load())
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		err := ads.WaitFor(wctx, served)
		wcancel()
		if err != nil {
			b.Fatalf("change %d not served: %v", gen, err)
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	// Nearest rank: the smallest latency that at least p% of the changes did not exceed.
	pct := func(p int) float64 {
		return float64(lat[(len(lat)*p+99)/100-1].Microseconds()) / 1000
	}
	b.ReportMetric(pct(50), "p50-ms")
	b.ReportMetric(pct(99), "p99-ms")
	b.ReportMetric(pct(100), "max-ms")
}

// createAll creates configs, the first alone and the rest on a few workers.
func createAll(ctx context.Context, c client.Client, configs []*v1alpha1.NodeProxyConfig) error {
	if err := c.Create(ctx, configs[0]); err != nil {
		return err
	}
	rest := configs[1:]
	errs := make(chan error, 8)
	next := make(chan *v1alpha1.NodeProxyConfig)
	for range 8 {
		go func() {
			var first error
			for cfg := range next {
				if err := c.Create(ctx, cfg); err != nil && first == nil {
					first = err
				}
			}
			errs <- first
		}()
	}
	for _, cfg := range rest {
		next <- cfg
	}
	close(next)
	var first error
	for range 8 {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

func mustResource(raw string) v1alpha1.EnvoyResource {
	var r v1alpha1.EnvoyResource
	if err := r.UnmarshalJSON([]byte(strings.TrimSpace(raw))); err != nil {
		panic(err)
	}
	return r
}
