package chart_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"

	"github.com/portico-dev/portico/internal/chart"
	"github.com/portico-dev/portico/internal/testenv"
)

type controllerDef = chart.Controller

func chartValues(t *testing.T) chartutil.Values {
	t.Helper()
	v, err := chart.Values()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func controllerDefs(t *testing.T) []controllerDef {
	t.Helper()
	cs, err := chart.Controllers()
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func shipped(component string) bool {
	_, err := os.Stat(filepath.Join(chart.Dir(), "files", "rbac", component+".yaml"))
	return err == nil
}

func render(t *testing.T, values map[string]any, apiVersions ...string) *chart.Rendered {
	t.Helper()
	r, err := chart.Render(context.Background(), chart.Options{Values: values, APIVersions: apiVersions})
	if err != nil {
		t.Fatalf("render with %v: %v", values, err)
	}
	return r
}

// TestEveryCombinationRenders renders every subset of the shipped controllers, with and
// without the node agent, with self-rotated and with cert-manager certificates, and
// checks that each object decodes strictly into its Kubernetes type and that every
// reference between them (ServiceAccounts, roles, Services, Secrets) resolves.
func TestEveryCombinationRenders(t *testing.T) {
	var defs []controllerDef
	for _, d := range controllerDefs(t) {
		if shipped(d.Component) {
			defs = append(defs, d)
		}
	}
	if len(defs) < 3 {
		t.Fatalf("only %d shipped controllers: the chart lost its roles (run make chart)", len(defs))
	}
	combos := 0
	for mask := 0; mask < 1<<len(defs); mask++ {
		for _, agent := range []bool{false, true} {
			for _, certManager := range []bool{false, true} {
				ctrls := map[string]any{}
				var on []controllerDef
				for i, d := range defs {
					enabled := mask&(1<<i) != 0
					ctrls[d.Key] = map[string]any{"enabled": enabled}
					if enabled {
						on = append(on, d)
					}
				}
				values := map[string]any{"controllers": ctrls,
					"nodeAgent": map[string]any{"enabled": agent}, "envoy": map[string]any{"enabled": agent},
					"webhooks": map[string]any{"certManager": map[string]any{"enabled": certManager}}}
				name := fmt.Sprintf("controllers=%v/agent=%v/certManager=%v", keys(on), agent, certManager)
				t.Run(name, func(t *testing.T) {
					r := render(t, values, "cert-manager.io/v1")
					checkObjects(t, r)
					checkComponents(t, r, on, agent, certManager)
				})
				combos++
			}
		}
	}
	t.Logf("%d combinations rendered", combos)
}

func keys(defs []controllerDef) []string {
	var out []string
	for _, d := range defs {
		out = append(out, d.Key)
	}
	return out
}

// checkObjects decodes every object into its type, refusing unknown fields, and checks
// that what refers to another object finds it.
func checkObjects(t *testing.T, r *chart.Rendered) {
	t.Helper()
	for _, o := range append(slices.Clone(r.Objects), r.CRDs...) {
		gvk := o.GroupVersionKind()
		typed, err := scheme.Scheme.New(gvk)
		if err != nil {
			if !strings.HasSuffix(gvk.Group, "cert-manager.io") && gvk.Group != "monitoring.coreos.com" && gvk.Kind != "CustomResourceDefinition" {
				t.Errorf("%s %s: unknown kind", gvk, o.GetName())
			}
			continue
		}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(o.Object, typed, true); err != nil {
			t.Errorf("%s %s: %v", gvk.Kind, o.GetName(), err)
		}
	}
	for _, b := range append(r.OfKind("ClusterRoleBinding"), r.OfKind("RoleBinding")...) {
		ref, _, _ := unstructured.NestedString(b.Object, "roleRef", "kind")
		role, _, _ := unstructured.NestedString(b.Object, "roleRef", "name")
		if r.Find(ref, role) == nil {
			t.Errorf("%s %s binds missing %s %s", b.GetKind(), b.GetName(), ref, role)
		}
		subjects, _, _ := unstructured.NestedSlice(b.Object, "subjects")
		for _, s := range subjects {
			if name := s.(map[string]any)["name"].(string); r.Find("ServiceAccount", name) == nil {
				t.Errorf("%s %s binds missing ServiceAccount %s", b.GetKind(), b.GetName(), name)
			}
		}
	}
	for _, kind := range []string{"Deployment", "DaemonSet"} {
		for _, w := range r.OfKind(kind) {
			sa, _, _ := unstructured.NestedString(w.Object, "spec", "template", "spec", "serviceAccountName")
			if sa != "" && r.Find("ServiceAccount", sa) == nil {
				t.Errorf("%s %s runs as missing ServiceAccount %s", kind, w.GetName(), sa)
			}
			sel, _, _ := unstructured.NestedStringMap(w.Object, "spec", "selector", "matchLabels")
			labels, _, _ := unstructured.NestedStringMap(w.Object, "spec", "template", "metadata", "labels")
			for k, v := range sel {
				if labels[k] != v {
					t.Errorf("%s %s: selector %s=%s does not select its pods", kind, w.GetName(), k, v)
				}
			}
		}
	}
}

// checkComponents checks that exactly the enabled components are installed.
func checkComponents(t *testing.T, r *chart.Rendered, on []controllerDef, agent, certManager bool) {
	t.Helper()
	want := sets.New[string]()
	for _, d := range on {
		name := "portico-" + d.Component
		want.Insert(name)
		for _, kind := range []string{"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment", "Service"} {
			n := name
			if kind == "Service" {
				n += "-metrics"
			}
			if r.Find(kind, n) == nil {
				t.Errorf("controllers.%s enabled but no %s %s", d.Key, kind, n)
			}
		}
		vwc := r.Find("ValidatingWebhookConfiguration", name)
		if (vwc != nil) != (len(d.Webhooks) > 0) {
			t.Errorf("controllers.%s: ValidatingWebhookConfiguration present=%v, webhooks %v", d.Key, vwc != nil, d.Webhooks)
		}
		if vwc != nil {
			secret := r.Find("Secret", name+"-webhook-cert")
			cert := r.Find("Certificate", name+"-webhook")
			if certManager && (secret != nil || cert == nil) || !certManager && (secret == nil || cert != nil) {
				t.Errorf("controllers.%s certManager=%v: Secret %v, Certificate %v", d.Key, certManager, secret != nil, cert != nil)
			}
			if r.Find("Service", name+"-webhook") == nil {
				t.Errorf("controllers.%s: no webhook Service", d.Key)
			}
		}
	}
	for _, dep := range r.OfKind("Deployment") {
		if !want.Has(dep.GetName()) {
			t.Errorf("Deployment %s rendered but not enabled", dep.GetName())
		}
	}
	if got := len(r.OfKind("DaemonSet")); agent && got != 2 || !agent && got != 0 {
		t.Errorf("nodeAgent.enabled=%v: %d DaemonSets", agent, got)
	}
}

// TestMissingBinaryFailsClearly: a controller whose binary is not part of this version
// (its generated role is not in the chart) cannot be switched on by mistake: the
// render fails and says why. A made-up entry always exercises that path; the entries
// of binaries still to come (gateway, envoyConfig) do as long as they do not exist.
func TestMissingBinaryFailsClearly(t *testing.T) {
	cases := map[string]map[string]any{
		"bogus": {"enabled": true, "component": "bogus", "binary": "bogus-controller"},
	}
	for _, d := range controllerDefs(t) {
		if !shipped(d.Component) {
			cases[d.Key] = map[string]any{"enabled": true}
		}
	}
	for key, entry := range cases {
		t.Run(key, func(t *testing.T) {
			_, err := chart.Render(context.Background(), chart.Options{Values: map[string]any{"controllers": map[string]any{key: entry}}})
			if err == nil {
				t.Fatalf("controllers.%s.enabled=true rendered, though the chart has no role for it", key)
			}
			for _, want := range []string{"controllers." + key + ".enabled", "this chart has no", "Leave it disabled"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
		})
	}
}

// clientSide are binaries that run on a user's machine, not in the cluster: the chart
// installs none of them.
var clientSide = map[string]bool{"portico-demo": true, "kubectl-portico": true}

// TestValuesDescribeEveryBinary keeps the one list of binaries consistent: every
// controller binary in cmd/ has a values entry, every controller package its generated
// role in config/rbac and in the chart, and the chart carries no role of a package that
// is gone.
func TestValuesDescribeEveryBinary(t *testing.T) {
	root := testenv.RepoRoot()
	binaries := map[string]string{}
	for _, d := range controllerDefs(t) {
		binaries[d.Binary] = d.Component
	}
	binaries[chartValues(t)["nodeAgent"].(map[string]any)["binary"].(string)] = "nodeagent"
	cmds, _ := filepath.Glob(filepath.Join(root, "cmd", "*"))
	for _, c := range cmds {
		bin := filepath.Base(c)
		if clientSide[bin] {
			continue
		}
		comp, ok := binaries[bin]
		if !ok {
			t.Errorf("cmd/%s has no entry in charts/portico/values.yaml", bin)
			continue
		}
		if !shipped(comp) {
			t.Errorf("cmd/%s exists but the chart has no role files/rbac/%s.yaml (add +kubebuilder:rbac markers and run make chart)", bin, comp)
		}
	}
	pkgs, _ := filepath.Glob(filepath.Join(root, "controllers", "*"))
	for _, p := range pkgs {
		comp := filepath.Base(p)
		if _, err := os.Stat(filepath.Join(root, "config", "rbac", comp, "role.yaml")); err != nil {
			t.Errorf("controllers/%s has no generated role config/rbac/%s/role.yaml", comp, comp)
		}
	}
	files, _ := filepath.Glob(filepath.Join(chart.Dir(), "files", "rbac", "*.yaml"))
	for _, f := range files {
		comp := strings.TrimSuffix(filepath.Base(f), ".yaml")
		if _, err := os.Stat(filepath.Join(root, "config", "rbac", comp, "role.yaml")); err != nil {
			t.Errorf("the chart carries files/rbac/%s.yaml, which config/rbac no longer has (run make chart)", comp)
		}
	}
}

// TestWebhooksClaimedOnce: every generated webhook is served by exactly one controller.
func TestWebhooksClaimedOnce(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "webhook", "manifests.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var vwc struct {
		Webhooks []struct{ Name string }
	}
	if err := yaml.Unmarshal(data, &vwc); err != nil {
		t.Fatal(err)
	}
	claims := map[string][]string{}
	for _, d := range controllerDefs(t) {
		for _, w := range d.Webhooks {
			claims[w] = append(claims[w], d.Key)
		}
	}
	for _, w := range vwc.Webhooks {
		if len(claims[w.Name]) != 1 {
			t.Errorf("webhook %s is served by %v in values.yaml; want exactly one controller", w.Name, claims[w.Name])
		}
		delete(claims, w.Name)
	}
	for w, by := range claims {
		t.Errorf("controllers %v claim webhook %s, which config/webhook does not have", by, w)
	}
}

// TestLint is `helm lint`: no warnings or errors, defaults and everything switched on.
func TestLint(t *testing.T) {
	kv, err := chartutil.ParseKubeVersion(chart.KubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	for name, values := range map[string]map[string]any{
		"defaults": nil,
		"everything": {"metrics": map[string]any{"serviceMonitor": map[string]any{"enabled": true}},
			"webhooks":    map[string]any{"certManager": map[string]any{"enabled": true}},
			"controllers": map[string]any{"lbipam": map[string]any{"replicas": 2}}},
	} {
		t.Run(name, func(t *testing.T) {
			l := lint.AllWithKubeVersion(chart.Dir(), values, "portico-system", kv)
			for _, m := range l.Messages {
				t.Log(m)
				if m.Severity >= support.WarningSev {
					t.Errorf("helm lint: %s", m)
				}
			}
		})
	}
}

// TestSchemaRefusesBadValues: values.schema.json names the field of a bad value, and
// refuses keys the chart does not know (a typo would otherwise be ignored silently).
func TestSchemaRefusesBadValues(t *testing.T) {
	for name, c := range map[string]struct {
		values map[string]any
		want   string
	}{
		"replicas not a number":  {map[string]any{"controllers": map[string]any{"l2": map[string]any{"replicas": "two"}}}, "replicas"},
		"unknown top-level key":  {map[string]any{"nodeAgnet": map[string]any{"enabled": false}}, "nodeAgnet"},
		"unknown controller key": {map[string]any{"controllers": map[string]any{"l2": map[string]any{"replica": 2}}}, "replica"},
		"bad digest":             {map[string]any{"nodeAgent": map[string]any{"digest": "latest"}}, "digest"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := chart.Render(context.Background(), chart.Options{Values: c.values})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v; want an error naming %q", err, c.want)
			}
		})
	}
}
