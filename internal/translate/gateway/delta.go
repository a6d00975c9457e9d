package gateway

import (
	"maps"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// A delta pass translates only the HTTPRoutes whose rules changed, the most
// common change there is: at 10,000 routes a full pass still visits every
// route, listener hostname and config to find the one that moved (a tenth of
// a second), while the rules of one route decide nothing but that route's
// configs and status. A route's rules do not move where it attaches (its
// parentRefs and hostnames, its namespace and the Gateways do), which other
// hostnames its virtual hosts copy (those served on the same listeners), or
// any other route's config: precedence keys are per route, and clusters are
// per config. So when only rules changed, the remembered attachment stands,
// and the new body is emitted onto it with the last full pass's listeners.
//
// TranslateChanged refuses (false) whatever it cannot prove unchanged from
// what it is given: a route it did not attach before, one whose parentRefs,
// hostnames or namespace labels moved, a Gateway it names whose spec is not
// the one of the last pass, other ReferenceGrants, and a route whose rules are,
// or were, all invalid (Accepted changes, so does attachedRoutes). The caller
// guarantees the rest: nothing but these routes' specs changed since the last
// Translate (no Gateway, class, Service, Secret or other route event).
// TestDeltaEqualsFullTranslation holds it to a full translation.

// lastPass is what a delta pass takes from the last full pass.
type lastPass struct {
	byKey    map[types.NamespacedName]*gateway
	hosts    map[*listener]map[string]bool
	grantSig string
}

// Changes is the input of a delta pass.
type Changes struct {
	// HTTPRoutes are the routes whose spec changed, as they are now, each once.
	HTTPRoutes []*gatewayv1.HTTPRoute
	// Gateways are the Gateways as they are now (at least those the routes
	// name), by key.
	Gateways map[types.NamespacedName]*gatewayv1.Gateway
	// Grants are all the ReferenceGrants, as in Input.
	Grants []*gatewayv1.ReferenceGrant
	// Namespaces are the labels of (at least) the routes' namespaces.
	Namespaces map[string]map[string]string
	// Services are (at least) the Services the routes name that exist.
	Services map[types.NamespacedName]*corev1.Service
}

// Delta is what a delta pass changed.
type Delta struct {
	// Configs are the routes' configs that differ from the last pass's.
	Configs []Config
	// Routes are the statuses of every route of Changes that has parents of
	// Portico's, as in Output.Routes.
	Routes map[RouteKey][]ParentStatus
}

// deltaRoute is one route of a delta, ready to be remembered.
type deltaRoute struct {
	key     RouteKey
	attach  memoAttach
	configs []memoConfig
}

// TranslateChanged translates the routes of ch onto the last pass's
// attachments, and reports false (m unchanged but for its bodies) when a full
// Translate is needed instead.
func (m *Memo) TranslateChanged(ch Changes) (Delta, bool) {
	if m.last == nil {
		return Delta{}, false
	}
	t := newTranslation(Input{Grants: ch.Grants, Services: ch.Services, Namespaces: ch.Namespaces})
	t.memo, t.byKey = m, m.last.byKey
	if t.grantsSig() != m.last.grantSig {
		return Delta{}, false
	}
	done := make([]deltaRoute, 0, len(ch.HTTPRoutes))
	for _, r := range ch.HTTPRoutes {
		d, ok := t.deltaRoute(r, ch.Gateways)
		if !ok {
			return Delta{}, false
		}
		done = append(done, d)
	}
	// Every route held: only now is the memo changed, so that a refusal
	// leaves it as the last pass did.
	out := Delta{Routes: make(map[RouteKey][]ParentStatus, len(done))}
	for _, d := range done {
		m.attaches[d.key] = d.attach
		if d.attach.statuses != nil {
			out.Routes[d.key] = d.attach.statuses
		}
		for _, mc := range d.configs {
			if old, ok := m.configs[mc.config.Name]; ok && old.sig == mc.sig && old.body == mc.body {
				continue
			}
			m.configs[mc.config.Name] = mc
			out.Configs = append(out.Configs, mc.config)
		}
	}
	return out, true
}

// deltaRoute re-translates r's rules onto its remembered attachment.
func (t *translation) deltaRoute(r *gatewayv1.HTTPRoute, gws map[types.NamespacedName]*gatewayv1.Gateway) (deltaRoute, bool) {
	key := RouteKey{KindHTTPRoute, r.Namespace, r.Name}
	ma, ok := t.memo.attaches[key]
	if !ok || r.ResourceVersion == "" || ma.spec != attachSpec(r.Spec.ParentRefs, r.Spec.Hostnames) ||
		!maps.Equal(ma.ns, t.in.Namespaces[r.Namespace]) || ma.body.invalid != nil || ma.body.tcp != nil {
		return deltaRoute{}, false
	}
	rt := &route{key: key, meta: r, parents: r.Spec.ParentRefs, hostnames: r.Spec.Hostnames}
	for _, ref := range rt.parents {
		if g := t.parentGateway(rt, ref); g != nil {
			// The spec, not the resourceVersion: the controller's own status
			// writes move that after every pass that reports the Gateway.
			if cur := gws[g.key]; cur == nil || cur.UID != g.obj.UID || cur.Generation != g.obj.Generation {
				return deltaRoute{}, false
			}
		}
	}
	rt.body = t.cachedBody(key, r.ResourceVersion, func() []types.NamespacedName { return httpServices(r) },
		func() *body { return t.httpBody(r) })
	if rt.body.invalid != nil {
		return deltaRoute{}, false
	}
	d := deltaRoute{key: key, attach: ma}
	d.attach.rv, d.attach.body = r.ResourceVersion, rt.body
	// Accepted came from the listeners and stands; the rest is the body's.
	if ma.statuses != nil {
		d.attach.statuses = make([]ParentStatus, len(ma.statuses))
		for i, st := range ma.statuses {
			conds := []Condition{st.Conditions[0], rt.body.resolved}
			if rt.body.partial != nil {
				conds = append(conds, *rt.body.partial)
			}
			d.attach.statuses[i] = ParentStatus{Ref: st.Ref, Config: st.Config, Conditions: conds}
		}
	}
	for _, at := range ma.atts {
		g := t.byKey[at.gw]
		if g == nil {
			return deltaRoute{}, false
		}
		a := &attachment{r: rt, gw: g, config: at.config, listeners: make([]attached, len(at.listeners))}
		for i, x := range at.listeners {
			a.listeners[i] = attached{l: g.listeners[x.index], hosts: x.hosts}
		}
		keepOwned(a)
		d.configs = append(d.configs, memoConfig{sig: configSig(a, t.memo.last.hosts, nil), body: rt.body,
			config: t.emit(a, t.memo.last.hosts, nil)})
	}
	return d, true
}
