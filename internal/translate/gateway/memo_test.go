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
			for i, r := range in.HTTPRoutes {
				r.ResourceVersion = fmt.Sprint(100 + i)
			}
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
