package render

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/xdsres"
)

// claimer records who holds each name. Exclusive names ("<Kind>/<name>") are
// the config's own resources. Shared names may be held by any number of configs
// but exclude an exclusive one of the same name: a route table built from
// fragments versus a RouteConfiguration resource, a Secret read from Kubernetes
// versus a Secret resource.
//
// Clusters are the one exception to exclusive names: producers name EDS clusters after
// their backend ("<namespace>/<service>:<port>"), so two Ingresses routing to the same
// Service both define it. Byte-identical (proto.Equal) clusters are merged; a cluster of
// the same name that differs is a conflict like any other.
type claimer struct {
	redirects map[Key]claimant
	exclusive map[string]claimant
	shared    map[string]claimant
	clusters  map[string]*clusterv3.Cluster
	// chains are the filter-chain names and matches claimed on each listener,
	// by the listener's own config and by contributors alike.
	chains map[string]claimant
}

type claimant struct {
	config string
	what   string
}

// claim settles conflicts oldest first: candidates come in age order, so the
// first to claim a name keeps it and every later claimant is rejected whole.
// Configs held back for missing proxy ports still claim, so that allocating a
// port never flips a verdict.
func claim(candidates []*parsed, invalid map[string]*rejection, known map[string]SecretState, m *memo) ([]*parsed, map[string]*rejection, int) {
	// A contribution to another config's listener can only be judged once the
	// winners are known; rejecting it releases its claims, so claiming runs again
	// without it and a younger config it was blocking gets its turn.
	unfit := map[string]*rejection{}
	for {
		winners, conflicts := m.claimOnce(candidates, invalid, unfit)
		settled, rejected, notHere := settleChainFragments(winners, known)
		if len(rejected) == 0 {
			for name, r := range unfit {
				conflicts[name] = r
			}
			return settled, conflicts, notHere
		}
		for name, r := range rejected {
			unfit[name] = r
		}
	}
}

func claimOnce(candidates []*parsed, invalid, unfit map[string]*rejection, m *memo) ([]*parsed, map[string]*rejection) {
	c := claimer{redirects: map[Key]claimant{}, exclusive: map[string]claimant{}, shared: map[string]claimant{}, clusters: map[string]*clusterv3.Cluster{}, chains: map[string]claimant{}}
	conflicts := map[string]*rejection{}
	var winners []*parsed
	for _, p := range candidates {
		if invalid[p.cfg.Name] != nil || unfit[p.cfg.Name] != nil {
			continue
		}
		if rej := c.check(p, m); rej != nil {
			conflicts[p.cfg.Name] = rej
			continue
		}
		c.take(p)
		winners = append(winners, p)
	}
	return winners, conflicts
}

func conflict(mine string, holder claimant) *rejection {
	return reject(v1alpha1.ReasonConflict, "%s collides with %s of older NodeProxyConfig %q", mine, holder.what, holder.config)
}

// check runs before take so that a rejected config leaves no claim behind.
func (c *claimer) check(p *parsed, m *memo) *rejection {
	for _, r := range p.redirects {
		if h, ok := c.redirects[r.key]; ok {
			return conflict(fmt.Sprintf("redirect %q (%s)", r.name, r.key), h)
		}
	}
	for _, n := range p.claims.exclusive {
		if h, ok := c.exclusive[n.key]; ok {
			if n.cluster != nil && c.identicalCluster(n.cluster, m) {
				continue
			}
			return conflict(n.what, h)
		}
		if h, ok := c.shared[n.key]; ok {
			return conflict(n.what, h)
		}
	}
	for _, n := range p.claims.shared {
		if h, ok := c.exclusive[n.key]; ok {
			return conflict(n.what, h)
		}
	}
	for _, n := range append(ownChainKeys(p), contributedChainKeys(p)...) {
		if h, ok := c.chains[n.key]; ok {
			return conflict(n.what, h)
		}
	}
	return nil
}

func (c *claimer) take(p *parsed) {
	for _, r := range p.redirects {
		c.redirects[r.key] = claimant{config: p.cfg.Name, what: fmt.Sprintf("redirect %q (%s)", r.name, r.key)}
	}
	for _, n := range p.claims.exclusive {
		if _, held := c.exclusive[n.key]; !held { // an identical cluster stays with its oldest claimant
			c.exclusive[n.key] = claimant{config: p.cfg.Name, what: n.what}
		}
	}
	for _, cl := range p.clusters {
		if _, held := c.clusters[cl.GetName()]; !held {
			c.clusters[cl.GetName()] = cl
		}
	}
	for _, n := range p.claims.shared {
		if _, ok := c.shared[n.key]; !ok {
			c.shared[n.key] = claimant{config: p.cfg.Name, what: n.what}
		}
	}
	for _, n := range append(ownChainKeys(p), contributedChainKeys(p)...) {
		c.chains[n.key] = claimant{config: p.cfg.Name, what: n.what}
	}
}

func (c *claimer) identicalCluster(cl *clusterv3.Cluster, m *memo) bool {
	held := c.clusters[cl.GetName()]
	return held != nil && m.identical(held, cl)
}

type sharedName struct{ key, what string }

// claims are the names a config claims whatever else it meets, worked out once per
// parse: its exclusive resource names and its shared names. They depend on the
// names of its resources, fragments and Secret references only, which the copies
// render makes of a parse (applySecrets, onlyHere) keep.
type claims struct {
	// exclusive are in the order of names(p).
	exclusive []exclusiveName
	// shared are in the order of sharedNames(p): the fragments' tables first.
	shared []sharedName
}

// exclusiveName is a sharedName that only one config may hold, except for identical
// clusters: cluster is set for a cluster's name.
type exclusiveName struct {
	sharedName
	cluster *clusterv3.Cluster
}

func claimsOf(p *parsed) claims {
	var c claims
	clusters := map[string]*clusterv3.Cluster{}
	for _, cl := range p.clusters {
		clusters[xdsres.KindCluster+"/"+cl.GetName()] = cl
	}
	for _, n := range names(p) {
		c.exclusive = append(c.exclusive, exclusiveName{sharedName{n, describe(n)}, clusters[n]})
	}
	c.shared = sharedNames(p)
	return c
}

func sharedNames(p *parsed) []sharedName {
	out := make([]sharedName, 0, len(p.fragments)+len(p.secretRefs))
	for _, f := range p.fragments {
		out = append(out, sharedName{xdsres.KindRouteConfiguration + "/" + f.table, fmt.Sprintf("route fragments for table %q", f.table)})
	}
	for _, s := range p.secretRefs {
		out = append(out, sharedName{xdsres.KindSecret + "/" + s, fmt.Sprintf("Secret reference %q", s)})
	}
	return out
}

// names are the config's exclusive resource names as "<Kind>/<name>", the keys
// xdsres.ResourceError is matched with.
func names(p *parsed) []string {
	out := make([]string, 0, len(p.listeners)+len(p.routes)+len(p.clusters)+len(p.secrets))
	for _, l := range p.listeners {
		out = append(out, xdsres.KindListener+"/"+l.GetName())
	}
	for _, r := range p.routes {
		out = append(out, xdsres.KindRouteConfiguration+"/"+r.GetName())
	}
	for _, cl := range p.clusters {
		out = append(out, xdsres.KindCluster+"/"+cl.GetName())
	}
	for _, s := range p.secrets {
		out = append(out, xdsres.KindSecret+"/"+s.GetName())
	}
	return out
}

func describe(name string) string {
	kind, n, _ := strings.Cut(name, "/")
	return fmt.Sprintf("%s %q", kind, n)
}

// built is what build assembled.
type built struct {
	res xdsres.Resources
	// owners are, for each resource ("<Kind>/<name>"), the configs that produced it.
	owners map[string][]*parsed
	// derived are the resources render made itself rather than took from a
	// config ("<Kind>/<name>"): the SDS secrets of Kubernetes Secrets and the route
	// tables built from fragments. Whether a listener references one is only
	// known once every listener is merged; one that nothing references is left
	// out (Envoy would never ask for it) instead of being held against anyone.
	derived map[string]bool
}

// build assembles the xDS resources of the winners that are not held back,
// with the SDS secrets made from the Kubernetes Secrets they list and the route
// tables made from their fragments.
func build(winners []*parsed, known map[string]SecretState, m *memo) built {
	var res xdsres.Resources
	owners := map[string][]*parsed{}
	derived := map[string]bool{}
	tables := map[string]*table{}
	var tableNames []string
	contributions := map[string][]contribution{}
	for _, p := range winners {
		if p.held() {
			continue
		}
		for _, n := range p.claims.exclusive {
			owners[n.key] = append(owners[n.key], p)
		}
		res.Listeners = append(res.Listeners, p.listeners...)
		res.Routes = append(res.Routes, p.routes...)
		for _, n := range p.claims.exclusive {
			if n.cluster != nil && len(owners[n.key]) == 1 { // identical duplicates are served once
				res.Clusters = append(res.Clusters, n.cluster)
			}
		}
		res.Secrets = append(res.Secrets, p.secrets...)
		for _, ref := range p.secretRefs {
			for _, s := range known[ref].Resources {
				key := xdsres.KindSecret + "/" + s.GetName()
				if !derived[key] {
					derived[key] = true
					res.Secrets = append(res.Secrets, s)
				}
				owners[key] = append(owners[key], p)
			}
		}
		for _, f := range p.chainFragments {
			contributions[f.listener] = append(contributions[f.listener], contribution{config: p.cfg.Name, index: f.index, chains: f.chains})
			// A merged listener that still fails validation is blamed on everyone
			// who made it; settleChainFragments has already judged each part alone.
			key := xdsres.KindListener + "/" + f.listener
			if o := owners[key]; len(o) == 0 || o[len(o)-1] != p {
				owners[key] = append(o, p)
			}
		}
		for i := range p.fragments {
			// Fragments are taken by address: the memo knows a table by its fragments.
			f := &p.fragments[i]
			t := tables[f.table]
			if t == nil {
				t = &table{}
				tables[f.table] = t
				tableNames = append(tableNames, f.table)
			}
			t.fragments = append(t.fragments, f)
			key := p.claims.shared[i].key // the table's name as a claim
			if o := owners[key]; len(o) == 0 || o[len(o)-1] != p {
				owners[key] = append(o, p)
			}
		}
	}
	for _, name := range tableNames {
		res.Routes = append(res.Routes, m.routeConfiguration(name, tables[name]))
		derived[xdsres.KindRouteConfiguration+"/"+name] = true
	}
	res.Listeners = mergeChains(res.Listeners, contributions, m)
	sortByName(res.Listeners, (*listenerv3.Listener).GetName)
	sortByName(res.Routes, (*routev3.RouteConfiguration).GetName)
	sortByName(res.Clusters, (*clusterv3.Cluster).GetName)
	sortByName(res.Secrets, (*tlsv3.Secret).GetName)
	return built{res: res, owners: owners, derived: derived}
}

func sortByName[T any](s []T, name func(T) string) {
	slices.SortFunc(s, func(a, b T) int { return cmp.Compare(name(a), name(b)) })
}

// table is a route table built from fragments alone: render owns it whole, so
// no producer's RouteConfiguration settings need merging with anyone else's. A
// producer whose listener must exist before any route does (a Gateway listener
// with no routes attached yet) contributes a fragment with no routes.
type table struct {
	// fragments are what the table is made of, in the order build met them.
	// Their routes are gathered by host only when the table is made
	// (routeConfiguration): most renders find every table but one in the memo,
	// and gathering the routes of 10,000 configs anyway was 40% of a build.
	fragments []*fragment
}

// routeConfiguration makes one virtual host per host, named after it, with its
// routes ordered by precedence, ties broken by config name and position so the
// order never depends on input order. Hosts without routes are left out: Envoy
// answers 404 either way. Virtual hosts are sorted by host with "*" last, for
// determinism only, since Envoy picks a virtual host by domain specificity.
func (t *table) routeConfiguration(name string) *routev3.RouteConfiguration {
	byHost := map[string][]fragmentRoute{}
	for _, f := range t.fragments {
		byHost[f.host] = append(byHost[f.host], f.routes...)
	}
	hosts := make([]string, 0, len(byHost))
	for h, routes := range byHost {
		if len(routes) > 0 {
			hosts = append(hosts, h)
		}
	}
	slices.SortFunc(hosts, func(a, b string) int {
		if (a == "*") != (b == "*") {
			if a == "*" {
				return 1
			}
			return -1
		}
		return cmp.Compare(a, b)
	})
	rc := &routev3.RouteConfiguration{Name: name, VirtualHosts: make([]*routev3.VirtualHost, 0, len(hosts))}
	for _, h := range hosts {
		routes := byHost[h]
		slices.SortFunc(routes, func(a, b fragmentRoute) int {
			return cmp.Or(
				strings.Compare(a.precedence, b.precedence),
				cmp.Compare(a.config, b.config),
				cmp.Compare(a.fragment, b.fragment),
				cmp.Compare(a.index, b.index),
			)
		})
		vh := &routev3.VirtualHost{Name: h, Domains: []string{h}, Routes: make([]*routev3.Route, len(routes))}
		for i, r := range routes {
			vh.Routes[i] = r.route
		}
		rc.VirtualHosts = append(rc.VirtualHosts, vh)
	}
	return rc
}
