// Package chart renders Portico's Helm chart (charts/portico) with the Helm SDK, as
// `helm template` would, for the tests that check what it installs and for the OLM
// bundle generator, which must describe exactly what the chart installs.
package chart

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/releaseutil"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/portico-dev/portico/internal/testenv"
)

// KubeVersion is the Kubernetes version renders assume: the one the tests run against.
const KubeVersion = "v1.37.2"

// Dir is the chart's directory in the repository.
func Dir() string { return filepath.Join(testenv.RepoRoot(), "charts", "portico") }

// Options of one render.
type Options struct {
	// Release and Namespace default to "portico" and "portico-system".
	Release, Namespace string
	// Values override values.yaml (nested maps, as with --set).
	Values map[string]any
	// APIVersions the target cluster serves besides the built-in ones
	// (e.g. "cert-manager.io/v1").
	APIVersions []string
}

// Rendered is what a render produced.
type Rendered struct {
	// Objects are the templates' objects followed by the CRDs, in the order Helm
	// would install them (CRDs first).
	Objects []*unstructured.Unstructured
	CRDs    []*unstructured.Unstructured
	Notes   string
}

// Render renders the chart. Its errors are Helm's: a value refused by
// values.schema.json, or a template's fail() message.
func Render(ctx context.Context, o Options) (*Rendered, error) {
	if o.Release == "" {
		o.Release = "portico"
	}
	if o.Namespace == "" {
		o.Namespace = "portico-system"
	}
	ch, err := loader.Load(Dir())
	if err != nil {
		return nil, err
	}
	kv, err := chartutil.ParseKubeVersion(KubeVersion)
	if err != nil {
		return nil, err
	}
	install := action.NewInstall(&action.Configuration{Log: func(string, ...any) {}})
	install.DryRun, install.ClientOnly, install.Replace = true, true, true
	install.ReleaseName, install.Namespace = o.Release, o.Namespace
	install.KubeVersion, install.APIVersions = kv, o.APIVersions
	install.IncludeCRDs = false
	rel, err := install.RunWithContext(ctx, ch, copyValues(o.Values))
	if err != nil {
		return nil, err
	}
	out := &Rendered{Notes: rel.Info.Notes}
	for _, m := range releaseutil.SplitManifests(rel.Manifest) {
		objs, err := decode(m)
		if err != nil {
			return nil, err
		}
		out.Objects = append(out.Objects, objs...)
	}
	for _, crd := range ch.CRDObjects() {
		objs, err := decode(string(crd.File.Data))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", crd.Filename, err)
		}
		out.CRDs = append(out.CRDs, objs...)
	}
	sortObjects(out.Objects)
	return out, nil
}

// copyValues deep-copies v: Helm merges into the map it is given.
func copyValues(v map[string]any) map[string]any {
	out := map[string]any{}
	for k, x := range v {
		if m, ok := x.(map[string]any); ok {
			out[k] = copyValues(m)
		} else {
			out[k] = x
		}
	}
	return out
}

var sourceComment = regexp.MustCompile(`(?m)^# Source: .*$`)

func decode(doc string) ([]*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	d := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(sourceComment.ReplaceAllString(doc, "")), 4096)
	for {
		u := &unstructured.Unstructured{}
		if err := d.Decode(&u.Object); err != nil {
			if err == io.EOF {
				return out, nil
			}
			return nil, fmt.Errorf("decoding rendered manifest: %w\n%s", err, doc)
		}
		if len(u.Object) > 0 {
			out = append(out, u)
		}
	}
}

// installOrder is Helm's own kind order (releaseutil.InstallOrder), so that objects
// are created before those that refer to them; within a kind, objects are sorted by
// namespace and name (Helm's order there depends on map iteration), so that what is
// generated from a render is the same every time.
var installOrder = func() map[string]int {
	m := map[string]int{}
	for i, k := range releaseutil.InstallOrder {
		m[k] = i
	}
	return m
}()

func sortObjects(objs []*unstructured.Unstructured) {
	rank := func(u *unstructured.Unstructured) int {
		if r, ok := installOrder[u.GetKind()]; ok {
			return r
		}
		return len(installOrder)
	}
	sort.SliceStable(objs, func(i, j int) bool {
		a, b := objs[i], objs[j]
		if ra, rb := rank(a), rank(b); ra != rb {
			return ra < rb
		}
		if a.GetKind() != b.GetKind() {
			return a.GetKind() < b.GetKind()
		}
		if a.GetNamespace() != b.GetNamespace() {
			return a.GetNamespace() < b.GetNamespace()
		}
		return a.GetName() < b.GetName()
	})
}

// Find returns the rendered object of that kind and name, or nil.
func (r *Rendered) Find(kind, name string) *unstructured.Unstructured {
	for _, o := range r.Objects {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	return nil
}

// OfKind returns the rendered objects of a kind.
func (r *Rendered) OfKind(kind string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range r.Objects {
		if o.GetKind() == kind {
			out = append(out, o)
		}
	}
	return out
}

// YAML is the rendered objects as one multi-document stream.
func (r *Rendered) YAML() ([]byte, error) {
	var b bytes.Buffer
	for _, o := range r.Objects {
		js, err := o.MarshalJSON()
		if err != nil {
			return nil, err
		}
		b.WriteString("---\n")
		b.Write(js)
		b.WriteString("\n")
	}
	return b.Bytes(), nil
}
