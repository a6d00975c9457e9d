package envoyconfig

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/scheme"
)

var update = flag.Bool("update", false, "rewrite testdata/*/output.yaml from the current output")

// goldenCase is testdata/<case>/input.yaml: Kubernetes objects (Services, EnvoyConfigs,
// ClusterEnvoyConfigs) as a user applies them, so Cilium's published examples are
// inputs with only apiVersion and kind changed.
type goldenCase struct {
	services map[types.NamespacedName]*corev1.Service
	configs  []Object
}

type goldenConfig struct {
	Name     string                        `json:"name"`
	Errors   []string                      `json:"errors,omitempty"`
	Warnings []string                      `json:"warnings,omitempty"`
	Ports    []string                      `json:"ports,omitempty"`
	Spec     *v1alpha1.NodeProxyConfigSpec `json:"spec,omitempty"`
}

func loadCase(t testing.TB, dir string) goldenCase {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "input.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	decoder := serializer.NewCodecFactory(scheme.New(), serializer.EnableStrict).UniversalDeserializer()
	g := goldenCase{services: map[types.NamespacedName]*corev1.Service{}}
	reader := utilyaml.NewYAMLReader(bufioReader(raw))
	for {
		doc, err := reader.Read()
		if err != nil {
			break
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		obj, _, err := decoder.Decode(doc, nil, nil)
		if err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		switch o := obj.(type) {
		case *corev1.Service:
			if o.Namespace == "" {
				o.Namespace = "default"
			}
			g.services[client.ObjectKeyFromObject(o)] = o
		default:
			c, ok := Of(obj.(client.Object))
			if !ok {
				t.Fatalf("%s: unexpected %T", dir, obj)
			}
			if c.Kind == KindEnvoyConfig && c.Meta.GetNamespace() == "" {
				c.Meta.SetNamespace("default") // kubectl apply's default namespace
			}
			g.configs = append(g.configs, c)
		}
	}
	return g
}

func (g goldenCase) translate() []Output {
	var out []Output
	for _, c := range g.configs {
		out = append(out, Translate(c.Input(func(k types.NamespacedName) *corev1.Service { return g.services[k] })))
	}
	return out
}

func marshalOutputs(t testing.TB, outs []Output) []byte {
	t.Helper()
	var gs []goldenConfig
	for _, o := range outs {
		gc := goldenConfig{Name: o.Name, Warnings: o.Warnings}
		for _, e := range o.Errors {
			gc.Errors = append(gc.Errors, e.Error())
		}
		for _, p := range o.Ports {
			gc.Ports = append(gc.Ports, p.Listener+" "+p.String())
		}
		if len(o.Errors) == 0 {
			spec := o.Spec
			gc.Spec = &spec
		}
		gs = append(gs, gc)
	}
	b, err := yaml.Marshal(gs)
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
			g := loadCase(t, dir)
			got := marshalOutputs(t, g.translate())
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
			// Translating twice gives the same bytes (the golden files and the
			// writer's "unchanged" check depend on it).
			if again := marshalOutputs(t, g.translate()); !bytes.Equal(again, got) {
				t.Error("a second translation differs from the first")
			}
		})
	}
}
