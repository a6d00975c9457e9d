package render

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/types"

	"github.com/portico-dev/portico/apis/v1alpha1"
)

// TestRenderChangedEqualsRender is RenderChanged's proof obligation: along
// random sequences over every golden case (the worlds of
// TestRendererEqualsRenderAfterChanges), the spec edits of one or two configs
// go through RenderChanged, and where it refuses, through Render; every other
// change (added, removed, recreated, relabelled configs, ports, Secrets,
// capacity, status writes) through Render. After each step the output equals
// Render of the same input from scratch.
func TestRenderChangedEqualsRender(t *testing.T) {
	all := cases(t)
	taken, refused := 0, 0
	for seq := range len(all) {
		rng := rand.New(rand.NewPCG(uint64(seq), 77))
		dirs := []string{all[seq]}
		for range rng.IntN(3) {
			dirs = append(dirs, all[rng.IntN(len(all))])
		}
		slices.Sort(dirs)
		w := newWorld(t, rng, slices.Compact(dirs))
		r := NewRenderer()
		r.Render(w.input())
		var history []string
		for step := range 80 {
			var out Output
			if on := slices.Sorted(maps.Keys(w.on)); len(on) > 0 && rng.IntN(5) < 3 {
				var changed []*v1alpha1.NodeProxyConfig
				what := ""
				// Mostly route configs, the ones a delta is for.
				routes := slices.DeleteFunc(slices.Clone(on), func(i int) bool { return !routeConfig(w.on[i]) })
				for range 1 + rng.IntN(2) {
					i := on[rng.IntN(len(on))]
					if len(routes) > 0 && rng.IntN(4) > 0 {
						i = routes[rng.IntN(len(routes))]
					}
					c := w.on[i].DeepCopy()
					if routeConfig(c) && rng.IntN(3) > 0 {
						what += editPrefix(rng, c) + " in " + c.Name + "; "
					} else {
						what += w.mutate(c) + " in " + c.Name + "; "
					}
					w.put(i, c)
					changed = slices.DeleteFunc(changed, func(x *v1alpha1.NodeProxyConfig) bool { return x.Name == c.Name })
					changed = append(changed, w.on[i])
				}
				history = append(history, what)
				var ok bool
				if out, ok = r.RenderChanged(changed); ok {
					taken++
				} else {
					refused++
					out = r.Render(w.input())
				}
			} else {
				history = append(history, w.step())
				out = r.Render(w.input())
			}
			want := marshalOutput(t, Render(w.input()))
			if got := marshalOutput(t, out); !bytes.Equal(got, want) {
				t.Fatalf("sequence %d (%v), step %d: output differs from Render after:\n  %s\n%s",
					seq, dirs, step, joinLast(history, 6), lineDiff(string(want), string(got)))
			}
		}
	}
	t.Logf("%d delta renders taken, %d refused", taken, refused)
	if taken < 100 || refused < 100 {
		t.Errorf("%d delta renders taken and %d refused: the sequences did not exercise both", taken, refused)
	}
}

// routeConfig reports whether c carries route fragments and nothing of a
// listener's.
func routeConfig(c *v1alpha1.NodeProxyConfig) bool {
	return len(c.Spec.RouteFragments) > 0 && len(c.Spec.Redirects)+len(c.Spec.FilterChainFragments)+len(c.Spec.Announcements) == 0
}

// editPrefix changes the path of one route of c, as an HTTPRoute's edit does
// (or, now and then, the ports it asks of a backend Service).
func editPrefix(rng *rand.Rand, c *v1alpha1.NodeProxyConfig) string {
	if e := c.Spec.Envoy; e != nil && len(e.BackendServices) > 0 && rng.IntN(6) == 0 {
		// A route that now asks for another port of its Service.
		e.BackendServices[0].Ports = append(e.BackendServices[0].Ports, fmt.Sprint(8000+rng.IntN(9)))
		return "backend port added"
	}
	f := &c.Spec.RouteFragments[rng.IntN(len(c.Spec.RouteFragments))]
	if len(f.Routes) == 0 {
		return "nothing"
	}
	r := &f.Routes[rng.IntN(len(f.Routes))]
	var m map[string]any
	if err := json.Unmarshal(r.Route.Raw, &m); err != nil {
		return "nothing"
	}
	m["match"] = map[string]any{"prefix": fmt.Sprintf("/edited-%d", rng.IntN(6))}
	r.Route.Raw, _ = json.Marshal(m)
	return "prefix edited"
}

// TestRenderChangedRefusesWhatItCannotPatch: what a route config gains
// besides routes (an announcement, a Secret to serve), or lost labels, is
// Render's to apply; a plain route edit is a delta, and the Renderer's next
// Render still equals Render.
func TestRenderChangedRefusesWhatItCannotPatch(t *testing.T) {
	in := benchInput(t, 6)
	for i, c := range in.Configs {
		c.ResourceVersion, c.UID, c.Generation = "1", types.UID(fmt.Sprint("uid-", i)), 1
	}
	r := NewRenderer()
	r.Render(in)
	edit := func(change func(c *v1alpha1.NodeProxyConfig)) *v1alpha1.NodeProxyConfig {
		c := in.Configs[3].DeepCopy()
		c.ResourceVersion, c.Generation = "2", 2
		change(c)
		return c
	}
	for name, change := range map[string]func(c *v1alpha1.NodeProxyConfig){
		"announcement": func(c *v1alpha1.NodeProxyConfig) {
			c.Spec.Announcements = []v1alpha1.Announcement{{IP: "10.0.0.99"}}
		},
		"secret": func(c *v1alpha1.NodeProxyConfig) { c.Spec.Envoy.Secrets = []string{"default/tls"} },
		"labels": func(c *v1alpha1.NodeProxyConfig) { c.Labels = map[string]string{"moved": "yes"} },
	} {
		if _, ok := r.RenderChanged([]*v1alpha1.NodeProxyConfig{edit(change)}); ok {
			t.Errorf("%s: a delta render was taken", name)
		}
	}
	c := edit(func(c *v1alpha1.NodeProxyConfig) {
		c.Spec.RouteFragments[0].Routes[0].Route.Raw = []byte(`{"match":{"prefix":"/edited"},"route":{"cluster":"default/svc-3:80"}}`)
	})
	got, ok := r.RenderChanged([]*v1alpha1.NodeProxyConfig{c})
	if !ok {
		t.Fatal("a route edit was refused")
	}
	in.Configs[3] = c
	want := marshalOutput(t, Render(in))
	if !bytes.Equal(marshalOutput(t, got), want) {
		t.Fatalf("delta render differs from Render:\n%s", lineDiff(string(want), string(marshalOutput(t, got))))
	}
	if !bytes.Equal(marshalOutput(t, r.Render(in)), want) {
		t.Fatal("the Renderer's Render after a delta differs from Render")
	}
}
