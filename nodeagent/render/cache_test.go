package render

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strconv"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/portico-dev/portico/apis/v1alpha1"
)

const bigListener = `{"@type":"type.googleapis.com/envoy.config.listener.v3.Listener","name":"big-http",
"address":{"socket_address":{"address":"0.0.0.0","port_value":8080}},
"filter_chains":[{"filters":[{"name":"envoy.filters.network.http_connection_manager","typed_config":{
"@type":"type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
"stat_prefix":"big","rds":{"route_config_name":"big-routes","config_source":{"ads":{},"resource_api_version":"V3"}},
"http_filters":[{"name":"envoy.filters.http.router","typed_config":{"@type":"type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]}]}`

const bigCluster = `{"@type":"type.googleapis.com/envoy.config.cluster.v3.Cluster","name":"big-backend","type":"EDS",
"connect_timeout":"1s","eds_cluster_config":{"eds_config":{"ads":{},"resource_api_version":"V3"},"service_name":"default/big:80"}}`

// bigBackend gives the EDS name bigCluster asks for.
var bigBackend = v1alpha1.BackendService{ServiceRef: v1alpha1.ServiceRef{Namespace: "default", Name: "big"}, Ports: []string{"80"}}

// bigConfig is the agent benchmark's shape: one config with a listener, a cluster and
// n routes in one table, whose first route's prefix carries gen; rv is its resourceVersion.
func bigConfig(t testing.TB, n, gen int, rv string) *v1alpha1.NodeProxyConfig {
	routes := make([]v1alpha1.FragmentRoute, n)
	for i := range routes {
		prefix := fmt.Sprintf("/r%05d", i)
		if i == 0 {
			prefix = fmt.Sprintf("/changed-%d", gen)
		}
		routes[i].Precedence = fmt.Sprintf("%05d", i)
		routes[i].Route.Raw = fmt.Appendf(nil, `{"match":{"prefix":%q},"route":{"cluster":"big-backend"}}`, prefix)
	}
	return &v1alpha1.NodeProxyConfig{
		ObjectMeta: metav1.ObjectMeta{Name: "big", ResourceVersion: rv, Generation: int64(gen + 1),
			CreationTimestamp: metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))},
		Spec: v1alpha1.NodeProxyConfigSpec{
			Envoy: &v1alpha1.EnvoyResources{Resources: []v1alpha1.EnvoyResource{resource(t, bigListener), resource(t, bigCluster)},
				BackendServices: []v1alpha1.BackendService{bigBackend}},
			RouteFragments: []v1alpha1.RouteFragment{{RouteTable: "big-routes", Host: "*", Routes: routes}},
		},
	}
}

// BenchmarkRenderChangedConfig renders the agent benchmark's config after a change to
// one of its 1,000 routes: the render part of a config change reaching Envoy.
func BenchmarkRenderChangedConfig(b *testing.B) {
	r := NewRenderer()
	gen := 0
	b.ReportAllocs()
	for b.Loop() {
		gen++
		cfg := bigConfig(b, 1000, gen, strconv.Itoa(gen))
		cfg.UID = "u"
		out := r.Render(Input{Configs: []*v1alpha1.NodeProxyConfig{cfg}})
		if len(out.Applied) != 1 {
			b.Fatalf("rejected: %v", out.Rejected)
		}
	}
}

// withVersions gives every config the resourceVersion rv and a UID, as the apiserver
// would (golden inputs have neither, and a Renderer caches only what has both).
func withVersions(in Input, rv string) Input {
	out := in
	out.Configs = nil
	for _, c := range in.Configs {
		c = c.DeepCopy()
		c.ResourceVersion, c.UID = rv, types.UID("uid-"+c.Name)
		out.Configs = append(out.Configs, c)
	}
	return out
}

// TestRendererMatchesRender renders every golden input several times with one
// Renderer, so later renders are answered from its cache, in shuffled orders: the
// output must be Render's every time. A render that modified a cached parse (e.g.
// sorted a slice it shares) would show up on the second pass.
func TestRendererMatchesRender(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, dir := range cases(t) {
		in := withVersions(loadInput(t, dir), "7")
		want := marshalOutput(t, Render(in))
		r := NewRenderer()
		for pass := range 4 {
			configs := slices.Clone(in.Configs)
			rng.Shuffle(len(configs), func(i, j int) { configs[i], configs[j] = configs[j], configs[i] })
			shuffled := in
			shuffled.Configs = configs
			got := marshalOutput(t, r.Render(shuffled))
			if !bytes.Equal(got, want) {
				t.Fatalf("%s, pass %d: Renderer differs from Render:\n%s", dir, pass, lineDiff(string(want), string(got)))
			}
		}
	}
}

// TestRendererKeepsParsesIntact: merging backends sorts and deduplicates their ports;
// doing so in the cached parse's own slice would corrupt the next render's input.
func TestRendererKeepsParsesIntact(t *testing.T) {
	cfg := bigConfig(t, 2, 0, "1")
	cfg.UID = "u"
	cfg.Spec.Envoy.BackendServices = []v1alpha1.BackendService{
		{ServiceRef: v1alpha1.ServiceRef{Namespace: "default", Name: "a"}, Ports: []string{"http", "80", "http"}},
		{ServiceRef: v1alpha1.ServiceRef{Namespace: "default", Name: "b"}, Ports: []string{"http", "80"}},
		{ServiceRef: v1alpha1.ServiceRef{Namespace: "default", Name: "b"}, Ports: []string{"9090"}},
		bigBackend,
	}
	in := Input{Configs: []*v1alpha1.NodeProxyConfig{cfg}}
	r := NewRenderer()
	for pass := range 3 {
		got := r.Render(in).BackendServices
		if len(got) != 3 || !slices.Equal(got[0].Ports, []string{"80", "http"}) || !slices.Equal(got[1].Ports, []string{"80", "9090", "http"}) {
			t.Fatalf("pass %d: backend services %+v, want default/a with ports 80, http and default/b with 80, 9090, http", pass, got)
		}
	}
}

func firstPrefix(out Output, table string) string {
	for _, rc := range out.Resources.Routes {
		if rc.GetName() == table && len(rc.GetVirtualHosts()) > 0 && len(rc.GetVirtualHosts()[0].GetRoutes()) > 0 {
			return rc.GetVirtualHosts()[0].GetRoutes()[0].GetMatch().GetPrefix()
		}
	}
	return ""
}

// TestRendererSeesChanges: a config written again (new resourceVersion) is parsed again,
// whether the change is to a route, a fix of a rejected route, or a new mistake.
func TestRendererSeesChanges(t *testing.T) {
	r := NewRenderer()
	render := func(cfg *v1alpha1.NodeProxyConfig) Output {
		cfg.UID = "u"
		return r.Render(Input{Configs: []*v1alpha1.NodeProxyConfig{cfg}})
	}
	if out := render(bigConfig(t, 50, 1, "1")); firstPrefix(out, "big-routes") != "/changed-1" {
		t.Fatalf("first render serves %q", firstPrefix(out, "big-routes"))
	}
	if out := render(bigConfig(t, 50, 2, "2")); firstPrefix(out, "big-routes") != "/changed-2" {
		t.Fatalf("after a change the Renderer serves %q, want /changed-2", firstPrefix(out, "big-routes"))
	}

	broken := bigConfig(t, 50, 3, "3")
	broken.Spec.RouteFragments[0].Routes[7].Route.Raw = []byte(`{"match":{"prefx":"/"},"route":{"cluster":"big-backend"}}`)
	out := render(broken)
	if len(out.Rejected) != 1 || out.Rejected[0].Reason != v1alpha1.ReasonInvalidRoute || len(out.Applied) != 0 {
		t.Fatalf("a broken route is not rejected: applied %v, rejected %v", out.Applied, out.Rejected)
	}
	// Rendering the same version again must give the same verdict from the cache.
	if out := render(broken); len(out.Rejected) != 1 || len(out.Applied) != 0 {
		t.Fatalf("the cached rejection was lost: applied %v, rejected %v", out.Applied, out.Rejected)
	}
	out = render(bigConfig(t, 50, 4, "4"))
	if len(out.Rejected) != 0 || len(out.Applied) != 1 || out.Applied[0].ResourceVersion != "4" || firstPrefix(out, "big-routes") != "/changed-4" {
		t.Fatalf("the fixed config is not applied: applied %v, rejected %v", out.Applied, out.Rejected)
	}
}

// TestRendererFollowsPorts: the agent renders the same config version again once it
// has allocated its listener's proxy port; the listener must then be bound to it, and
// rebound when the port changes.
func TestRendererFollowsPorts(t *testing.T) {
	cfg := bigConfig(t, 3, 0, "1")
	cfg.UID = "u"
	cfg.Spec.Redirects = []v1alpha1.Redirect{{Name: "http", VIP: "10.0.0.9", Port: 80, Listener: "big-http"}}
	r := NewRenderer()
	out := r.Render(Input{Configs: []*v1alpha1.NodeProxyConfig{cfg}})
	if !slices.Equal(out.ListenersNeedingPorts, []string{"big-http"}) || len(out.Applied) != 0 {
		t.Fatalf("without a port: needing %v, applied %v", out.ListenersNeedingPorts, out.Applied)
	}
	for _, port := range []uint16{15001, 15002} {
		out = r.Render(Input{Configs: []*v1alpha1.NodeProxyConfig{cfg}, ProxyPorts: map[string]uint16{"big-http": port, "unrelated": 1}})
		if len(out.Applied) != 1 || len(out.Resources.Listeners) != 1 {
			t.Fatalf("port %d: applied %v, listeners %d", port, out.Applied, len(out.Resources.Listeners))
		}
		if got := out.Resources.Listeners[0].GetAddress().GetSocketAddress().GetPortValue(); got != uint32(port) {
			t.Fatalf("listener bound to port %d, want %d", got, port)
		}
		if got := out.Redirects[Key{Addr: netip.MustParseAddr("10.0.0.9"), Port: 80, Proto: ProtoTCP}]; got != port {
			t.Fatalf("redirect to port %d, want %d", got, port)
		}
	}
}

// TestRendererForgets: a config that is no longer selected leaves the cache, and one
// recreated under the same name (a new UID) is parsed afresh.
func TestRendererForgets(t *testing.T) {
	r := NewRenderer()
	a, b := bigConfig(t, 2, 1, "1"), bigConfig(t, 2, 2, "1")
	a.Name, a.UID, b.Name, b.UID = "a", "ua", "b", "ub"
	b.Spec.Envoy = nil
	b.Spec.RouteFragments[0].RouteTable = "b-routes"
	r.Render(Input{Configs: []*v1alpha1.NodeProxyConfig{a, b}})
	r.Render(Input{Configs: []*v1alpha1.NodeProxyConfig{a}})
	if _, ok := r.cache["b"]; ok || len(r.cache) != 1 {
		t.Fatalf("cache holds %d entries after b was dropped", len(r.cache))
	}
	recreated := bigConfig(t, 2, 9, "1") // same name and (impossibly) same version
	recreated.Name, recreated.UID = "a", "ua-2"
	if out := r.Render(Input{Configs: []*v1alpha1.NodeProxyConfig{recreated}}); firstPrefix(out, "big-routes") != "/changed-9" {
		t.Fatalf("recreated config served from the old one's cache: %q", firstPrefix(out, "big-routes"))
	}
}

// TestRouteCache: a route whose JSON did not change is the message decoded before
// (shared, so never modified), a changed one is decoded again, and a route that does
// not decode is an error every time.
func TestRouteCache(t *testing.T) {
	raw := func(prefix string) []byte {
		return fmt.Appendf(nil, `{"match":{"prefix":%q},"route":{"cluster":"c"}}`, prefix)
	}
	first := newRouteCache(nil)
	a1, err := first.decode(raw("/a"))
	if err != nil || a1.GetMatch().GetPrefix() != "/a" {
		t.Fatalf("decode: %v, %v", a1, err)
	}
	if again, _ := first.decode(raw("/a")); again != a1 {
		t.Fatal("the same JSON within one parse was decoded twice")
	}
	next := newRouteCache(first.cur)
	if a2, _ := next.decode(raw("/a")); a2 != a1 {
		t.Fatal("an unchanged route was decoded again")
	}
	if b, err := next.decode(raw("/b")); err != nil || b.GetMatch().GetPrefix() != "/b" {
		t.Fatalf("changed route: %v, %v", b, err)
	}
	for range 2 {
		if _, err := next.decode([]byte(`{"match":{"prefx":"/"}}`)); err == nil {
			t.Fatal("a route with an unknown field decoded")
		}
	}
	if len(next.cur) != 2 {
		t.Fatalf("the next parse keeps %d routes, want the 2 it used", len(next.cur))
	}
	var none *routeCache
	if r, err := none.decode(raw("/c")); err != nil || r.GetMatch().GetPrefix() != "/c" {
		t.Fatalf("nil cache: %v, %v", r, err)
	}
}

// BenchmarkRenderer1000ConfigsOneChanged is a busy shared ingress (1,000 route configs
// on one Gateway listener) in which one config changes per render: what the agent does
// on a typical change, with the unchanged configs answered from the cache.
func BenchmarkRenderer1000ConfigsOneChanged(b *testing.B) {
	in := withVersions(benchInput(b, 1000), "1")
	r := NewRenderer()
	r.Render(in)
	b.ReportAllocs()
	rv := 1
	for b.Loop() {
		rv++
		i := 1 + rv%1000
		c := in.Configs[i].DeepCopy()
		c.ResourceVersion = strconv.Itoa(rv)
		c.Spec.RouteFragments[0].Routes[0].Route.Raw = fmt.Appendf(nil, `{"match":{"prefix":"/v%d"},"route":{"cluster":"default/svc-%d:80"}}`, rv, i-1)
		in.Configs[i] = c
		if out := r.Render(in); len(out.Applied) != 1001 {
			b.Fatalf("applied %d, rejected %v", len(out.Applied), out.Rejected)
		}
	}
}

// TestParseUsesRouteCache: a parse given a route cache decodes through it, reusing
// the message a previous parse decoded from the same JSON; a parse without one (Render)
// decodes afresh.
func TestParseUsesRouteCache(t *testing.T) {
	raw := []byte(`{"match":{"prefix":"/x"},"route":{"cluster":"c"}}`)
	cfg := &v1alpha1.NodeProxyConfig{Spec: v1alpha1.NodeProxyConfigSpec{RouteFragments: []v1alpha1.RouteFragment{{
		RouteTable: "t", Host: "*", Routes: []v1alpha1.FragmentRoute{{Precedence: "1", Route: apiextensionsv1.JSON{Raw: raw}}},
	}}}}
	cfg.Name = "c"
	warm := newRouteCache(nil)
	known, _ := warm.decode(raw)
	p, rej := parse(cfg, nil, newRouteCache(warm.cur))
	if rej != nil || p.fragments[0].routes[0].route != known {
		t.Fatalf("the parse's cache was not used: %v, %v", p, rej)
	}
	p, rej = parse(cfg, nil, nil)
	if got := p.fragments[0].routes[0].route; rej != nil || got == known || got.GetMatch().GetPrefix() != "/x" {
		t.Fatalf("a parse without a cache: %v, %v", got, rej)
	}
}

// TestParseReadsOnlySpecNameLabels guards the Renderer's cache key (UID, generation,
// labels): a config whose other metadata and status differ must render the same, up
// to the generation and resourceVersion it reports. If parse starts reading more of
// the object, this fails and the key must grow.
func TestParseReadsOnlySpecNameLabels(t *testing.T) {
	blank := func(out Output) Output {
		for i := range out.Applied {
			out.Applied[i].Generation, out.Applied[i].ResourceVersion = 0, ""
		}
		for i := range out.Rejected {
			out.Rejected[i].Generation = 0
		}
		return out
	}
	for _, dir := range cases(t) {
		in := loadInput(t, dir)
		want := marshalOutput(t, blank(Render(in)))
		other := in
		other.Configs = nil
		for _, c := range in.Configs {
			c = c.DeepCopy()
			c.UID, c.ResourceVersion, c.Generation = "other-uid", "99", c.Generation+7
			c.Annotations = map[string]string{"a": "b"}
			c.Finalizers = []string{"example.com/f"}
			c.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "ConfigMap", Name: "x", UID: "y"}}
			c.Status.ObservedGeneration = 42
			other.Configs = append(other.Configs, c)
		}
		if got := marshalOutput(t, blank(Render(other))); !bytes.Equal(got, want) {
			t.Fatalf("%s: metadata outside spec, name and labels changes the render:\n%s", dir, lineDiff(string(want), string(got)))
		}
	}
}
