package ingress

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	"github.com/portico-dev/portico/apis/v1alpha1"
)

var update = flag.Bool("update", false, "rewrite testdata/*/output.yaml from the current output")

// goldenInput is testdata/<case>/input.yaml.
type goldenInput struct {
	Options            Options                 `json:"options"`
	SharedAddresses    []string                `json:"sharedAddresses,omitempty"`
	DedicatedAddresses map[string][]string     `json:"dedicatedAddresses,omitempty"` // "<ns>/<name>"
	Secrets            []string                `json:"secrets,omitempty"`            // "<ns>/<name>"
	DefaultCertificate string                  `json:"defaultCertificate,omitempty"` // "<ns>/<name>"
	Services           []*corev1.Service       `json:"services,omitempty"`
	Ingresses          []*networkingv1.Ingress `json:"ingresses"`
}

type goldenConfig struct {
	Name   string                       `json:"name"`
	Source string                       `json:"source,omitempty"`
	Spec   v1alpha1.NodeProxyConfigSpec `json:"spec"`
}

type goldenOutput struct {
	Configs  []goldenConfig       `json:"configs"`
	Modes    map[string]Mode      `json:"modes,omitempty"`
	Problems map[string][]Problem `json:"problems,omitempty"`
	Class    []Problem            `json:"classProblems,omitempty"`
}

func splitKey(s string) types.NamespacedName {
	ns, name, _ := strings.Cut(s, "/")
	return types.NamespacedName{Namespace: ns, Name: name}
}

func loadCase(t testing.TB, dir string) (Input, Options) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "input.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var g goldenInput
	if err := yaml.UnmarshalStrict(raw, &g); err != nil {
		t.Fatalf("%s: %v", dir, err)
	}
	in := Input{
		Ingresses:          g.Ingresses,
		Services:           map[types.NamespacedName]*corev1.Service{},
		Secrets:            map[types.NamespacedName]bool{},
		SharedAddresses:    g.SharedAddresses,
		DedicatedAddresses: map[types.NamespacedName][]string{},
	}
	for _, s := range g.Services {
		in.Services[types.NamespacedName{Namespace: s.Namespace, Name: s.Name}] = s
	}
	for _, s := range g.Secrets {
		in.Secrets[splitKey(s)] = true
	}
	for k, v := range g.DedicatedAddresses {
		in.DedicatedAddresses[splitKey(k)] = v
	}
	if g.DefaultCertificate != "" {
		dc := splitKey(g.DefaultCertificate)
		in.DefaultCertificate = &dc
	}
	return in, g.Options
}

func marshalOutput(t testing.TB, out Output) []byte {
	t.Helper()
	g := goldenOutput{Modes: map[string]Mode{}, Problems: map[string][]Problem{}, Class: out.ClassProblems}
	for _, c := range out.Configs {
		gc := goldenConfig{Name: c.Name, Spec: c.Spec}
		if c.Source != nil {
			gc.Source = c.Source.String()
		}
		g.Configs = append(g.Configs, gc)
	}
	for k, m := range out.Modes {
		g.Modes[k.String()] = m
	}
	for k, p := range out.Problems {
		g.Problems[k.String()] = p
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
			in, opts := loadCase(t, dir)
			got := marshalOutput(t, Translate(in, opts))
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
			rev.Ingresses = nil
			for i := len(in.Ingresses) - 1; i >= 0; i-- {
				rev.Ingresses = append(rev.Ingresses, in.Ingresses[i])
			}
			if again := marshalOutput(t, Translate(rev, opts)); !bytes.Equal(again, got) {
				t.Error("output depends on the order of the Ingresses")
			}
		})
	}
}
