package gateway_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	. "github.com/onsi/gomega"
	"google.golang.org/protobuf/encoding/protojson"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/portico-dev/portico/apis/v1alpha1"
	translate "github.com/portico-dev/portico/internal/translate/gateway"
	"github.com/portico-dev/portico/internal/translate/gateway/scale"
	"github.com/portico-dev/portico/nodeagent/xds/xdstest"
)

// The scale of issue 12: 10,000 HTTPRoutes of 4 rules on 100 Gateways (the
// routes of translate.BenchInput), created once per process.
const benchNamespaces = 10

var benchSetup struct {
	once sync.Once
	err  error
	in   translate.Input
}

// parallel runs f(0..n-1) on a few workers.
func parallel(n, workers int, f func(i int) error) error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	next := make(chan int)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := f(i); err != nil {
					mu.Lock()
					first = err
					mu.Unlock()
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return first
}

func setupScale(b *testing.B) translate.Input {
	b.Helper()
	benchSetup.once.Do(func() {
		ctx := context.Background()
		start := time.Now()
		// PORTICO_BENCH_ROUTES scales the run down (100 routes per Gateway).
		in := scale.Input()
		if n, err := strconv.Atoi(os.Getenv("PORTICO_BENCH_ROUTES")); err == nil && n > 0 {
			in = scale.InputN(n, max(n/100, 1))
		}
		benchSetup.in = in
		benchSetup.err = func() error {
			pool := &v1alpha1.LoadBalancerIPPool{ObjectMeta: metav1.ObjectMeta{Name: "bench-pool"},
				Spec: v1alpha1.LoadBalancerIPPoolSpec{Blocks: []v1alpha1.IPBlock{{CIDR: "10.1.0.0/24"}}}}
			if err := k8s.Create(ctx, pool); err != nil {
				return err
			}
			for n := range benchNamespaces {
				if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("bench-%02d", n)}}); err != nil {
					return err
				}
			}
			svcs := make([]*corev1.Service, 0, len(in.Services))
			for _, s := range in.Services {
				svcs = append(svcs, s)
			}
			if err := parallel(len(svcs), 8, func(i int) error {
				s := svcs[i].DeepCopy()
				// Headless: envtest's service range has 256 addresses.
				s.Spec.ClusterIP, s.Spec.Selector = corev1.ClusterIPNone, map[string]string{"app": "x"}
				return k8s.Create(ctx, s)
			}); err != nil {
				return err
			}
			if err := parallel(len(in.Gateways), 8, func(i int) error {
				g := in.Gateways[i].DeepCopy()
				g.CreationTimestamp = metav1.Time{}
				return k8s.Create(ctx, g)
			}); err != nil {
				return err
			}
			if err := parallel(len(in.HTTPRoutes), 8, func(i int) error {
				r := in.HTTPRoutes[i].DeepCopy()
				r.CreationTimestamp = metav1.Time{}
				return k8s.Create(ctx, r)
			}); err != nil {
				return err
			}
			return waitAttached(ctx, len(in.HTTPRoutes))
		}()
		b.Logf("setup: %d routes on %d Gateways created and served in %s", len(in.HTTPRoutes), len(in.Gateways), time.Since(start).Round(time.Second))
	})
	if benchSetup.err != nil {
		b.Fatal(benchSetup.err)
	}
	return benchSetup.in
}

// waitAttached polls (setup only) until every route has its config.
func waitAttached(ctx context.Context, want int) error {
	deadline := time.Now().Add(30 * time.Minute)
	for time.Now().Before(deadline) {
		var npcs v1alpha1.NodeProxyConfigList
		if err := k8s.List(ctx, &npcs, client.MatchingLabels{v1alpha1.LabelProducer: translate.Producer, v1alpha1.LabelSourceKind: translate.KindHTTPRoute}); err != nil {
			return err
		}
		n := 0
		for _, c := range npcs.Items {
			if strings.HasPrefix(c.Labels[v1alpha1.LabelSourceNamespace], "bench-") {
				n++
			}
		}
		if n >= want && routeStatusesWritten(ctx, want) {
			return nil
		}
		time.Sleep(2 * time.Second)
	}
	return fmt.Errorf("routes not all translated after 30 minutes")
}

// routeStatusesWritten reports whether every bench route has the status of its current
// generation: the controller writes statuses after the configs, in the same pass, and
// a route change made while that first pass still runs would wait for it (under load
// for longer than changeRoute waits), timing the setup instead of the change.
func routeStatusesWritten(ctx context.Context, want int) bool {
	var routes gatewayv1.HTTPRouteList
	if err := k8s.List(ctx, &routes); err != nil {
		return false
	}
	n := 0
	for _, r := range routes.Items {
		if !strings.HasPrefix(r.Namespace, "bench-") || len(r.Status.Parents) == 0 {
			continue
		}
		current := true
		for _, c := range r.Status.Parents[0].Conditions {
			current = current && c.ObservedGeneration == r.Generation
		}
		if current {
			n++
		}
	}
	return n >= want
}

var benchSeq int

// BenchmarkOneRouteChange is issue 12's "one HTTPRoute changed among 10,000":
// the time from the route Update returning to the node's proxy (the Envoy-like
// ADS client of testnode) holding a route table with the change, through the
// controller, its NodeProxyConfig write, the agent's render and xDS.
//
//	go test ./controllers/gateway/ -run '^$' -bench OneRouteChange -benchtime 100x -timeout 60m
func BenchmarkOneRouteChange(b *testing.B) {
	in := setupScale(b)
	ctx := context.Background()
	if f := os.Getenv("PORTICO_BENCH_CPUPROFILE"); f != "" {
		out, err := os.Create(f)
		if err != nil {
			b.Fatal(err)
		}
		if err := pprof.StartCPUProfile(out); err != nil {
			b.Fatal(err)
		}
		defer func() { pprof.StopCPUProfile(); out.Close() }()
	}
	lat := make([]time.Duration, 0, b.N)
	// The status loop runs beside the change's path, on the same cores: how
	// often it judged every config is part of what a change costs.
	g := NewWithT(b)
	full, partial := statusPasses(g, "full"), statusPasses(g, "partial")
	delta, gwFull := gatewayPasses(g, "delta"), gatewayPasses(g, "full")
	b.ResetTimer()
	for range b.N {
		lat = append(lat, changeRoute(b, ctx, in))
	}
	b.StopTimer()
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
	b.ReportMetric((statusPasses(g, "full")-full)/float64(b.N), "full-status-passes/op")
	b.ReportMetric((statusPasses(g, "partial")-partial)/float64(b.N), "partial-status-passes/op")
	b.ReportMetric((gatewayPasses(g, "full")-gwFull)/float64(b.N), "full-passes/op")
	// The path timed is the delta pass's: a change answered by full passes
	// would be timing something else.
	if d := gatewayPasses(g, "delta") - delta; d < float64(b.N) {
		b.Fatalf("%v delta passes for %d route changes", d, b.N)
	}
	if hwm, err := peakRSS(); err == nil {
		b.ReportMetric(float64(hwm)/(1<<20), "process-peak-rss-MiB")
	}
}

// changeRoute edits one route's /api prefix and waits for the proxy to hold it.
func changeRoute(b *testing.B, ctx context.Context, in translate.Input) time.Duration {
	b.Helper()
	benchSeq++
	i := (benchSeq * 7919) % len(in.HTTPRoutes)
	src := in.HTTPRoutes[i]
	key := types.NamespacedName{Namespace: src.Namespace, Name: src.Name}
	r := &gatewayv1.HTTPRoute{}
	if err := k8s.Get(ctx, key, r); err != nil {
		b.Fatal(err)
	}
	path := "/api-" + strconv.Itoa(benchSeq)
	r.Spec.Rules[1].Matches[0].Path.Value = &path
	want := []byte(`"pathSeparatedPrefix":"` + path + `"`)
	if err := k8s.Update(ctx, r); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	table := string(r.Spec.ParentRefs[0].Name)
	table = "gateway." + string(*r.Spec.ParentRefs[0].Namespace) + "." + table + "/80"
	err := node.Proxy.WaitFor(wctx, func(c *xdstest.Client) bool { return servedHas(c, table, want) })
	if err != nil {
		cfg := &v1alpha1.NodeProxyConfig{}
		written := k8s.Get(ctx, client.ObjectKey{Name: translate.RouteConfigName(translate.RouteKey{Kind: translate.KindHTTPRoute,
			Namespace: key.Namespace, Name: key.Name}, types.NamespacedName{Namespace: string(*r.Spec.ParentRefs[0].Namespace),
			Name: string(r.Spec.ParentRefs[0].Name)})}, cfg) == nil && configHas(cfg, []byte(`"path_separated_prefix":"`+path+`"`))
		b.Fatalf("route %s: %s not served by the proxy (in its NodeProxyConfig: %v): %v", key, path, written, err)
	}
	return time.Since(start)
}

func servedHas(c *xdstest.Client, table string, want []byte) bool {
	rc, ok := c.State(resourcev3.RouteType).Resources[table].(*routev3.RouteConfiguration)
	if !ok {
		return false
	}
	raw, err := protojson.Marshal(rc)
	return err == nil && bytes.Contains(raw, want)
}

// peakRSS is this process's peak resident set (VmHWM): the controller, LB-IPAM
// and the node agent together.
func peakRSS() (int64, error) {
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmHWM")
}

func configHas(c *v1alpha1.NodeProxyConfig, want []byte) bool {
	for _, f := range c.Spec.RouteFragments {
		for _, r := range f.Routes {
			if bytes.Contains(r.Route.Raw, want) {
				return true
			}
		}
	}
	return false
}
