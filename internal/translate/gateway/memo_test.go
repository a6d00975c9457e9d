package gateway

import (
	"bytes"
	"fmt"
	"path/filepath"
	"testing"
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
			want := marshalOutput(t, Translate(in))
			for pass := range 2 {
				if got := marshalOutput(t, m.Translate(in)); !bytes.Equal(got, want) {
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
	if !bytes.Equal(marshalOutput(t, got), marshalOutput(t, Translate(in))) {
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
