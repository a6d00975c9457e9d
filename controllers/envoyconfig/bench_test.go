package envoyconfig_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-dev/portico/apis/v1alpha1"
)

// hundredResources is a config of 100 resources: 20 HTTP listeners on ports of
// their own (so the port check against every other config runs), 20 route tables
// splitting traffic between backend Services, and 60 EDS clusters.
func hundredResources(name string) *v1alpha1.EnvoyConfig {
	ec := &v1alpha1.EnvoyConfig{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}}
	for i := range 20 {
		l := string(listenerResource(30000+i, fmt.Sprintf(`"rds":{"route_config_name":"r%d"}`, i)).Raw)
		ec.Spec.Resources = append(ec.Spec.Resources, resource(strings.Replace(l, `"name":"l"`, fmt.Sprintf(`"name":"l%d"`, i), 1)))
		ec.Spec.Resources = append(ec.Spec.Resources, resource(fmt.Sprintf(`{"@type":%q,"name":"r%d","virtual_hosts":[{"name":"v","domains":["*"],"routes":[{"match":{"prefix":"/a"},"route":{"weighted_clusters":{"clusters":[{"name":"default/svc-%d:80","weight":90},{"name":"default/svc-%d:80","weight":10}]},"retry_policy":{"retry_on":"5xx","num_retries":3,"per_try_timeout":"1s"}}},{"match":{"prefix":"/"},"route":{"cluster":"default/svc-%d:80"}}]}]}`,
			resourcev3.RouteType, i, 3*i, 3*i+1, 3*i+2)))
	}
	for i := range 60 {
		ec.Spec.Resources = append(ec.Spec.Resources, resource(fmt.Sprintf(`{"@type":%q,"name":"default/svc-%d:80","connect_timeout":"5s","type":"EDS","outlier_detection":{"consecutive_local_origin_failure":2}}`, resourcev3.ClusterType, i)))
		ec.Spec.BackendServices = append(ec.Spec.BackendServices, v1alpha1.ConfigBackendService{
			BackendService: v1alpha1.BackendService{ServiceRef: v1alpha1.ServiceRef{Name: fmt.Sprintf("svc-%d", i)}}})
	}
	return ec
}

// BenchmarkWebhookLatency is the admission figure: a dry-run create of a config of
// 100 resources through the real apiserver, which calls the webhook (translation,
// validation, the port check against every config in the cluster) over HTTPS.
// Reported: the round trip's median and 99th percentile, in milliseconds (goal:
// p99 <= 50 ms), over max(b.N, 200) requests.
func BenchmarkWebhookLatency(b *testing.B) {
	ctx := context.Background()
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; i < max(b.N, 200); i++ {
		ec := hundredResources(fmt.Sprintf("latency-%d", i))
		start := time.Now()
		if err := k8s.Create(ctx, ec, client.DryRunAll); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
	b.ReportMetric(ms(lat[(len(lat)*99)/100]), "p99-ms")
	b.ReportMetric(0, "ns/op")
}

// TestHundredResourcesAccepted keeps the benchmark's config honest: it is valid, and
// bad input in it is refused (the webhook really ran).
func TestHundredResourcesAccepted(t *testing.T) {
	ctx := context.Background()
	if err := k8s.Create(ctx, hundredResources("hundred"), client.DryRunAll); err != nil {
		t.Fatal(err)
	}
	bad := hundredResources("hundred-bad")
	bad.Spec.BackendServices = bad.Spec.BackendServices[1:]
	if err := k8s.Create(ctx, bad, client.DryRunAll); err == nil {
		t.Fatal("a cluster asking EDS for a Service no entry gives was admitted")
	}
}
