package render

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/portico-dev/portico/apis/v1alpha1"
)

// gatewaysInput is issue 12's shape on one node: gateways Gateway listeners, each with
// its own route table, and routes HTTPRoute configs spread over them, each with four
// routes and a cluster that every fourth route of the same gateway shares (an
// identical definition, as when routes point at the same Service).
func gatewaysInput(b testing.TB, gateways, routes int) Input {
	created := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	in := Input{ProxyPorts: map[string]uint16{}}
	for g := range gateways {
		name := fmt.Sprintf("gw%d", g)
		listener := strings.NewReplacer(`"name":"gw"`, `"name":"`+name+`"`, `"stat_prefix":"gw"`, `"stat_prefix":"`+name+`"`,
			`"route_config_name":"gw-http"`, `"route_config_name":"`+name+`-http"`).Replace(benchListener)
		in.Configs = append(in.Configs, &v1alpha1.NodeProxyConfig{
			ObjectMeta: metav1.ObjectMeta{Name: "gateway-" + name, CreationTimestamp: created},
			Spec: v1alpha1.NodeProxyConfigSpec{
				Redirects:      []v1alpha1.Redirect{{Name: "http", VIP: fmt.Sprintf("10.0.%d.%d", g/200, 1+g%200), Port: 80, Listener: name}},
				Envoy:          &v1alpha1.EnvoyResources{Resources: []v1alpha1.EnvoyResource{resource(b, listener)}},
				RouteFragments: []v1alpha1.RouteFragment{{RouteTable: name + "-http", Host: "*"}},
			},
		})
		in.ProxyPorts[name] = uint16(15000 + g)
	}
	for i := range routes {
		g := i % gateways
		svc := fmt.Sprintf("svc-%d-%d", g, (i/gateways)%4)
		cluster := "default/" + svc + ":80"
		var frs []v1alpha1.FragmentRoute
		for k, prefix := range []string{"/api", "/static", "/v2", ""} {
			fr := v1alpha1.FragmentRoute{Precedence: fmt.Sprintf("%d-%05d", k, i)}
			fr.Route.Raw = fmt.Appendf(nil, `{"match":{"prefix":"/r%d%s"},"route":{"cluster":%q,"timeout":"15s"}}`, i, prefix, cluster)
			frs = append(frs, fr)
		}
		in.Configs = append(in.Configs, &v1alpha1.NodeProxyConfig{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("httproute-r%d", i), CreationTimestamp: created},
			Spec: v1alpha1.NodeProxyConfigSpec{
				Envoy: &v1alpha1.EnvoyResources{
					Resources: []v1alpha1.EnvoyResource{resource(b, fmt.Sprintf(
						`{"@type":"type.googleapis.com/envoy.config.cluster.v3.Cluster","name":%q,"type":"EDS",`+
							`"connect_timeout":"5s","eds_cluster_config":{"eds_config":{"ads":{},"resource_api_version":"V3"}}}`, cluster))},
					BackendServices: []v1alpha1.BackendService{{ServiceRef: v1alpha1.ServiceRef{Name: svc, Namespace: "default"}, Ports: []string{"80"}}},
				},
				RouteFragments: []v1alpha1.RouteFragment{{RouteTable: fmt.Sprintf("gw%d-http", g), Host: fmt.Sprintf("h%d.example.com", i%7), Routes: frs}},
			},
		})
	}
	for _, c := range in.Configs {
		c.ResourceVersion, c.UID = "1", types.UID("uid-"+c.Name)
	}
	return in
}

// BenchmarkRenderOneChanged compares like with like: the same input (100 Gateways,
// 5,000 HTTPRoute configs of 4 routes on one node, one route changed per render)
// rendered from scratch (full: Render, which the Renderer must equal) and by a
// Renderer that has seen the previous input (incremental), and by the delta render
// the agent uses for a route config's edit (delta). The incremental run fails
// if its memo did not answer every unchanged route table and most validation.
//
//	go test ./nodeagent/render/ -run '^$' -bench RenderOneChanged -benchtime 20x
func BenchmarkRenderOneChanged(b *testing.B) {
	const gateways, routes = 100, 5000
	rv := 1
	for _, mode := range []string{"full", "incremental", "delta"} {
		b.Run(mode, func(b *testing.B) {
			in := gatewaysInput(b, gateways, routes)
			r := NewRenderer()
			render := Render
			switch mode {
			case "incremental":
				render = r.Render
				render(in)
			case "delta":
				// The agent's path for a route config's spec edit: RenderChanged
				// with the one config, which must not refuse it.
				r.Render(in)
				render = func(in Input) Output {
					out, ok := r.RenderChanged([]*v1alpha1.NodeProxyConfig{in.Configs[gateways+(rv*7919)%routes]})
					if !ok {
						b.Fatal("the delta render refused a route's edit")
					}
					return out
				}
			}
			b.ReportAllocs()
			for b.Loop() {
				rv++
				i := gateways + (rv*7919)%routes
				c := in.Configs[i].DeepCopy()
				c.ResourceVersion = strconv.Itoa(rv)
				c.Spec.RouteFragments[0].Routes[1].Route.Raw = fmt.Appendf(nil, `{"match":{"prefix":"/changed-%d"},"route":{"cluster":"default/svc-0-0:80"}}`, rv)
				in.Configs[i] = c
				tables, deep, order, claims, backends := r.memo.hits.tables, r.memo.deep.Hits(), r.memo.hits.order, r.memo.hits.claims, r.memo.hits.backends
				out := render(in)
				if len(out.Applied) != gateways+routes || len(out.Resources.Routes) != gateways {
					b.Fatalf("applied %d, %d tables, rejected %v", len(out.Applied), len(out.Resources.Routes), out.Rejected)
				}
				if mode == "incremental" {
					if r.memo.hits.order == order {
						b.Fatal("the configs were sorted again, not kept in the last render's order")
					}
					if r.memo.hits.claims == claims {
						b.Fatal("conflicts were settled again, not taken from the last render")
					}
					if r.memo.hits.backends == backends {
						b.Fatal("the Services the configs ask for were merged again, not taken from the last render")
					}
					if got := r.memo.hits.tables - tables; got < gateways-1 {
						b.Fatalf("the memo answered %d of the %d unchanged route tables", got, gateways-1)
					}
					if got := r.memo.deep.Hits() - deep; got < len(out.Resources.Listeners)+len(out.Resources.Clusters) {
						b.Fatalf("the memo answered %d deep checks, fewer than the unchanged listeners and clusters", got)
					}
				}
			}
		})
	}
}
