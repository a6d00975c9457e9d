package gateway

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/gatewayparams"
)

var update = flag.Bool("update", false, "rewrite testdata/*/output.yaml from the current output")

// goldenInput is testdata/<case>/input.yaml.
type goldenInput struct {
	// Secrets are the certificate Secrets that exist ("<ns>/<name>"), with why
	// one is unusable ("" for a valid key pair).
	Secrets    map[string]string            `json:"secrets,omitempty"`
	Namespaces map[string]map[string]string `json:"namespaces,omitempty"`
	Addresses  map[string][]string          `json:"addresses,omitempty"` // "<ns>/<gateway>"
	// GatewayClasses with their parameters (GatewayClassConfigs): a Gateway of
	// a class not listed has the defaults.
	GatewayClasses      []*gatewayv1.GatewayClass      `json:"gatewayClasses,omitempty"`
	GatewayClassConfigs []*v1alpha1.GatewayClassConfig `json:"gatewayClassConfigs,omitempty"`
	Services            []*corev1.Service              `json:"services,omitempty"`
	Gateways            []*gatewayv1.Gateway           `json:"gateways"`
	HTTPRoutes          []*gatewayv1.HTTPRoute         `json:"httpRoutes,omitempty"`
	GRPCRoutes          []*gatewayv1.GRPCRoute         `json:"grpcRoutes,omitempty"`
	TLSRoutes           []*gatewayv1.TLSRoute          `json:"tlsRoutes,omitempty"`
	Grants              []*gatewayv1.ReferenceGrant    `json:"referenceGrants,omitempty"`
}

type goldenConfig struct {
	Name    string                       `json:"name"`
	Source  string                       `json:"source"`
	Gateway string                       `json:"gateway"`
	Spec    v1alpha1.NodeProxyConfigSpec `json:"spec"`
}

type goldenOutput struct {
	// Classes says why a class's parameters are refused ("" when accepted).
	Classes  map[string]string         `json:"classes,omitempty"`
	Gateways map[string]*GatewayStatus `json:"gateways"`
	// Services are the Services the Gateways ask for ("<ns>/<gateway>").
	Services map[string]*corev1.Service `json:"services"`
	Routes   map[string][]ParentStatus  `json:"routes,omitempty"`
	Configs  []goldenConfig             `json:"configs"`
}

func splitKey(s string) types.NamespacedName {
	ns, name, _ := strings.Cut(s, "/")
	return types.NamespacedName{Namespace: ns, Name: name}
}

// goldenCase is a case's translation input and its classes' verdicts.
type goldenCase struct {
	Input
	classes map[string]string
}

func loadCase(t testing.TB, dir string) Input { return load(t, dir).Input }

func load(t testing.TB, dir string) goldenCase {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "input.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var g goldenInput
	if err := yaml.UnmarshalStrict(raw, &g); err != nil {
		t.Fatalf("%s: %v", dir, err)
	}
	in := Input{Gateways: g.Gateways, HTTPRoutes: g.HTTPRoutes, GRPCRoutes: g.GRPCRoutes, TLSRoutes: g.TLSRoutes, Grants: g.Grants,
		Services: map[types.NamespacedName]*corev1.Service{}, Secrets: map[types.NamespacedName]string{},
		Namespaces: g.Namespaces, Addresses: map[types.NamespacedName][]string{}, Classes: map[string]*gatewayparams.Parameters{}}
	for _, s := range g.Services {
		in.Services[types.NamespacedName{Namespace: s.Namespace, Name: s.Name}] = s
	}
	for k, v := range g.Secrets {
		in.Secrets[splitKey(k)] = v
	}
	for k, v := range g.Addresses {
		in.Addresses[splitKey(k)] = v
	}
	// Parameters are resolved as the controller does.
	configs := map[string]*v1alpha1.GatewayClassConfig{}
	for _, c := range g.GatewayClassConfigs {
		configs[c.Name] = c
	}
	var classes map[string]string
	for _, gc := range g.GatewayClasses {
		if classes == nil {
			classes = map[string]string{}
		}
		p, err := gatewayparams.Resolve(gc.Spec.ParametersRef, func(n string) *v1alpha1.GatewayClassConfig { return configs[n] })
		if err != nil {
			classes[gc.Name] = err.Error()
			continue
		}
		classes[gc.Name] = ""
		in.Classes[gc.Name] = p
	}
	return goldenCase{in, classes}
}

func marshalOutput(t testing.TB, c goldenCase, out Output) []byte {
	t.Helper()
	g := goldenOutput{Classes: c.classes, Gateways: map[string]*GatewayStatus{}, Routes: map[string][]ParentStatus{}, Services: map[string]*corev1.Service{}}
	for _, gw := range c.Gateways {
		g.Services[gw.Namespace+"/"+gw.Name] = GatewayService(gw, c.Classes[string(gw.Spec.GatewayClassName)])
	}
	for k, v := range out.Gateways {
		g.Gateways[k.String()] = v
	}
	for k, v := range out.Routes {
		g.Routes[k.String()] = v
	}
	for _, c := range out.Configs {
		g.Configs = append(g.Configs, goldenConfig{Name: c.Name, Source: c.Source.Kind + "/" + c.Source.Namespace + "/" + c.Source.Name,
			Gateway: c.Gateway.String(), Spec: c.Spec})
	}
	b, err := yaml.Marshal(g)
	if err != nil {
		t.Fatal(err)
	}
	return b
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
			c := load(t, dir)
			in := c.Input
			got := marshalOutput(t, c, Translate(in))
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
				t.Errorf("output differs from %s (run with -update after checking):\n%s", path, got)
			}
			// The same input translates to the same bytes, whatever its order.
			rev := in
			rev.Gateways, rev.HTTPRoutes = slices.Clone(in.Gateways), slices.Clone(in.HTTPRoutes)
			rev.GRPCRoutes, rev.TLSRoutes = slices.Clone(in.GRPCRoutes), slices.Clone(in.TLSRoutes)
			slices.Reverse(rev.Gateways)
			slices.Reverse(rev.HTTPRoutes)
			slices.Reverse(rev.GRPCRoutes)
			slices.Reverse(rev.TLSRoutes)
			if again := marshalOutput(t, goldenCase{rev, c.classes}, Translate(rev)); !bytes.Equal(again, got) {
				t.Error("output depends on the order of the inputs")
			}
		})
	}
}
