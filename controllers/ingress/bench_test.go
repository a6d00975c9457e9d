package ingress_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime/pprof"
	"slices"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/testcerts"
	translate "github.com/portico-dev/portico/internal/translate/ingress"
)

// The scale of issue #6: 5,000 shared Ingresses of 4 paths each (20,000 paths)
// in 50 namespaces over 500 backend Services; every fifth Ingress serves its
// host over TLS with its own Secret.
const (
	benchIngresses  = 5000
	benchNamespaces = 50
	benchServices   = 10 // per namespace
)

func benchNS(i int) string       { return fmt.Sprintf("bench-%02d", i%benchNamespaces) }
func benchName(i int) string     { return fmt.Sprintf("app-%04d", i) }
func benchHasTLS(i int) bool     { return i%5 == 0 }
func benchHost(i int) string     { return fmt.Sprintf("app-%04d.bench.example.com", i) }
func benchSecretOf(i int) string { return "tls-" + benchName(i) }

// benchIngress is Ingress i. The path types and backend port forms vary as in
// real charts: a catch-all prefix, an API prefix, a named port, an exact health path.
func benchIngress(i int) *networkingv1.Ingress {
	svc := func(k int) string { return fmt.Sprintf("svc-%d", k%benchServices) }
	be := func(name string, port networkingv1.ServiceBackendPort) networkingv1.IngressBackend {
		return networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: name, Port: port}}
	}
	ing := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: benchNS(i), Name: benchName(i)},
		Spec: networkingv1.IngressSpec{IngressClassName: ptr.To("portico"), Rules: []networkingv1.IngressRule{{
			Host: benchHost(i),
			IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{Paths: []networkingv1.HTTPIngressPath{
				{Path: "/", PathType: ptr.To(networkingv1.PathTypePrefix), Backend: be(svc(i), networkingv1.ServiceBackendPort{Number: 8080})},
				{Path: "/api", PathType: ptr.To(networkingv1.PathTypePrefix), Backend: be(svc(i+1), networkingv1.ServiceBackendPort{Name: "http"})},
				{Path: "/api/v1/items", PathType: ptr.To(networkingv1.PathTypePrefix), Backend: be(svc(i+2), networkingv1.ServiceBackendPort{Number: 8080})},
				{Path: "/healthz", PathType: ptr.To(networkingv1.PathTypeExact), Backend: be(svc(i), networkingv1.ServiceBackendPort{Number: 8080})},
			}}},
		}}}}
	if benchHasTLS(i) {
		ing.Spec.TLS = []networkingv1.IngressTLS{{Hosts: []string{benchHost(i)}, SecretName: benchSecretOf(i)}}
	}
	return ing
}

// parallel runs f(0..n-1) on a few workers: the apiserver takes one create at a
// time per connection, and creating 5,000 objects one after the other would
// make the setup, not the measurement, the bulk of a run.
func parallel(n, workers int, f func(i int) error) error {
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	next := make(chan int)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := f(i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	var err error
	for i := 0; i < n && err == nil; i++ {
		select {
		case next <- i:
		case err = <-errs:
		}
	}
	close(next)
	wg.Wait()
	close(errs)
	if err != nil {
		return err
	}
	return <-errs
}

var benchSetup struct {
	once sync.Once
	err  error
}

// setupScale creates the namespaces, Services, Secrets and Ingresses and waits
// until the controller has written every Ingress's config and status.
func setupScale(b *testing.B) {
	b.Helper()
	benchSetup.once.Do(func() {
		ctx := context.Background()
		start := time.Now()
		benchSetup.err = func() error {
			for n := range benchNamespaces {
				if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: benchNS(n)}}); err != nil {
					return err
				}
			}
			if err := parallel(benchNamespaces*benchServices, 8, func(i int) error {
				return k8s.Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: benchNS(i), Name: fmt.Sprintf("svc-%d", i/benchNamespaces)},
					// Headless: envtest's service range has 256 addresses.
					Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Selector: map[string]string{"app": "x"}, Ports: []corev1.ServicePort{{Name: "http", Port: 8080}}}})
			}); err != nil {
				return err
			}
			// One real key pair for every Secret: the agents check each one.
			pair, err := testcerts.Generate("*.bench.example.com")
			if err != nil {
				return err
			}
			if err := parallel(benchIngresses, 8, func(i int) error {
				if benchHasTLS(i) {
					s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: benchNS(i), Name: benchSecretOf(i)}, Type: corev1.SecretTypeTLS,
						Data: pair}
					if err := k8s.Create(ctx, s); err != nil {
						return err
					}
				}
				return k8s.Create(ctx, benchIngress(i))
			}); err != nil {
				return err
			}
			return waitTranslated(ctx)
		}()
		b.Logf("setup: %d Ingresses created and translated in %s", benchIngresses, time.Since(start).Round(time.Second))
	})
	if benchSetup.err != nil {
		b.Fatal(benchSetup.err)
	}
}

// waitTranslated polls (setup only, outside the measurement) until every
// Ingress has its config and its address, the last things a pass writes.
func waitTranslated(ctx context.Context) error {
	deadline := time.Now().Add(20 * time.Minute)
	for {
		var npcs v1alpha1.NodeProxyConfigList
		var ings networkingv1.IngressList
		err := k8s.List(ctx, &npcs, client.MatchingLabels{v1alpha1.LabelProducer: translate.Producer})
		if err == nil {
			err = k8s.List(ctx, &ings)
		}
		if err != nil {
			return err
		}
		have := map[string]bool{}
		for _, c := range npcs.Items {
			have[c.Name] = true
		}
		missing := 0
		for i := range ings.Items {
			ing := &ings.Items[i]
			if !have[translate.ConfigName(client.ObjectKeyFromObject(ing))] || len(ing.Status.LoadBalancer.Ingress) == 0 {
				missing++
			}
		}
		if len(ings.Items) >= benchIngresses && missing == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d Ingresses still untranslated", missing, len(ings.Items))
		}
		time.Sleep(2 * time.Second)
	}
}

// BenchmarkOneIngressChange is issue #6's "one Ingress changed among 5,000":
// the time from an Ingress Update returning to its NodeProxyConfig carrying the
// change, seen through a watch, with the controller and LB-IPAM running as in
// TestMain. Each iteration edits another Ingress's /api path. The setup
// (5,000 Ingresses, a few minutes) runs once per process and is not timed.
//
//	go test ./controllers/ingress/ -run '^$' -bench OneIngressChange -benchtime 200x -timeout 30m
//
// PORTICO_BENCH_CPUPROFILE=<file> profiles the measured iterations only (the
// setup would otherwise dominate -cpuprofile).
func BenchmarkOneIngressChange(b *testing.B) {
	setupScale(b)
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
	passes0, passTime0 := passStats(b)
	b.ResetTimer()
	for n := range b.N {
		lat = append(lat, changeOne(b, ctx, n))
	}
	b.StopTimer()
	// Passes per change tells whether events of one change are folded into
	// one pass; the controller's own time per pass separates it from the
	// apiserver's and the watch's share of the latency.
	passes1, passTime1 := passStats(b)
	if passes := passes1 - passes0; passes > 0 {
		b.ReportMetric(passes/float64(b.N), "passes/op")
		b.ReportMetric((passTime1-passTime0)/passes*1000, "pass-ms")
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
	name, size := largestConfig(b, ctx)
	b.ReportMetric(float64(size), "largest-npc-bytes")
	b.Logf("N=%d p50 %.1f ms, p99 %.1f ms; largest NodeProxyConfig %s: %d bytes", b.N, pct(0.5), pct(0.99), name, size)
}

// passStats reads controller-runtime's reconcile counters of the ingress
// controller: passes so far and their total duration in seconds.
func passStats(b *testing.B) (passes, seconds float64) {
	b.Helper()
	families, err := metrics.Registry.Gather()
	if err != nil {
		b.Fatal(err)
	}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			ingress := false
			for _, l := range m.GetLabel() {
				ingress = ingress || (l.GetName() == "controller" && l.GetValue() == "ingress")
			}
			switch {
			case !ingress:
			case f.GetName() == "controller_runtime_reconcile_total":
				passes += m.GetCounter().GetValue()
			case f.GetName() == "controller_runtime_reconcile_time_seconds":
				seconds += m.GetHistogram().GetSampleSum()
			}
		}
	}
	return passes, seconds
}

// benchSeq makes every edit unique across the calls of the benchmark function.
var benchSeq int

// changeOne edits one Ingress's /api path and returns how long its config took
// to show the new path.
func changeOne(b *testing.B, ctx context.Context, n int) time.Duration {
	b.Helper()
	benchSeq++
	i := (benchSeq * 7919) % benchIngresses // spread over namespaces, TLS and plain
	key := types.NamespacedName{Namespace: benchNS(i), Name: benchName(i)}
	name := translate.ConfigName(key)
	path := fmt.Sprintf("/api-%d", benchSeq)
	want := []byte(`"path_separated_prefix":"` + path + `"`)

	// Watch from the list's resourceVersion, the current one: the config's own
	// may be older than the apiserver's watch window.
	sel := fields.OneTermEqualSelector("metadata.name", name)
	var cur v1alpha1.NodeProxyConfigList
	if err := k8s.List(ctx, &cur, client.MatchingFieldsSelector{Selector: sel}); err != nil {
		b.Fatal(err)
	}
	w, err := watcher.Watch(ctx, &v1alpha1.NodeProxyConfigList{}, &client.ListOptions{
		FieldSelector: sel,
		Raw:           &metav1.ListOptions{ResourceVersion: cur.ResourceVersion},
	})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Stop()
	ing := &networkingv1.Ingress{}
	if err := k8s.Get(ctx, key, ing); err != nil {
		b.Fatal(err)
	}
	ing.Spec.Rules[0].HTTP.Paths[1].Path = path
	if err := k8s.Update(ctx, ing); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	timeout := time.After(time.Minute)
	for {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				b.Fatalf("watch of %s closed", name)
			}
			if ev.Type == watch.Error {
				b.Fatalf("watch of %s: %v", name, ev.Object)
			}
			if c, ok := ev.Object.(*v1alpha1.NodeProxyConfig); ok && configHas(c, want) {
				return time.Since(start)
			}
		case <-timeout:
			b.Fatalf("iteration %d: %s did not get %s within a minute", n, name, path)
		}
	}
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

// largestConfig is the largest of our NodeProxyConfigs as the apiserver stores
// it (CRs are kept as JSON).
func largestConfig(b *testing.B, ctx context.Context) (string, int) {
	b.Helper()
	var list v1alpha1.NodeProxyConfigList
	if err := k8s.List(ctx, &list, client.MatchingLabels{v1alpha1.LabelProducer: translate.Producer}); err != nil {
		b.Fatal(err)
	}
	name, size := "", 0
	for i := range list.Items {
		raw, err := json.Marshal(&list.Items[i])
		if err != nil {
			b.Fatal(err)
		}
		if len(raw) > size {
			name, size = list.Items[i].Name, len(raw)
		}
	}
	return name, size
}
