package gateway

import (
	"maps"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/types"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/portico-dev/portico/internal/lastorder"
)

// Memo keeps a translation's per-route work between passes, so that a pass
// after one route changed re-translates that route only: a route's rules are
// translated again when the route, a Service it names or the ReferenceGrants
// change; it is attached again when it, its rules, a Gateway it names or its
// namespace's labels change (attachmemo.go); its config is built again when
// its rules, its Gateway or the hostnames served beside it on the same
// listeners change. An unchanged
// config is the very same value as in the previous pass, which is what lets
// the NodeProxyConfig writer skip it without comparing it field by field.
//
// A Memo is used by one goroutine at a time (the controller's single worker).
type Memo struct {
	bodies   map[RouteKey]memoBody
	attaches map[RouteKey]memoAttach
	configs  map[string]memoConfig
	names    map[nameKey]string
	// order is the last pass's order of the configs, by name.
	order lastorder.Order[string]
	// The entries of each map that the current pass used: when a map holds
	// no more than that, none is stale and the sweep is skipped.
	bodiesSeen, attachesSeen, configsSeen int
	// last is what a delta pass needs of the last full pass (delta.go).
	last *lastPass
}

type nameKey struct {
	route RouteKey
	gw    types.NamespacedName
}

// configName is RouteConfigName, remembered.
func (t *translation) configName(r RouteKey, gw types.NamespacedName) string {
	if t.memo == nil {
		return RouteConfigName(r, gw)
	}
	k := nameKey{r, gw}
	n, ok := t.memo.names[k]
	if !ok {
		n = RouteConfigName(r, gw)
		t.memo.names[k] = n
	}
	return n
}

type memoBody struct {
	rv, grants string
	deps       []dep
	body       *body
}

// dep is a Service a body was made with, and its resourceVersion then ("-": missing).
type dep struct {
	key types.NamespacedName
	rv  string
}

type memoConfig struct {
	sig    string
	body   *body
	config Config
}

// NewMemo returns an empty memo.
func NewMemo() *Memo {
	return &Memo{bodies: map[RouteKey]memoBody{}, attaches: map[RouteKey]memoAttach{}, configs: map[string]memoConfig{},
		names: map[nameKey]string{}}
}

// Translate is the package's Translate, re-using what m kept.
func (m *Memo) Translate(in Input) Output {
	m.bodiesSeen, m.attachesSeen, m.configsSeen = 0, 0, 0
	t := newTranslation(in)
	t.memo = m
	out := t.run()
	m.last = &lastPass{byKey: t.byKey, hosts: t.hosts, grantSig: t.grantsSig()}
	if len(m.bodies) > m.bodiesSeen || len(m.attaches) > m.attachesSeen {
		routes := make(map[RouteKey]bool, len(t.routes))
		for _, r := range t.routes {
			routes[r.key] = true
		}
		sweep(m.bodies, routes)
		sweep(m.attaches, routes)
	}
	if len(m.configs) > m.configsSeen {
		configs := make(map[string]bool, len(t.attachments))
		for _, a := range t.attachments {
			configs[a.config] = true
		}
		sweep(m.configs, configs)
	}
	return out
}

// sweep deletes the entries of m whose key is not in keep.
func sweep[K comparable, V any](m map[K]V, keep map[K]bool) {
	maps.DeleteFunc(m, func(k K, _ V) bool { return !keep[k] })
}

// grantsSig is the same for the same grants in any order: a cache lists
// them in map order.
func (t *translation) grantsSig() string {
	if t.grantSig == "" {
		each := make([]string, 0, len(t.in.Grants))
		for _, g := range t.in.Grants {
			each = append(each, string(g.UID)+":"+g.ResourceVersion)
		}
		slices.Sort(each)
		t.grantSig = "g" + strings.Join(each, ",")
	}
	return t.grantSig
}

// cachedBody returns the memoised body of a route, or makes it. A route of
// the same resourceVersion names the same Services; the body is re-used while
// those and the grants are as they were.
func (t *translation) cachedBody(key RouteKey, rv string, svcs func() []types.NamespacedName, build func() *body) *body {
	if t.memo == nil || rv == "" {
		return build()
	}
	t.memo.bodiesSeen++
	if mb, ok := t.memo.bodies[key]; ok && mb.rv == rv && mb.grants == t.grantsSig() && t.depsSame(mb.deps) {
		return mb.body
	}
	bd := build()
	keys := svcs()
	deps := make([]dep, len(keys))
	for i, k := range keys {
		deps[i] = dep{k, t.serviceRV(k)}
	}
	t.memo.bodies[key] = memoBody{rv: rv, grants: t.grantsSig(), deps: deps, body: bd}
	return bd
}

func (t *translation) serviceRV(k types.NamespacedName) string {
	if s := t.in.Services[k]; s != nil {
		return s.ResourceVersion
	}
	return "-"
}

func (t *translation) depsSame(deps []dep) bool {
	for _, d := range deps {
		if t.serviceRV(d.key) != d.rv {
			return false
		}
	}
	return true
}

// configSig is everything an attachment's config depends on besides its body.
func configSig(a *attachment, hosts map[*listener]map[string]bool, sni map[*attachment]map[*listener][]string) string {
	var b strings.Builder
	b.WriteString(a.gw.obj.ResourceVersion)
	b.WriteString(selectorString(a.gw))
	for _, x := range a.listeners {
		b.WriteByte('|')
		b.WriteString(x.l.name)
		b.WriteString(strconv.FormatBool(x.l.servable))
		b.WriteString(strings.Join(x.hosts, ","))
		b.WriteByte(';')
		if !anyWildcard(x.hosts) {
			continue // only "*" and wildcard hostnames are copied onto others
		}
		// In a fixed order: a signature built in map order differs between two
		// passes over the same inputs and rebuilds configs for nothing.
		for _, h := range slices.Sorted(maps.Keys(hosts[x.l])) {
			for _, own := range x.hosts {
				if h != own && covers(own, h) {
					b.WriteString(h)
					b.WriteByte(',')
				}
			}
		}
		b.WriteByte(';')
		b.WriteString(strings.Join(sni[a][x.l], ","))
	}
	return b.String()
}

func selectorString(g *gateway) string {
	if g.selector == nil {
		return ""
	}
	return g.selector.String()
}

// The Services a route's rules name (backends and mirrors), for bodySig.
func backendKey(ns string, ref gatewayv1.BackendObjectReference) (types.NamespacedName, bool) {
	if (ref.Group != nil && *ref.Group != "") || (ref.Kind != nil && *ref.Kind != "Service") {
		return types.NamespacedName{}, false
	}
	if ref.Namespace != nil {
		ns = string(*ref.Namespace)
	}
	return types.NamespacedName{Namespace: ns, Name: string(ref.Name)}, true
}

func httpServices(r *gatewayv1.HTTPRoute) []types.NamespacedName {
	var out []types.NamespacedName
	add := func(ref gatewayv1.BackendObjectReference) {
		if k, ok := backendKey(r.Namespace, ref); ok {
			out = append(out, k)
		}
	}
	for _, rule := range r.Spec.Rules {
		for _, f := range rule.Filters {
			if f.RequestMirror != nil {
				add(f.RequestMirror.BackendRef)
			}
		}
		for _, b := range rule.BackendRefs {
			add(b.BackendObjectReference)
		}
	}
	return out
}

func grpcServices(r *gatewayv1.GRPCRoute) []types.NamespacedName {
	var out []types.NamespacedName
	for _, rule := range r.Spec.Rules {
		for _, f := range rule.Filters {
			if f.RequestMirror != nil {
				if k, ok := backendKey(r.Namespace, f.RequestMirror.BackendRef); ok {
					out = append(out, k)
				}
			}
		}
		for _, b := range rule.BackendRefs {
			if k, ok := backendKey(r.Namespace, b.BackendObjectReference); ok {
				out = append(out, k)
			}
		}
	}
	return out
}

func tlsServices(r *gatewayv1.TLSRoute) []types.NamespacedName {
	var out []types.NamespacedName
	for _, rule := range r.Spec.Rules {
		for _, b := range rule.BackendRefs {
			if k, ok := backendKey(r.Namespace, b.BackendObjectReference); ok {
				out = append(out, k)
			}
		}
	}
	return out
}

func anyWildcard(hosts []string) bool {
	for _, h := range hosts {
		if strings.HasPrefix(h, "*") {
			return true
		}
	}
	return false
}
