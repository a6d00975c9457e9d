package render

import (
	"cmp"
	"maps"
	"slices"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/portico-dev/portico/apis/v1alpha1"
)

// A delta render answers the most common change there is, a route config
// rewritten with other routes (one HTTPRoute edited), in what that config
// touches. Even with every memo hit, a Render visits every config to settle
// conflicts, gather tables and list what is applied: at 10,000 configs that
// is most of an agent's tenth of a second between a route's write and its
// xDS push. A config that claims what it claimed (sameClaims: the same
// tables, identical clusters) and asks for the same Services changes
// nothing but the route tables its fragments are in and its own Applied
// entry: conflicts are settled by claims, and the tables are functions of
// their fragments. So those tables are made again from the last render's
// fragments with the config's new ones in place of its old, and checked as
// Render would check them.
//
// RenderChanged refuses (false) whatever it cannot prove to be that: a
// config the last render did not apply cleanly, one that brings or brought
// anything but route fragments, clusters and backend Services (listeners,
// redirects, chains, Secrets, announcements), one that fails to parse or
// claims something else, and tables that no longer pass validation. The
// caller guarantees the rest: since the last render, nothing changed but
// these configs' specs (no config added, deleted or relabelled, no node
// label, port or Secret change). TestRenderChangedEqualsRender holds it to
// Render of the same input.

// lastRender is what a delta render takes from the last render.
type lastRender struct {
	out Output
}

// RenderChanged renders the last input with changed in place of the configs
// of the same names, and reports false when a Render is needed instead (the
// Renderer then holds what it held).
func (r *Renderer) RenderChanged(changed []*v1alpha1.NodeProxyConfig) (Output, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last == nil {
		return Output{}, false
	}
	m := r.memo
	var swaps []*parsedEntry
	tables := map[string][]*fragment{}
	for _, cfg := range changed {
		e := r.cache[cfg.Name]
		if e == nil || e.p == nil || e.rej != nil || e.uid != cfg.UID || cfg.ResourceVersion == "" ||
			!maps.Equal(e.labels, cfg.Labels) || !onlyRoutes(e.p) || !r.last.applied(cfg.Name) {
			return Output{}, false
		}
		own := *cfg
		routes := newRouteCache(e.routes)
		p, rej := parse(&own, nil, routes)
		if rej != nil || !onlyRoutes(p) || !m.sameClaims(e.p, p) ||
			!slices.EqualFunc(e.p.backends, p.backends, func(a, b v1alpha1.BackendService) bool { return sameBackend(a, b) }) {
			return Output{}, false
		}
		for i := range p.fragments {
			name := p.fragments[i].table
			frags, ok := tables[name]
			if !ok {
				t, found := m.tables.get(name)
				if !found {
					return Output{}, false
				}
				frags = slices.Clone(t.fragments)
			}
			at := slices.Index(frags, &e.p.fragments[i])
			if at < 0 {
				return Output{}, false
			}
			frags[at] = &p.fragments[i]
			tables[name] = frags
		}
		swaps = append(swaps, &parsedEntry{uid: cfg.UID, generation: cfg.Generation, labels: e.labels, rv: cfg.ResourceVersion,
			p: p, routes: routes.cur})
	}
	// Every table is made and checked before anything is kept: a refusal
	// leaves the Renderer as the last render did.
	out := r.last.out
	out.Resources.Routes = slices.Clone(out.Resources.Routes)
	made := make([]*memoTable, 0, len(tables))
	for _, name := range slices.Sorted(maps.Keys(tables)) {
		at, found := slices.BinarySearchFunc(out.Resources.Routes, name, func(rc *routev3.RouteConfiguration, n string) int {
			return cmp.Compare(rc.GetName(), n)
		})
		if !found {
			return Output{}, false // left out as unused: Render knows why
		}
		rc := (&table{fragments: tables[name]}).routeConfiguration(name)
		if !m.deep.Passes(rc) {
			return Output{}, false // Render rejects the culprit
		}
		out.Resources.Routes[at] = rc
		made = append(made, &memoTable{fragments: tables[name], rc: rc})
	}
	for _, t := range made {
		m.tables.put(t.rc.GetName(), t)
	}
	out.Applied = slices.Clone(out.Applied)
	for _, e := range swaps {
		r.cache[e.p.cfg.Name] = e
		at, _ := slices.BinarySearchFunc(out.Applied, e.p.cfg.Name, func(a Applied, n string) int { return cmp.Compare(a.Name, n) })
		out.Applied[at] = Applied{Name: e.p.cfg.Name, Generation: e.generation, ResourceVersion: e.rv}
	}
	m.hits.delta++
	r.last = &lastRender{out: out}
	return cloneOutput(out), true
}

// applied reports whether the last render applied the config named whole.
func (l *lastRender) applied(name string) bool {
	_, found := slices.BinarySearchFunc(l.out.Applied, name, func(a Applied, n string) int { return cmp.Compare(a.Name, n) })
	return found
}

// onlyRoutes reports whether a parse brings nothing but route fragments,
// clusters and backend Services, and waits for nothing.
func onlyRoutes(p *parsed) bool {
	return len(p.listeners)+len(p.routes)+len(p.secrets)+len(p.redirects)+len(p.chainFragments)+
		len(p.secretRefs)+len(p.announcements)+len(p.missingPorts) == 0 && !p.waitSecrets
}

// cloneOutput copies the slices of out a caller may change in place, so that
// the Renderer's copy stays what it served.
func cloneOutput(out Output) Output {
	out.Applied = slices.Clone(out.Applied)
	out.Rejected = slices.Clone(out.Rejected)
	out.Resources.Routes = slices.Clone(out.Resources.Routes)
	return out
}
