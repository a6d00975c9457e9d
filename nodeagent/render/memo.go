package render

import (
	"slices"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/proto"
	"k8s.io/apimachinery/pkg/types"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/lastorder"
	"github.com/portico-dev/portico/internal/xdsres"
)

// memo is what a Renderer remembers of the merge between renders, so that a change to
// one config costs what it touches rather than what the node serves: the merged route
// tables and listeners, which clusters are identical and which resources passed
// validation. Every entry is keyed by the identity of the parsed pieces it was made
// from (messages and fragments a config's parse decoded, which nothing modifies after
// parsing), and holds them, so that a key can never be reused by different content: an
// entry is found exactly when recomputing it would give the same value. That is what
// keeps a Renderer's output equal to Render's (TestRendererEqualsRenderAfterChanges).
//
// Entries live two generations: what the last render did not use is forgotten by the
// next. A nil *memo remembers nothing (Render).
type memo struct {
	deep      *xdsres.Memo
	equal     generation[[2]*clusterv3.Cluster, bool]
	tables    generation[string, *memoTable]
	listeners generation[string, *memoListener]
	// order is the last render's age order of the configs.
	order lastorder.Order[ageKey]
	// asked and served are the last render's backendServices call.
	asked  [][]v1alpha1.BackendService
	served []v1alpha1.BackendService
	// claimsPrev are the last render's claimOnce calls, claimsCur this one's
	// (claimmemo.go).
	claimsPrev, claimsCur []memoClaim
	// hits counts the lookups answered, for tests and benchmarks that must know the
	// incremental path was taken.
	hits memoHits
}

type memoHits struct{ tables, listeners, equal, order, claims, backends, delta int }

// ageKey is what a config's place in the age order depends on: a config
// deleted and created again under its name has another UID and age.
type ageKey struct {
	name    string
	uid     types.UID
	created int64
}

func ageKeyOf(c *v1alpha1.NodeProxyConfig) ageKey {
	return ageKey{c.Name, c.UID, c.CreationTimestamp.UnixNano()}
}

// inLastOrder puts configs in the last render's order when they are the same
// configs: ordering 10,000 configs again on every render was a tenth of an
// agent's render after one change.
func (m *memo) inLastOrder(in []*v1alpha1.NodeProxyConfig) ([]*v1alpha1.NodeProxyConfig, bool) {
	if m == nil || slices.Contains(in, nil) {
		return nil, false
	}
	out, ok := lastorder.Place(&m.order, in, ageKeyOf)
	if ok {
		m.hits.order++
	}
	return out, ok
}

func (m *memo) rememberOrder(sorted []*v1alpha1.NodeProxyConfig) {
	if m != nil {
		lastorder.Remember(&m.order, sorted, ageKeyOf)
	}
}

func newMemo() *memo {
	return &memo{deep: xdsres.NewMemo(), equal: newGeneration[[2]*clusterv3.Cluster, bool](),
		tables: newGeneration[string, *memoTable](), listeners: newGeneration[string, *memoListener]()}
}

// next ends a render.
func (m *memo) next() {
	m.deep.Next()
	m.equal.next()
	m.tables.next()
	m.listeners.next()
	m.claimsPrev, m.claimsCur = m.claimsCur, nil
}

// generation is a map whose entries not used since the previous next are dropped by next.
type generation[K comparable, V any] struct{ cur, prev map[K]V }

func newGeneration[K comparable, V any]() generation[K, V] {
	return generation[K, V]{cur: map[K]V{}}
}

func (g *generation[K, V]) get(k K) (V, bool) {
	if v, ok := g.cur[k]; ok {
		return v, true
	}
	v, ok := g.prev[k]
	if ok {
		g.cur[k] = v
	}
	return v, ok
}

func (g *generation[K, V]) put(k K, v V) { g.cur[k] = v }

func (g *generation[K, V]) next() { g.prev, g.cur = g.cur, make(map[K]V, len(g.cur)) }

// identical is proto.Equal(a, b) for two parsed clusters.
func (m *memo) identical(a, b *clusterv3.Cluster) bool {
	if a == b {
		return true
	}
	if m == nil {
		return proto.Equal(a, b)
	}
	k := [2]*clusterv3.Cluster{a, b}
	if eq, ok := m.equal.get(k); ok {
		m.hits.equal++
		return eq
	}
	eq := proto.Equal(a, b)
	m.equal.put(k, eq)
	return eq
}

// validate is xdsres.Validate(res).
func (m *memo) validate(res xdsres.Resources) []xdsres.ResourceError {
	if m == nil {
		return xdsres.Validate(res)
	}
	return m.deep.Validate(res)
}

// memoTable is a route table made from fragments, and the fragments it was made of
// in the order build met them.
type memoTable struct {
	fragments []*fragment
	rc        *routev3.RouteConfiguration
}

// routeConfiguration is t.routeConfiguration(name). The table is a function of its
// fragments alone (routeConfiguration orders routes by a total order on fields of the
// fragments), so the same fragments give the same table.
func (m *memo) routeConfiguration(name string, t *table) *routev3.RouteConfiguration {
	if m == nil {
		return t.routeConfiguration(name)
	}
	if e, ok := m.tables.get(name); ok && samePointers(e.fragments, t.fragments) {
		m.hits.tables++
		return e.rc
	}
	rc := t.routeConfiguration(name)
	m.tables.put(name, &memoTable{fragments: t.fragments, rc: rc})
	return rc
}

// memoListener is a listener with contributed chains merged in, and what it was made of.
type memoListener struct {
	base   *listenerv3.Listener
	chains []*listenerv3.FilterChain
	merged *listenerv3.Listener
}

// merged is merge(l, chains), which must be a function of l and chains alone.
func (m *memo) merged(l *listenerv3.Listener, chains []*listenerv3.FilterChain,
	merge func(*listenerv3.Listener, []*listenerv3.FilterChain) *listenerv3.Listener) *listenerv3.Listener {
	if m == nil {
		return merge(l, chains)
	}
	if e, ok := m.listeners.get(l.GetName()); ok && e.base == l && samePointers(e.chains, chains) {
		m.hits.listeners++
		return e.merged
	}
	out := merge(l, chains)
	m.listeners.put(l.GetName(), &memoListener{base: l, chains: chains, merged: out})
	return out
}

func samePointers[T any](a, b []*T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// backendServices is backendServices(asked), the last render's answer when the
// applied configs ask for the same Services in the same order: merging what
// 10,000 configs ask for was a tenth of a render after one route changed.
func (m *memo) backendServices(asked [][]v1alpha1.BackendService) []v1alpha1.BackendService {
	if m == nil {
		return backendServices(asked)
	}
	same := len(asked) == len(m.asked)
	for i := 0; same && i < len(asked); i++ {
		a, b := asked[i], m.asked[i]
		same = (len(a) == len(b) && &a[0] == &b[0]) || slices.EqualFunc(a, b, sameBackend)
	}
	if same {
		m.hits.backends++
	} else {
		m.served = backendServices(asked)
	}
	m.asked = asked
	// The caller owns its Output.
	return slices.Clone(m.served)
}

func sameBackend(a, b v1alpha1.BackendService) bool {
	return a.ServiceRef == b.ServiceRef && slices.Equal(a.Ports, b.Ports)
}
