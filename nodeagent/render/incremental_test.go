package render

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	"github.com/portico-dev/portico/apis/v1alpha1"
)

// world is the state a sequence of changes walks through: the configs selecting the
// node, and the agent's view of ports, Secrets and capacity.
type world struct {
	t       *testing.T
	rng     *rand.Rand
	pool    []*v1alpha1.NodeProxyConfig // every config that may be selected, by index
	on      map[int]*v1alpha1.NodeProxyConfig
	ports   map[string]uint16
	secrets map[string]string // ref -> golden secret state; absent: not read yet
	refs    []string
	states  map[string]SecretState // converted once per ref and state, as the agent does
	lists   []string               // listeners seen in redirects
	cap     int
	rv      int
}

// newWorld pools the configs of the golden cases named (renamed "<case>.<name>", so
// that cases keep their own configs but collide on resource names, VIPs and tables)
// and of a shared Gateway with routes sharing identical clusters.
func newWorld(t *testing.T, rng *rand.Rand, dirs []string) *world {
	w := &world{t: t, rng: rng, on: map[int]*v1alpha1.NodeProxyConfig{}, ports: map[string]uint16{},
		secrets: map[string]string{}, states: map[string]SecretState{}}
	refs := map[string]bool{}
	for _, dir := range dirs {
		in := loadGolden(t, dir)
		for _, c := range in.Configs {
			c = c.DeepCopy()
			c.Name = filepath.Base(dir) + "." + c.Name
			w.pool = append(w.pool, c)
			for _, r := range c.Spec.Redirects {
				w.lists = append(w.lists, r.Listener)
			}
			if c.Spec.Envoy != nil {
				for _, s := range c.Spec.Envoy.Secrets {
					refs[s] = true
				}
			}
		}
		maps.Copy(w.ports, in.ProxyPorts)
		maps.Copy(w.secrets, in.Secrets)
	}
	shared := benchInput(t, 12)
	for i, c := range shared.Configs {
		c = c.DeepCopy()
		if i > 0 {
			// Four clusters among the routes: identical definitions merge.
			svc := fmt.Sprintf("svc-%d", i%4)
			c.Spec.Envoy.Resources[0] = resource(t, fmt.Sprintf(`{"@type":"type.googleapis.com/envoy.config.cluster.v3.Cluster","name":"default/%s:80","type":"EDS",`+
				`"connect_timeout":"5s","eds_cluster_config":{"eds_config":{"ads":{},"resource_api_version":"V3"}}}`, svc))
			c.Spec.Envoy.BackendServices[0].Name = svc
		}
		w.pool = append(w.pool, c)
	}
	maps.Copy(w.ports, shared.ProxyPorts)
	w.lists = append(w.lists, "gw")
	w.refs = slices.Sorted(maps.Keys(refs))
	slices.Sort(w.lists)
	w.lists = slices.Compact(w.lists)
	for i := range w.pool {
		if rng.IntN(3) > 0 {
			w.put(i, w.pool[i])
		}
	}
	return w
}

func loadGolden(t *testing.T, dir string) goldenInput {
	raw, err := os.ReadFile(filepath.Join(dir, "input.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var in goldenInput
	if err := yaml.UnmarshalStrict(raw, &in); err != nil {
		t.Fatalf("%s: %v", dir, err)
	}
	return in
}

// put selects config i with content c, as the apiserver would hand it: a new
// resourceVersion on every write, the UID of the pool entry, and a generation bumped
// by every change to the spec (only).
func (w *world) put(i int, c *v1alpha1.NodeProxyConfig) {
	w.rv++
	c = c.DeepCopy()
	c.ResourceVersion = strconv.Itoa(w.rv)
	if c.UID == "" {
		c.UID = types.UID("uid-" + c.Name)
	}
	switch prev := w.on[i]; {
	case prev == nil || prev.UID != c.UID:
		c.Generation = 1
	case !apiequality.Semantic.DeepEqual(prev.Spec, c.Spec):
		c.Generation = prev.Generation + 1
	default:
		c.Generation = prev.Generation
	}
	w.on[i] = c
}

func (w *world) input() Input {
	in := Input{ProxyPorts: maps.Clone(w.ports), Secrets: map[string]SecretState{}, RedirectCapacity: w.cap}
	for _, i := range slices.Sorted(maps.Keys(w.on)) {
		in.Configs = append(in.Configs, w.on[i])
	}
	w.rng.Shuffle(len(in.Configs), func(i, j int) { in.Configs[i], in.Configs[j] = in.Configs[j], in.Configs[i] })
	for ref, kind := range w.secrets {
		key := ref + "=" + kind
		st, ok := w.states[key]
		if !ok {
			st = secretStates(w.t, map[string]string{ref: kind})[ref]
			w.states[key] = st
		}
		in.Secrets[ref] = st
	}
	return in
}

// step makes one random change and says what it was.
func (w *world) step() string {
	i := w.rng.IntN(len(w.pool))
	cur := w.on[i]
	switch op := w.rng.IntN(12); {
	case op == 0 && cur != nil:
		delete(w.on, i)
		return "remove " + cur.Name
	case op <= 1 && cur == nil:
		w.put(i, w.pool[i])
		return "add " + w.pool[i].Name
	case op == 2 && cur != nil:
		w.put(i, cur)
		return "status of " + cur.Name + " written"
	case op == 3 && cur != nil:
		// Deleted and created again: a new UID and a new age.
		c := cur.DeepCopy()
		c.UID = types.UID(fmt.Sprintf("uid-%s-%d", c.Name, w.rv))
		c.CreationTimestamp = metav1.NewTime(time.Date(2026, 1, 1+w.rng.IntN(60), 0, 0, 0, 0, time.UTC))
		w.put(i, c)
		return "recreate " + c.Name
	case op <= 7 && cur != nil:
		c := cur.DeepCopy()
		what := w.mutate(c)
		w.put(i, c)
		return what + " in " + c.Name
	case op == 8 && len(w.refs) > 0:
		ref := w.refs[w.rng.IntN(len(w.refs))]
		kinds := []string{"", "valid", "valid+ca", "ca", "notFound", "invalid"}
		kind := kinds[w.rng.IntN(len(kinds))]
		if kind == "" {
			delete(w.secrets, ref)
		} else {
			w.secrets[ref] = kind
		}
		return "secret " + ref + " " + kind
	case op == 9:
		l := w.lists[w.rng.IntN(len(w.lists))]
		if _, ok := w.ports[l]; ok && w.rng.IntN(2) == 0 {
			delete(w.ports, l)
			return "port of " + l + " released"
		}
		w.ports[l] = uint16(15000 + w.rng.IntN(900))
		return "port of " + l + " set"
	case op == 10:
		w.cap = []int{0, 0, 2, 3, 6}[w.rng.IntN(5)]
		return "capacity " + strconv.Itoa(w.cap)
	}
	return "nothing"
}

// mutate changes one part of c the way producers do.
func (w *world) mutate(c *v1alpha1.NodeProxyConfig) string {
	switch w.rng.IntN(6) {
	case 0, 1:
		if len(c.Spec.RouteFragments) == 0 || len(c.Spec.RouteFragments[0].Routes) == 0 {
			break
		}
		f := &c.Spec.RouteFragments[w.rng.IntN(len(c.Spec.RouteFragments))]
		if len(f.Routes) == 0 {
			return "nothing"
		}
		r := &f.Routes[w.rng.IntN(len(f.Routes))]
		var m map[string]any
		if err := json.Unmarshal(r.Route.Raw, &m); err != nil || w.rng.IntN(8) == 0 {
			// A route Envoy refuses (no action).
			r.Route.Raw = []byte(`{"match":{"prefix":"/broken"}}`)
			return "broken route"
		}
		m["match"] = map[string]any{"prefix": fmt.Sprintf("/m%d", w.rng.IntN(4))}
		r.Route.Raw, _ = json.Marshal(m)
		return "route changed"
	case 2:
		if len(c.Spec.RouteFragments) == 0 {
			break
		}
		j := w.rng.IntN(len(c.Spec.RouteFragments))
		f := &c.Spec.RouteFragments[j]
		if len(f.Routes) > 0 && w.rng.IntN(2) == 0 {
			f.Routes = f.Routes[1:]
			return "route dropped"
		}
		c.Spec.RouteFragments = slices.Delete(c.Spec.RouteFragments, j, j+1)
		return "fragment dropped"
	case 3:
		if c.Spec.Envoy == nil || len(c.Spec.Envoy.Resources) == 0 {
			break
		}
		j := w.rng.IntN(len(c.Spec.Envoy.Resources))
		var m map[string]any
		if err := json.Unmarshal(c.Spec.Envoy.Resources[j].Raw, &m); err != nil {
			w.t.Fatal(err)
		}
		if _, ok := m["connect_timeout"]; !ok {
			c.Spec.Envoy.Resources = slices.Delete(c.Spec.Envoy.Resources, j, j+1)
			return "resource dropped"
		}
		// Clusters of the same name stay identical, start to differ, or become one
		// Envoy refuses (connect_timeout must be positive).
		m["connect_timeout"] = []string{"5s", "1s", "-1s"}[w.rng.IntN(3)]
		raw, _ := json.Marshal(m)
		c.Spec.Envoy.Resources[j] = resource(w.t, string(raw))
		return "cluster timeout"
	case 4:
		if len(c.Spec.FilterChainFragments) == 0 {
			break
		}
		j := w.rng.IntN(len(c.Spec.FilterChainFragments))
		c.Spec.FilterChainFragments = slices.Delete(c.Spec.FilterChainFragments, j, j+1)
		return "chain fragment dropped"
	}
	// Labels are metadata (no new generation); parse reads the source namespace.
	c.Labels = map[string]string{v1alpha1.LabelSourceNamespace: []string{"default", "other"}[w.rng.IntN(2)]}
	return "labels"
}

// TestRendererEqualsRenderAfterChanges is the proof obligation of the Renderer's
// caches: after any sequence of changes (configs added, removed, rewritten, recreated,
// routes and clusters changed, Secrets, proxy ports and capacity changing), a Renderer
// that has seen the whole history renders exactly what Render makes of the same input
// from scratch. The seeds are fixed, so a failure replays.
func TestRendererEqualsRenderAfterChanges(t *testing.T) {
	all := cases(t)
	steps := 60
	if testing.Short() {
		steps = 40
	}
	var hits memoHits
	var deepHits int
	for seq := range len(all) {
		rng := rand.New(rand.NewPCG(uint64(seq), 12))
		// Every golden case, with up to two others, so that their configs meet.
		dirs := []string{all[seq]}
		for range rng.IntN(3) {
			dirs = append(dirs, all[rng.IntN(len(all))])
		}
		slices.Sort(dirs)
		dirs = slices.Compact(dirs)
		w := newWorld(t, rng, dirs)
		r := NewRenderer()
		var history []string
		for step := range steps {
			in := w.input()
			got := marshalOutput(t, r.Render(in))
			want := marshalOutput(t, Render(in))
			if !bytes.Equal(got, want) {
				t.Fatalf("sequence %d (%v), step %d: Renderer differs from Render after:\n  %s\n%s",
					seq, dirs, step, joinLast(history, 8), lineDiff(string(want), string(got)))
			}
			history = append(history, w.step())
		}
		hits.tables += r.memo.hits.tables
		hits.listeners += r.memo.hits.listeners
		hits.equal += r.memo.hits.equal
		hits.order += r.memo.hits.order
		hits.claims += r.memo.hits.claims
		hits.backends += r.memo.hits.backends
		deepHits += r.memo.deep.Hits()
	}
	// The sequences must have exercised the memo, or the test proves nothing.
	if hits.tables == 0 || hits.listeners == 0 || hits.equal == 0 || hits.order == 0 || hits.claims == 0 || hits.backends == 0 || deepHits == 0 {
		t.Fatalf("memo not exercised: %+v, deep %d", hits, deepHits)
	}
	t.Logf("memo hits: %+v, deep %d", hits, deepHits)
}

func joinLast(s []string, n int) string {
	var b bytes.Buffer
	for i, x := range s[max(0, len(s)-n):] {
		if i > 0 {
			b.WriteString("\n  ")
		}
		b.WriteString(x)
	}
	return b.String()
}
