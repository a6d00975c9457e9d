// Package bundle makes Portico's OLM bundle (bundle/) from the Helm chart, so that the
// two install routes install the same thing: it renders the chart with the Helm SDK
// (internal/chart) and turns the controllers' Deployments, roles and webhooks into a
// ClusterServiceVersion. What a CSV cannot carry (DaemonSets, admission policies) goes
// to bundle/extras, applied after the operator is installed.
package bundle

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/portico-dev/portico/internal/chart"
	"github.com/portico-dev/portico/internal/testenv"
)

// Package is the OLM package name; Namespace the one the bundle is rendered for (the
// admission policies in extras name the ServiceAccounts with it).
const (
	Package   = "portico"
	Channel   = "alpha"
	Namespace = "portico-system"
)

// Dir is bundle/ in the repository.
func Dir() string { return filepath.Join(testenv.RepoRoot(), "bundle") }

// Generate writes the bundle into dir (manifests/, metadata/, extras/), replacing it.
func Generate(ctx context.Context, dir string) error {
	values, err := chart.AllShippedOn(nil)
	if err != nil {
		return err
	}
	// OLM issues the webhook certificates itself and mounts them where cert-manager's
	// would be: the chart's cert-manager mode is the one that matches.
	values["webhooks"] = map[string]any{"certManager": map[string]any{"enabled": true}}
	r, err := chart.Render(ctx, chart.Options{Release: Package, Namespace: Namespace, Values: values,
		APIVersions: []string{"cert-manager.io/v1"}})
	if err != nil {
		return err
	}
	csv, extras, others, err := build(r)
	if err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	for _, d := range []string{"manifests", "metadata", "extras"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	files := map[string][]byte{}
	if files["manifests/"+Package+".clusterserviceversion.yaml"], err = marshal(csv); err != nil {
		return err
	}
	for _, crd := range r.CRDs {
		if files["manifests/"+crd.GetName()+".yaml"], err = marshal(crd.Object); err != nil {
			return err
		}
	}
	for _, o := range others {
		if files["manifests/"+o.GetName()+"-"+lower(o.GetKind())+".yaml"], err = marshal(o.Object); err != nil {
			return err
		}
	}
	if files["extras/node-and-policies.yaml"], err = multiDoc(extras); err != nil {
		return err
	}
	files["metadata/annotations.yaml"] = []byte(annotations)
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

const annotations = `annotations:
  operators.operatorframework.io.bundle.mediatype.v1: registry+v1
  operators.operatorframework.io.bundle.manifests.v1: manifests/
  operators.operatorframework.io.bundle.metadata.v1: metadata/
  operators.operatorframework.io.bundle.package.v1: ` + Package + `
  operators.operatorframework.io.bundle.channels.v1: ` + Channel + `
  operators.operatorframework.io.bundle.channel.default.v1: ` + Channel + `
`

// samples are the portico.dev objects of config/samples: the CSV's alm-examples.
func samples() ([]map[string]any, error) {
	files, err := filepath.Glob(filepath.Join(testenv.RepoRoot(), "config", "samples", "*.yaml"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	var out []map[string]any
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		for _, doc := range bytes.Split(data, []byte("\n---")) {
			var o map[string]any
			if err := yaml.Unmarshal(doc, &o); err != nil {
				return nil, fmt.Errorf("%s: %w", f, err)
			}
			if av, _ := o["apiVersion"].(string); len(av) > len("portico.dev/") && av[:len("portico.dev/")] == "portico.dev/" {
				out = append(out, o)
			}
		}
	}
	return out, nil
}

func marshal(v any) ([]byte, error) {
	if u, ok := v.(runtime.Object); ok {
		var err error
		if v, err = runtime.DefaultUnstructuredConverter.ToUnstructured(u); err != nil {
			return nil, err
		}
	}
	js, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return yaml.JSONToYAML(js)
}

func multiDoc(objs []*unstructured.Unstructured) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("# Applied after the operator is installed: OLM bundles carry no DaemonSets and no\n# admission policies. Rendered for namespace " + Namespace + ".\n")
	for _, o := range objs {
		y, err := marshal(o.Object)
		if err != nil {
			return nil, err
		}
		b.WriteString("---\n")
		b.Write(y)
	}
	return b.Bytes(), nil
}

func lower(s string) string { return string(bytes.ToLower([]byte(s))) }
