package envoyconfig

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/portico-dev/portico/apis/v1alpha1"
)

// BenchmarkTranslate100 translates a config of 100 resources (20 HTTP listeners, 20
// route tables, 60 EDS clusters): the work the webhook and the controller do per config.
func BenchmarkTranslate100(b *testing.B) {
	spec := &v1alpha1.EnvoyConfigSpec{}
	add := func(raw string) {
		var r v1alpha1.EnvoyResource
		if err := r.UnmarshalJSON([]byte(raw)); err != nil {
			b.Fatal(err)
		}
		spec.Resources = append(spec.Resources, r)
	}
	for i := range 20 {
		add(fmt.Sprintf(`{"@type":"type.googleapis.com/envoy.config.listener.v3.Listener","name":"l%d","address":{"socket_address":{"address":"0.0.0.0","port_value":%d}},"filter_chains":[{"filters":[{"name":"hcm","typed_config":{"@type":"type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager","stat_prefix":"h","rds":{"route_config_name":"r%d"},"http_filters":[{"name":"envoy.filters.http.router","typed_config":{"@type":"type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]}]}`, i, 30000+i, i))
		add(fmt.Sprintf(`{"@type":"type.googleapis.com/envoy.config.route.v3.RouteConfiguration","name":"r%d","virtual_hosts":[{"name":"v","domains":["*"],"routes":[{"match":{"prefix":"/a"},"route":{"weighted_clusters":{"clusters":[{"name":"default/svc-%d:80","weight":90},{"name":"default/svc-%d:80","weight":10}]},"retry_policy":{"retry_on":"5xx","num_retries":3,"per_try_timeout":"1s"}}},{"match":{"prefix":"/"},"route":{"cluster":"default/svc-%d:80"}}]}]}`, i, 3*i, 3*i+1, 3*i+2))
	}
	for i := range 60 {
		add(fmt.Sprintf(`{"@type":"type.googleapis.com/envoy.config.cluster.v3.Cluster","name":"default/svc-%d:80","connect_timeout":"5s","type":"EDS","outlier_detection":{"consecutive_local_origin_failure":2}}`, i))
		spec.BackendServices = append(spec.BackendServices, v1alpha1.ConfigBackendService{
			BackendService: v1alpha1.BackendService{ServiceRef: v1alpha1.ServiceRef{Name: fmt.Sprintf("svc-%d", i)}}})
	}
	in := Input{Kind: KindEnvoyConfig, Namespace: "default", Name: "hundred", Spec: spec, Services: map[types.NamespacedName]*corev1.Service{}}
	if out := Translate(in); len(out.Errors) > 0 {
		b.Fatal(out.Errors)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		Translate(in)
	}
}
