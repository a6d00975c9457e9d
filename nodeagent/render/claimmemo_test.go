package render

import (
	"bytes"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/portico-dev/portico/apis/v1alpha1"
)

// TestClaimMemoSeesEveryClaim: the last render's conflicts are reused only
// while every config claims what it claimed then. A config that keeps its
// resources but moves its redirect onto an older config's VIP, or its route
// fragments onto a table an older config defines, must lose as Render says.
// (The random sequences of TestRendererEqualsRenderAfterChanges do not make
// these two moves alone.)
func TestClaimMemoSeesEveryClaim(t *testing.T) {
	in := loadInput(t, "testdata/conflict-vip")
	newer, older := in.Configs[0], in.Configs[1]
	// The older config serves HTTP from its own route table.
	older.Spec.Envoy.Resources[0] = resource(t, `{"@type":"type.googleapis.com/envoy.config.listener.v3.Listener","name":"old",
		"address":{"socket_address":{"address":"0.0.0.0","port_value":80}},"filter_chains":[{"filters":[{
		"name":"envoy.filters.network.http_connection_manager","typed_config":{
		"@type":"type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
		"stat_prefix":"old","rds":{"route_config_name":"old-table","config_source":{"ads":{},"resource_api_version":"V3"}},
		"http_filters":[{"name":"envoy.filters.http.router","typed_config":{"@type":"type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]}]}`)
	older.Spec.Envoy.Resources = append(older.Spec.Envoy.Resources, resource(t, `{"@type":"type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
		"name":"old-table","virtual_hosts":[{"name":"all","domains":["*"],"routes":[{"match":{"prefix":"/"},"route":{"cluster":"default/old:80"}}]}]}`))
	newer.Spec.RouteFragments = []v1alpha1.RouteFragment{{RouteTable: "new-table", Host: "*", Routes: []v1alpha1.FragmentRoute{{
		Precedence: "1", Route: apiextensionsv1.JSON{Raw: []byte(`{"match":{"prefix":"/"},"route":{"cluster":"default/new:80"}}`)}}}}}
	newer.Spec.Redirects[0].VIP = "10.0.0.31"
	for _, c := range in.Configs {
		c.ResourceVersion, c.UID = "1", types.UID("uid-"+c.Name)
	}
	r := NewRenderer()
	rv := 1
	check := func(step string, wantRejected bool) {
		t.Helper()
		got, want := r.Render(in), Render(in)
		if !bytes.Equal(marshalOutput(t, got), marshalOutput(t, want)) {
			t.Fatalf("%s: Renderer differs from Render:\n%s", step, lineDiff(string(marshalOutput(t, want)), string(marshalOutput(t, got))))
		}
		if rejected := len(want.Rejected) > 0; rejected != wantRejected {
			t.Fatalf("%s: rejected %v, want a rejection: %v", step, want.Rejected, wantRejected)
		}
	}
	change := func(f func(*v1alpha1.NodeProxyConfig)) {
		c := in.Configs[0].DeepCopy()
		f(c)
		rv++
		c.Generation++
		c.ResourceVersion = strconv.Itoa(rv)
		in.Configs[0] = c
	}
	check("apart", false)
	routeChanged := func(c *v1alpha1.NodeProxyConfig) {
		c.Spec.RouteFragments[0].Routes[0].Route.Raw = []byte(`{"match":{"prefix":"/` + strconv.Itoa(rv) + `"},"route":{"cluster":"default/new:80"}}`)
	}
	change(routeChanged) // the same claims: the memo answers
	check("a route changed", false)
	change(func(c *v1alpha1.NodeProxyConfig) { c.Spec.Redirects[0].VIP = "::ffff:10.0.0.30" })
	check("redirect onto the older config's VIP", true)
	change(func(c *v1alpha1.NodeProxyConfig) { c.Spec.Redirects[0].VIP = "10.0.0.31" })
	check("apart again", false)
	change(routeChanged)
	check("a route changed again", false)
	change(func(c *v1alpha1.NodeProxyConfig) { c.Spec.RouteFragments[0].RouteTable = "old-table" })
	check("fragments onto the older config's table", true)
	if r.memo.hits.claims == 0 {
		t.Fatal("the claim memo was never used: the test proves nothing")
	}
}

// TestClaimMemoSeesFilterChains: a contribution that keeps its chain's name
// but takes another contributor's server name loses as Render says.
func TestClaimMemoSeesFilterChains(t *testing.T) {
	in := loadInput(t, "testdata/filter-chain-fragments")
	at := slices.IndexFunc(in.Configs, func(c *v1alpha1.NodeProxyConfig) bool { return c.Name == "takes-a-host" })
	for _, c := range in.Configs {
		c.ResourceVersion, c.UID = "1", types.UID("uid-"+c.Name)
	}
	r := NewRenderer()
	rv := 1
	serverNames := func(names, prefix string) {
		c := in.Configs[at].DeepCopy()
		raw := &c.Spec.FilterChainFragments[0].FilterChains[0].Raw
		var chain map[string]any
		if err := json.Unmarshal(*raw, &chain); err != nil {
			t.Fatal(err)
		}
		chain["filter_chain_match"] = map[string]any{"server_names": strings.Split(names, ",")}
		chain["filters"].([]any)[0].(map[string]any)["typed_config"].(map[string]any)["stat_prefix"] = prefix
		*raw, _ = json.Marshal(chain)
		rv++
		c.Generation++
		c.ResourceVersion = strconv.Itoa(rv)
		in.Configs[at] = c
	}
	rejected := func(step string, want bool) {
		t.Helper()
		got, all := r.Render(in), Render(in)
		if !bytes.Equal(marshalOutput(t, got), marshalOutput(t, all)) {
			t.Fatalf("%s: Renderer differs from Render:\n%s", step, lineDiff(string(marshalOutput(t, all)), string(marshalOutput(t, got))))
		}
		if is := slices.ContainsFunc(all.Rejected, func(r v1alpha1.RejectedConfig) bool { return r.Name == "takes-a-host" }); is != want {
			t.Fatalf("%s: takes-a-host rejected %v, want %v (%v)", step, is, want, all.Rejected)
		}
	}
	serverNames("x.example.com", "https")
	rejected("its own host", false)
	serverNames("x.example.com", "changed") // the same claims: the memo answers
	rejected("its chain changed", false)
	serverNames("x.example.com,b2.example.com", "changed")
	rejected("another config's host", true)
	if r.memo.hits.claims == 0 {
		t.Fatal("the claim memo was never used: the test proves nothing")
	}
}

// TestBackendMemoSeesEveryService: the Services of the last render are reused
// only while every applied config asks for the same ones.
func TestBackendMemoSeesEveryService(t *testing.T) {
	in := loadInput(t, "testdata/conflict-vip")
	for _, c := range in.Configs {
		c.ResourceVersion, c.UID = "1", types.UID("uid-"+c.Name)
	}
	r := NewRenderer()
	rv := 1
	// z-older, the config applied, also asks for a Service its cluster does
	// not use, which is what the steps change.
	in.Configs[1].Spec.Envoy.BackendServices = append(in.Configs[1].Spec.Envoy.BackendServices,
		v1alpha1.BackendService{ServiceRef: v1alpha1.ServiceRef{Namespace: "default", Name: "extra"}, Ports: []string{"80"}})
	step := func(what string, f func(*v1alpha1.BackendService)) {
		t.Helper()
		c := in.Configs[1].DeepCopy()
		f(&c.Spec.Envoy.BackendServices[1])
		rv++
		c.Generation++
		c.ResourceVersion = strconv.Itoa(rv)
		in.Configs[1] = c
		got, want := r.Render(in), Render(in)
		if !bytes.Equal(marshalOutput(t, got), marshalOutput(t, want)) {
			t.Fatalf("%s: Renderer differs from Render:\n%s", what, lineDiff(string(marshalOutput(t, want)), string(marshalOutput(t, got))))
		}
		if len(want.Applied) != 1 || len(want.BackendServices) != 2 {
			t.Fatalf("%s: applied %v, Services %v: the step should keep z-older applied", what, want.Applied, want.BackendServices)
		}
	}
	r.Render(in)
	step("nothing asked differently", func(*v1alpha1.BackendService) {})
	step("another port", func(b *v1alpha1.BackendService) { b.Ports = []string{"8080"} })
	step("another Service", func(b *v1alpha1.BackendService) { b.Name = "other" })
	step("another namespace", func(b *v1alpha1.BackendService) { b.Namespace = "elsewhere" })
	if r.memo.hits.backends == 0 {
		t.Fatal("the memo of Services was never used: the test proves nothing")
	}
}
