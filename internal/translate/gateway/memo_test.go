package gateway

import (
	"bytes"
	"fmt"
	"path/filepath"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestMemoSameOutput: a memoised translation gives exactly Translate's
// output, on every golden case and again after inputs changed.
func TestMemoSameOutput(t *testing.T) {
	for _, dir := range cases(t) {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			in := loadCase(t, dir)
			versioned(in)
			m := NewMemo()
			want := marshalOutput(t, goldenCase{Input: in}, Translate(in))
			for pass := range 2 {
				if got := marshalOutput(t, goldenCase{Input: in}, m.Translate(in)); !bytes.Equal(got, want) {
					t.Fatalf("pass %d: memoised output differs:\n%s", pass, got)
				}
			}
		})
	}
}

// versioned gives every object of in a resourceVersion, as the cache's have:
// the memo keeps nothing of objects without one.
func versioned(in Input) {
	for i, r := range in.HTTPRoutes {
		r.ResourceVersion = fmt.Sprint(100 + i)
	}
	for i, r := range in.GRPCRoutes {
		r.ResourceVersion = fmt.Sprint(200 + i)
	}
	for i, r := range in.TLSRoutes {
		r.ResourceVersion = fmt.Sprint(300 + i)
	}
	for i, g := range in.Gateways {
		g.ResourceVersion = fmt.Sprint(400 + i)
	}
}

// TestMemoFollowsGatewaysAndNamespaces: where routes attach follows a
// Gateway's listeners and the labels its allowedRoutes select, which the
// memo of attachments would otherwise keep; statuses of unchanged inputs are
// the very same values.
func TestMemoFollowsGatewaysAndNamespaces(t *testing.T) {
	in := loadCase(t, filepath.Join("testdata", "reference-grant"))
	versioned(in)
	m := NewMemo()
	check := func(step string) Output {
		t.Helper()
		got := m.Translate(in)
		if !bytes.Equal(marshalOutput(t, goldenCase{Input: in}, got), marshalOutput(t, goldenCase{Input: in}, Translate(in))) {
			t.Fatalf("%s: memoised output differs from a fresh translation", step)
		}
		return got
	}
	first := check("first pass")
	again := check("same inputs")
	app := RouteKey{KindHTTPRoute, "apps", "app"}
	if &first.Routes[app][0] != &again.Routes[app][0] {
		t.Error("a pass over the same inputs made the route's status again")
	}
	in.Namespaces["other"] = map[string]string{"team": "apps"}
	if out := check("namespace labelled"); len(out.Routes[RouteKey{KindHTTPRoute, "other", "outsider"}]) == 0 ||
		out.Routes[RouteKey{KindHTTPRoute, "other", "outsider"}][0].Config == "" {
		t.Error("the route of a namespace that gained the selected label did not attach")
	}
	gw := in.Gateways[0].DeepCopy()
	gw.ResourceVersion = "999"
	gw.Spec.Listeners[0].AllowedRoutes = nil // Same: only the Gateway's own namespace
	in.Gateways[0] = gw
	out := check("listener narrowed")
	for _, k := range []RouteKey{app, {KindHTTPRoute, "other", "outsider"}} {
		if ps := out.Routes[k]; len(ps) == 0 || ps[0].Config != "" {
			t.Errorf("%s still attached after its listener stopped allowing its namespace: %+v", k, ps)
		}
	}
}

// TestMemoFollowsChanges: after one route, a Service and a grant change, the
// memoised output is the fresh one, and unchanged configs are the same values.
func TestMemoFollowsChanges(t *testing.T) {
	in := loadCase(t, filepath.Join("testdata", "precedence"))
	for i, r := range in.HTTPRoutes {
		r.ResourceVersion = fmt.Sprint(i + 1)
	}
	m := NewMemo()
	first := m.Translate(in)
	changed := in.HTTPRoutes[2].DeepCopy() // foo.example.com: no other route is copied from it
	changed.ResourceVersion = "999"
	v := "/changed"
	changed.Spec.Rules[0].Matches[0].Path.Value = &v
	in.HTTPRoutes[2] = changed
	got := m.Translate(in)
	if !bytes.Equal(marshalOutput(t, goldenCase{Input: in}, got), marshalOutput(t, goldenCase{Input: in}, Translate(in))) {
		t.Fatal("memoised output after a change differs from a fresh translation")
	}
	same, differ := 0, 0
	for i, c := range got.Configs {
		if c.Source.Kind != KindHTTPRoute {
			continue
		}
		if &c.Spec.RouteFragments[0] == &first.Configs[i].Spec.RouteFragments[0] {
			same++
		} else {
			differ++
		}
	}
	if differ != 1 {
		t.Errorf("%d route configs rebuilt after one route changed, want 1 (%d kept)", differ, same)
	}
}

// TestMemoFollowsClassSelector: a class's new node selector reaches the
// configs of its routes, which the memo would otherwise keep.
func TestMemoFollowsClassSelector(t *testing.T) {
	in := loadCase(t, filepath.Join("testdata", "class-parameters"))
	for i, r := range in.HTTPRoutes {
		r.ResourceVersion = fmt.Sprint(i + 1)
	}
	m := NewMemo()
	m.Translate(in)
	edge := *in.Classes["edge"]
	edge.NodeSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"moved": "here"}}
	in.Classes["edge"] = &edge
	got := m.Translate(in)
	if !bytes.Equal(marshalOutput(t, goldenCase{Input: in}, got), marshalOutput(t, goldenCase{Input: in}, Translate(in))) {
		t.Fatal("memoised output after a class's selector changed differs from a fresh translation")
	}
	for _, c := range got.Configs {
		if c.Gateway.Name == "edge-gw" && (c.Spec.NodeSelector == nil || c.Spec.NodeSelector.MatchLabels["moved"] != "here") {
			t.Errorf("%s: node selector %v", c.Name, c.Spec.NodeSelector)
		}
	}
}
