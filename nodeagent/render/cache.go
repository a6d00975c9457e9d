package render

import (
	"maps"
	"sync"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"k8s.io/apimachinery/pkg/types"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/xdsres"
)

// Renderer is Render with memory: it keeps what each config parsed to (decoded Envoy
// resources, routes checked on their own, or the rejection) and reuses it while the
// config is unchanged, so a change to one config no longer decodes and validates all
// the others again. Conflicts are settled again on every call; merging and validating
// reuse what the previous call made of the same parsed pieces (see memo), so the
// output is exactly Render's (TestRendererEqualsRenderAfterChanges).
//
// A Renderer is safe for concurrent use, but renders one call at a time.
type Renderer struct {
	mu    sync.Mutex
	cache map[string]*parsedEntry // by config name
	memo  *memo
	// last is what RenderChanged builds on (delta.go).
	last *lastRender
}

// parsedEntry is one config's parse result and what it was computed from.
type parsedEntry struct {
	uid types.UID
	// generation and labels stand for the content parse reads: the spec (the apiserver
	// bumps metadata.generation on every spec change, never on status or metadata
	// writes), the name (the cache key) and the labels (compared whole). Keying on
	// resourceVersion instead would parse a config again on every status write, which
	// the controllers make to every config a node reports on, and give its resources
	// new identities, which every memo downstream (render's, the xDS server's) keys on.
	// TestParseReadsOnlySpecNameLabels keeps parse to that.
	generation int64
	labels     map[string]string
	// rv is the resourceVersion of the config the entry's parse now carries (p.cfg),
	// which Applied reports.
	rv string
	// ports are the proxy ports of the config's redirect listeners, the only ports
	// parse is given (see redirectPorts).
	ports map[string]uint16
	p     *parsed
	rej   *rejection
	// routes are the fragment routes the parse decoded, by JSON, for the next one.
	routes map[string]*routev3.Route
}

// NewRenderer returns an empty Renderer.
func NewRenderer() *Renderer {
	return &Renderer{cache: map[string]*parsedEntry{}, memo: newMemo()}
}

// Render is Render(in), reusing the parse of every config whose UID, generation,
// labels and redirect ports are those of its previous call. Configs absent
// from in are forgotten.
func (r *Renderer) Render(in Input) Output {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := make(map[string]bool, len(in.Configs))
	out := render(in, func(cfg *v1alpha1.NodeProxyConfig) (*parsed, *rejection) {
		seen[cfg.Name] = true
		ports := redirectPorts(cfg, in.ProxyPorts)
		// The same resourceVersion is the same object: comparing its labels again, for
		// each of thousands of configs on every render, is most of this check's cost.
		if e := r.cache[cfg.Name]; e != nil && e.rv != "" && cfg.ResourceVersion != "" && e.uid == cfg.UID &&
			e.generation == cfg.Generation && (e.rv == cfg.ResourceVersion || maps.Equal(e.labels, cfg.Labels)) &&
			maps.Equal(e.ports, ports) {
			if e.p != nil && e.rv != cfg.ResourceVersion {
				// Same content, written since (status): the parse carries the current object.
				own := *cfg
				q := *e.p
				q.cfg = &own
				e.p = &q
			}
			e.rv = cfg.ResourceVersion
			return e.p, e.rej
		}
		// The parse keeps its config (p.cfg). Callers pass elements of a list (the
		// agent's List result), so keeping cfg itself would pin the whole list for as
		// long as the entry lives, one list per render that parsed something: keep a
		// shallow copy of this one object instead.
		own := *cfg
		var prevRoutes map[string]*routev3.Route
		if e := r.cache[cfg.Name]; e != nil && e.uid == cfg.UID {
			prevRoutes = e.routes
		}
		routes := newRouteCache(prevRoutes)
		p, rej := parse(&own, ports, routes)
		if cfg.ResourceVersion == "" {
			// Not from an apiserver (a test's literal): nothing tells its versions apart.
			delete(r.cache, cfg.Name)
		} else {
			r.cache[cfg.Name] = &parsedEntry{uid: cfg.UID, generation: cfg.Generation, labels: maps.Clone(cfg.Labels),
				rv: cfg.ResourceVersion, ports: ports, p: p, rej: rej, routes: routes.cur}
		}
		return p, rej
	}, r.memo)
	r.memo.next()
	for name := range r.cache {
		if !seen[name] {
			delete(r.cache, name)
		}
	}
	r.last = &lastRender{out: cloneOutput(out)}
	return out
}

// redirectPorts are the entries of ports for the listeners cfg redirects to: all that
// parse may read, so that a port change elsewhere does not invalidate cfg's entry and
// parse cannot come to depend on a port its cache key does not hold.
func redirectPorts(cfg *v1alpha1.NodeProxyConfig, ports map[string]uint16) map[string]uint16 {
	if len(cfg.Spec.Redirects) == 0 {
		return nil // most configs (routes, chains): no map to make and compare per render
	}
	out := map[string]uint16{}
	for _, r := range cfg.Spec.Redirects {
		if port, ok := ports[r.Listener]; ok {
			out[r.Listener] = port
		}
	}
	return out
}

// routeCache decodes the fragment routes of one config, reusing the messages decoded
// from the same JSON by the config's previous parse: a producer rewrites the whole
// object to change one route, and decoding is most of what parsing 1,000 routes costs.
// Its lifetime is the config's cache entry, so routes of a config served from the
// cache stay warm however long it goes unchanged. A nil *routeCache decodes afresh.
//
// The messages are shared by every render that uses them and end up in served route
// tables, so nothing may modify them (build does not: it copies pointers).
type routeCache struct {
	prev map[string]*routev3.Route // by JSON, from the previous parse
	cur  map[string]*routev3.Route // by JSON, used by this parse
}

func newRouteCache(prev map[string]*routev3.Route) *routeCache {
	return &routeCache{prev: prev, cur: map[string]*routev3.Route{}}
}

// decode is xdsres.Strict.Unmarshal into a new Route. Errors are not kept: a route that fails
// rejects its config, whose rejection is cached whole.
func (c *routeCache) decode(raw []byte) (*routev3.Route, error) {
	if c != nil {
		if r, ok := c.cur[string(raw)]; ok {
			return r, nil
		}
		if r, ok := c.prev[string(raw)]; ok {
			c.cur[string(raw)] = r
			return r, nil
		}
	}
	r := &routev3.Route{}
	if err := xdsres.Strict.Unmarshal(raw, r); err != nil {
		return nil, err
	}
	if c != nil {
		c.cur[string(raw)] = r
	}
	return r, nil
}
