package render

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/xdsres"
)

var update = flag.Bool("update", false, "rewrite testdata/*/output.yaml from the current output")

// goldenInput is testdata/<case>/input.yaml.
type goldenInput struct {
	ProxyPorts map[string]uint16 `json:"proxyPorts,omitempty"`
	// Secrets are the Kubernetes Secrets the agent has read, by "<namespace>/<name>":
	// "valid" (a certificate), "valid+ca" (and a CA bundle), "ca" (a CA bundle
	// only), or "notFound" / "invalid"; a listed Secret absent here is not read yet.
	Secrets          map[string]string           `json:"secrets,omitempty"`
	RedirectCapacity int                         `json:"redirectCapacity,omitempty"`
	Configs          []*v1alpha1.NodeProxyConfig `json:"configs"`
}

// secretStates stands in for nodeagent/secrets.FromKube: render never looks
// inside a certificate, so short fixed bytes keep the golden outputs readable.
func secretStates(t testing.TB, in map[string]string) map[string]SecretState {
	out := map[string]SecretState{}
	inline := func(s string) *corev3.DataSource {
		return &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: s}}
	}
	cert := func(ref string) *tlsv3.Secret {
		return &tlsv3.Secret{Name: ref, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
			CertificateChain: inline("cert of " + ref), PrivateKey: inline("key of " + ref)}}}
	}
	ca := func(name string) *tlsv3.Secret {
		return &tlsv3.Secret{Name: name, Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			TrustedCa: inline("ca of " + name)}}}
	}
	for ref, kind := range in {
		switch kind {
		case "valid":
			out[ref] = SecretState{Resources: []*tlsv3.Secret{cert(ref)}}
		case "valid+ca":
			out[ref] = SecretState{Resources: []*tlsv3.Secret{cert(ref), ca(ref + caSuffix)}}
		case "ca":
			out[ref] = SecretState{Resources: []*tlsv3.Secret{ca(ref)}}
		case "notFound":
			out[ref] = SecretState{Reason: "SecretNotFound", Message: "Secret " + ref + " not found"}
		case "invalid":
			out[ref] = SecretState{Reason: "InvalidSecret", Message: "Secret " + ref + ": tls.crt and tls.key are not a valid key pair"}
		default:
			t.Fatalf("secret %s: unknown state %q", ref, kind)
		}
	}
	return out
}

// goldenOutput is Output in a form that marshals the same every time: protos go
// through protojson and back into plain values, because protojson randomises its
// whitespace on purpose, and yaml sorts map keys.
type goldenOutput struct {
	Redirects             []string                  `json:"redirects,omitempty"`
	ListenersNeedingPorts []string                  `json:"listenersNeedingPorts,omitempty"`
	Listeners             []any                     `json:"listeners,omitempty"`
	Routes                []any                     `json:"routes,omitempty"`
	Clusters              []any                     `json:"clusters,omitempty"`
	Secrets               []any                     `json:"secrets,omitempty"`
	BackendServices       []v1alpha1.BackendService `json:"backendServices,omitempty"`
	SecretRefs            []string                  `json:"secretRefs,omitempty"`
	Announcements         []v1alpha1.Announcement   `json:"announcements,omitempty"`
	Applied               []Applied                 `json:"applied,omitempty"`
	Rejected              []v1alpha1.RejectedConfig `json:"rejected,omitempty"`
	FragmentsNotHere      int                       `json:"fragmentsNotHere,omitempty"`
}

func loadInput(t testing.TB, dir string) Input {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "input.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var in goldenInput
	if err := yaml.UnmarshalStrict(raw, &in); err != nil {
		t.Fatalf("%s: %v", dir, err)
	}
	return Input{Configs: in.Configs, ProxyPorts: in.ProxyPorts, Secrets: secretStates(t, in.Secrets), RedirectCapacity: in.RedirectCapacity}
}

func marshalOutput(t testing.TB, out Output) []byte {
	t.Helper()
	g := goldenOutput{
		ListenersNeedingPorts: out.ListenersNeedingPorts,
		BackendServices:       out.BackendServices,
		SecretRefs:            out.Secrets,
		Announcements:         out.Announcements,
		Applied:               out.Applied,
		Rejected:              out.Rejected,
		FragmentsNotHere:      out.FragmentsNotHere,
	}
	for k, port := range out.Redirects {
		g.Redirects = append(g.Redirects, fmt.Sprintf("%s -> %d", k, port))
	}
	slices.Sort(g.Redirects)
	g.Listeners = plain(t, out.Resources.Listeners)
	g.Routes = plain(t, out.Resources.Routes)
	g.Clusters = plain(t, out.Resources.Clusters)
	g.Secrets = plain(t, out.Resources.Secrets)
	b, err := yaml.Marshal(g)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func plain[T proto.Message](t testing.TB, msgs []T) []any {
	t.Helper()
	var out []any
	for _, m := range msgs {
		b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		var v any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	return out
}

func cases(t testing.TB) []string {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join("testdata", "*"))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no golden cases: %v", err)
	}
	return dirs
}

func TestGolden(t *testing.T) {
	for _, dir := range cases(t) {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			out := Render(loadInput(t, dir))
			// What render returns is served as it is: the Secrets too.
			if errs := xdsres.Validate(out.Resources); len(errs) > 0 {
				t.Errorf("rendered resources fail xdsres.Validate: %v", errs)
			}
			got := marshalOutput(t, out)
			path := filepath.Join(dir, "output.yaml")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("output differs from %s (run with -update after checking):\n%s", path, lineDiff(string(want), string(got)))
			}
		})
	}
}

// lineDiff shows the first differing line with some context, enough to see
// what changed without a diff library.
func lineDiff(want, got string) string {
	w, g := bytes.Split([]byte(want), []byte("\n")), bytes.Split([]byte(got), []byte("\n"))
	for i := 0; i < max(len(w), len(g)); i++ {
		var wl, gl []byte
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if !bytes.Equal(wl, gl) {
			return fmt.Sprintf("line %d:\n  want: %s\n  got:  %s", i+1, wl, gl)
		}
	}
	return "(only trailing differences)"
}

// TestDeterministic renders every golden input in shuffled orders, with the
// creation timestamps deciding conflicts; the bytes must not change.
func TestDeterministic(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, dir := range cases(t) {
		in := loadInput(t, dir)
		want := marshalOutput(t, Render(in))
		for range 20 {
			configs := slices.Clone(in.Configs)
			rng.Shuffle(len(configs), func(i, j int) { configs[i], configs[j] = configs[j], configs[i] })
			shuffled := in
			shuffled.Configs = configs
			got := marshalOutput(t, Render(shuffled))
			if !bytes.Equal(got, want) {
				t.Fatalf("%s: shuffled input renders differently:\n%s", dir, lineDiff(string(want), string(got)))
			}
		}
	}
}

// TestRenderDoesNotModifyInput matters because the agent renders straight from
// its informer cache, whose objects are shared.
func TestRenderDoesNotModifyInput(t *testing.T) {
	for _, dir := range cases(t) {
		in := loadInput(t, dir)
		before, err := json.Marshal(in.Configs)
		if err != nil {
			t.Fatal(err)
		}
		Render(in)
		after, _ := json.Marshal(in.Configs)
		if !bytes.Equal(before, after) {
			t.Errorf("%s: Render modified its input", dir)
		}
	}
}

const benchListener = `{"@type":"type.googleapis.com/envoy.config.listener.v3.Listener","name":"gw",
"filter_chains":[{"filters":[{"name":"envoy.filters.network.http_connection_manager","typed_config":{
"@type":"type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
"stat_prefix":"gw","rds":{"route_config_name":"gw-http","config_source":{"ads":{},"resource_api_version":"V3"}},
"http_filters":[{"name":"envoy.filters.http.router","typed_config":{"@type":"type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]}]}`

func resource(t testing.TB, raw string) v1alpha1.EnvoyResource {
	var r v1alpha1.EnvoyResource
	if err := json.Unmarshal([]byte(raw), &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// benchInput is a Gateway listener with n route configs attached, each bringing
// one cluster and one host with two routes: the shape of a busy shared ingress.
func benchInput(b testing.TB, n int) Input {
	created := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	configs := []*v1alpha1.NodeProxyConfig{{
		ObjectMeta: metav1.ObjectMeta{Name: "gateway-default-gw", CreationTimestamp: created},
		Spec: v1alpha1.NodeProxyConfigSpec{
			Redirects: []v1alpha1.Redirect{{Name: "http", VIP: "10.0.0.10", Port: 80, Listener: "gw"}},
			Envoy:     &v1alpha1.EnvoyResources{Resources: []v1alpha1.EnvoyResource{resource(b, benchListener)}},
		},
	}}
	for i := range n {
		cluster := fmt.Sprintf("default/svc-%d:80", i)
		route := func(prefix string) v1alpha1.FragmentRoute {
			r := v1alpha1.FragmentRoute{Precedence: fmt.Sprintf("%05d-%s", len(prefix), prefix)}
			r.Route.Raw = fmt.Appendf(nil, `{"match":{"prefix":%q},"route":{"cluster":%q}}`, prefix, cluster)
			return r
		}
		configs = append(configs, &v1alpha1.NodeProxyConfig{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("httproute-default-r%d", i), CreationTimestamp: created},
			Spec: v1alpha1.NodeProxyConfigSpec{
				Envoy: &v1alpha1.EnvoyResources{
					Resources: []v1alpha1.EnvoyResource{resource(b, fmt.Sprintf(
						`{"@type":"type.googleapis.com/envoy.config.cluster.v3.Cluster","name":%q,"type":"EDS",`+
							`"connect_timeout":"5s","eds_cluster_config":{"eds_config":{"ads":{},"resource_api_version":"V3"}}}`, cluster))},
					BackendServices: []v1alpha1.BackendService{{ServiceRef: v1alpha1.ServiceRef{Name: fmt.Sprintf("svc-%d", i), Namespace: "default"}, Ports: []string{"80"}}},
				},
				RouteFragments: []v1alpha1.RouteFragment{{
					RouteTable: "gw-http",
					Host:       fmt.Sprintf("h%d.example.com", i%100),
					Routes:     []v1alpha1.FragmentRoute{route(fmt.Sprintf("/r%d/api", i)), route(fmt.Sprintf("/r%d", i))},
				}},
			},
		})
	}
	return Input{Configs: configs, ProxyPorts: map[string]uint16{"gw": 15001}}
}

func TestBenchInputRenders(t *testing.T) {
	out := Render(benchInput(t, 50))
	if len(out.Rejected) > 0 || len(out.Applied) != 51 {
		t.Fatalf("applied %d, rejected %v", len(out.Applied), out.Rejected)
	}
}

func BenchmarkRender1000Configs(b *testing.B) {
	in := benchInput(b, 1000)
	b.ReportAllocs()
	for b.Loop() {
		out := Render(in)
		if len(out.Applied) != 1001 {
			b.Fatalf("applied %d", len(out.Applied))
		}
	}
}
