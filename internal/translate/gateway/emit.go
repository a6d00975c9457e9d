package gateway

import (
	"cmp"
	"slices"
	"strings"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/envoykit"
	"github.com/portico-dev/portico/internal/npcwriter"
)

// emitRoutes writes the config of every attachment.
//
// Envoy picks a virtual host by the request's Host before it looks at routes,
// while the spec picks among the routes of every hostname that matches. So the
// routes of a hostname are also served on each more specific hostname of the
// same listener ("*.example.com" routes on the "foo.example.com" virtual
// host), after that hostname's own routes: the precedence key starts with
// the hostname the route was written for.
func (t *translation) emitRoutes() {
	hosts := t.listenerHosts()
	t.hosts = hosts
	sni := t.claimSNI()
	t.routeConfigs = make([]Config, 0, len(t.attachments))
	for _, a := range t.attachments {
		if t.memo == nil {
			t.routeConfigs = append(t.routeConfigs, t.emit(a, hosts, sni))
			continue
		}
		t.memo.configsSeen++
		sig := configSig(a, hosts, sni)
		if mc, ok := t.memo.configs[a.config]; ok && mc.sig == sig && mc.body == a.r.body {
			t.routeConfigs = append(t.routeConfigs, mc.config)
			continue
		}
		c := t.emit(a, hosts, sni)
		t.memo.configs[a.config] = memoConfig{sig: sig, body: a.r.body, config: c}
		t.routeConfigs = append(t.routeConfigs, c)
	}
}

// listenerHosts are the hostnames each listener serves routes for, after
// listener isolation: a hostname belongs to the listener of the port whose own
// hostname matches it most specifically.
func (t *translation) listenerHosts() map[*listener]map[string]bool {
	out := map[*listener]map[string]bool{}
	for _, a := range t.attachments {
		if a.r.body.tcp != nil {
			continue
		}
		keepOwned(a)
		for _, x := range a.listeners {
			if out[x.l] == nil {
				out[x.l] = map[string]bool{}
			}
			for _, h := range x.hosts {
				out[x.l][h] = true
			}
		}
	}
	return out
}

// keepOwned leaves on each of a's listeners the hostnames that listener owns.
func keepOwned(a *attachment) {
	for i, x := range a.listeners {
		kept := x.hosts[:0:0]
		for _, h := range x.hosts {
			if owner(x.l, h) == x.l {
				kept = append(kept, h)
			}
		}
		a.listeners[i].hosts = kept
	}
}

// owner is the servable HTTP listener on l's port whose hostname matches h
// most specifically (HTTPS listeners are told apart by SNI already).
func owner(l *listener, h string) *listener {
	if l.protocol != gatewayv1.HTTPProtocolType {
		return l
	}
	best, bestScore := l, specificity(l.hostname)
	for _, o := range l.gw.listeners {
		if o == l || !o.servable || o.port != l.port || o.protocol != l.protocol || !hostMatches(o.hostname, h) {
			continue
		}
		if s := specificity(o.hostname); s > bestScore {
			best, bestScore = o, s
		}
	}
	return best
}

// specificity orders listener hostnames: exact, then longer wildcards, then none.
func specificity(h string) int {
	switch {
	case h == "":
		return 0
	case strings.HasPrefix(h, "*."):
		return len(h)
	}
	return 1000 + len(h)
}

func hostMatches(listenerHost, h string) bool {
	return listenerHost == "" || listenerHost == h || wildcardCovers(listenerHost, h)
}

// hostKey is the hostname part of a precedence key: characters of a
// non-wildcard hostname, then of the hostname, most first ("*" has neither).
func hostKey(h string) string {
	exact := 0
	if !strings.HasPrefix(h, "*") {
		exact = len(h)
	}
	all := len(h)
	if h == "*" {
		all = 0
	}
	return envoykit.NewKey(8).Desc(int64(exact), 999, 3).Desc(int64(all), 999, 3).String()
}

type fragKey struct{ table, host string }

func (t *translation) emit(a *attachment, hosts map[*listener]map[string]bool, sni map[*attachment]map[*listener][]string) Config {
	r := a.r
	spec := v1alpha1.NodeProxyConfigSpec{NodeSelector: a.gw.selector}
	frags := map[fragKey][]v1alpha1.FragmentRoute{}
	add := func(table, host, own string) {
		hk := hostKey(own)
		for _, k := range r.body.routes {
			frags[fragKey{table, host}] = append(frags[fragKey{table, host}],
				v1alpha1.FragmentRoute{Precedence: hk + "." + k.key, Route: k.raw})
		}
	}
	for _, x := range a.listeners {
		if !x.l.servable {
			continue
		}
		if r.body.tcp != nil {
			if fc, ok := t.chain(a, x.l, sni[a][x.l]); ok {
				spec.FilterChainFragments = append(spec.FilterChainFragments, fc)
			}
			continue
		}
		table := x.l.table()
		for _, h := range x.hosts {
			add(table, h, h)
			for other := range hosts[x.l] {
				if other != h && covers(h, other) && !slices.Contains(x.hosts, other) {
					add(table, other, h)
				}
			}
		}
	}
	keys := make([]fragKey, 0, len(frags))
	for k := range frags {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b fragKey) int { return cmp.Or(cmp.Compare(a.table, b.table), cmp.Compare(a.host, b.host)) })
	for _, k := range keys {
		routes := frags[k]
		slices.SortFunc(routes, func(a, b v1alpha1.FragmentRoute) int { return strings.Compare(a.Precedence, b.Precedence) })
		spec.RouteFragments = append(spec.RouteFragments, v1alpha1.RouteFragment{RouteTable: k.table, Host: k.host, Routes: routes})
	}
	addBackends(&spec, r.body.backendRes)
	return Config{Name: a.config, Source: npcwriter.Source{Kind: r.key.Kind, Namespace: r.key.Namespace, Name: r.key.Name},
		Gateway: a.gw.key, Spec: spec}
}

// addBackends adds a route's clusters and backend Services, shared by every
// config of the route (capacity capped, so an append copies).
func addBackends(spec *v1alpha1.NodeProxyConfigSpec, br backendResources) {
	if len(br.clusters) == 0 {
		return
	}
	spec.Envoy = &v1alpha1.EnvoyResources{Resources: slices.Clip(br.clusters), BackendServices: slices.Clip(br.services)}
}

// backendResources are a route's backends as its configs carry them: the
// clusters marshalled, in name order, and the backend Services.
type backendResources struct {
	clusters []v1alpha1.EnvoyResource
	services []v1alpha1.BackendService
}

// seal makes bd's backendResources once its rules are translated. The memo
// keeps a body per route: JSON shared between the routes that use a cluster
// is far smaller than each body's own cluster structures.
func (t *translation) seal(bd *body) {
	b := bd.b
	bd.b = nil
	if len(b.clusters) == 0 {
		return
	}
	names := make([]string, 0, len(b.clusters))
	for n := range b.clusters {
		names = append(names, n)
	}
	slices.Sort(names)
	res := make([]v1alpha1.EnvoyResource, 0, len(names))
	for _, n := range names {
		r, ok := t.clusterJSON[n]
		if !ok {
			// Clusters are named after what they are: the same name is the
			// same bytes, marshalled once per translation.
			r = envoykit.Resource(envoykit.TypeCluster, b.clusters[n])
			t.clusterJSON[n] = r
		}
		res = append(res, r)
	}
	bd.backendRes = backendResources{clusters: res, services: envoykit.BackendServices(b.services)}
}

// claimSNI settles which TLSRoute serves each server name on each Envoy
// listener: the HTTPS listeners' own hostnames first, then routes oldest
// first. Envoy refuses a listener on which two chains match the same name.
func (t *translation) claimSNI() map[*attachment]map[*listener][]string {
	taken := map[string]bool{}
	claim := func(l *listener, h string) bool {
		k := l.gw.envoyListener(l.port) + "\x00" + h
		if taken[k] {
			return false
		}
		taken[k] = true
		return true
	}
	for _, g := range t.gws {
		for _, l := range g.listeners {
			if l.servable && l.protocol == gatewayv1.HTTPSProtocolType {
				claim(l, l.hostname)
			}
		}
	}
	// Oldest route first: t.attachments are in the input's order.
	var tcp []*attachment
	for _, a := range t.attachments {
		if a.r.body.tcp != nil {
			tcp = append(tcp, a)
		}
	}
	slices.SortStableFunc(tcp, func(a, b *attachment) int {
		return cmp.Or(olderFirst(a.r.meta, b.r.meta), strings.Compare(a.r.key.Kind, b.r.key.Kind))
	})
	out := map[*attachment]map[*listener][]string{}
	for _, a := range tcp {
		out[a] = map[*listener][]string{}
		for _, x := range a.listeners {
			for _, h := range x.hosts {
				sn := h
				if h == "*" {
					sn = ""
				}
				if claim(x.l, sn) {
					out[a][x.l] = append(out[a][x.l], sn)
				}
			}
		}
	}
	return out
}

// chain is a TLSRoute's filter chain on a TLS listener: the server names it
// won, forwarded by tcp_proxy; a terminating listener adds its certificates.
func (t *translation) chain(a *attachment, l *listener, names []string) (v1alpha1.FilterChainFragment, bool) {
	if len(names) == 0 {
		return v1alpha1.FilterChainFragment{}, false
	}
	r := a.r
	fc := envoykit.FilterChain{Name: r.key.Namespace + "/" + r.key.Name + "/" + l.name,
		Filters: []envoykit.NamedTyped{envoykit.TCPProxyFilter(fc0(r, l), r.body.tcp.cluster, r.body.tcp.weighted)}}
	var sn []string
	for _, n := range names {
		if n != "" {
			sn = append(sn, n)
		}
	}
	if len(sn) > 0 {
		slices.Sort(sn)
		fc.FilterChainMatch = &envoykit.FilterChainMatch{ServerNames: sn}
	}
	if l.mode == gatewayv1.TLSModeTerminate {
		fc.TransportSocket = envoykit.DownstreamTLS(nil, l.secrets...)
	}
	return v1alpha1.FilterChainFragment{Listener: l.gw.envoyListener(l.port), FilterChains: []apiextensionsv1.JSON{envoykit.Raw(fc)}}, true
}

func fc0(r *route, l *listener) string { return r.key.Namespace + "/" + r.key.Name + "/" + l.name }
