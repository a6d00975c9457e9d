package ingress

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/envoykit"
)

// Ports the load balancer Services expose.
const (
	HTTPPort  = 80
	HTTPSPort = 443
)

// listenerSet is the HTTP and HTTPS listener pair of one load balancer Service:
// the shared one, or a dedicated Ingress's own.
type listenerSet struct {
	name      string
	addresses []string
	// sni maps each TLS host to the chain serving it; the first (oldest) Ingress
	// to name a host decides its certificate.
	sni    map[string]*chain
	chains map[chainKey]*chain
	// fragments: the set's HTTPS listener is defined without filter chains and each
	// Ingress contributes its own as filter-chain fragments in its own config. The
	// shared set does this, so that its config stays the same size however many TLS
	// hosts there are, and one Ingress's certificate change is one small write.
	fragments bool
	// fallback serves clients whose SNI no chain names (spec.tls entries without hosts).
	fallback *chain
}

// chainKey: one chain per Ingress and Secret, so that each chain lives in its
// owner's config.
type chainKey struct {
	owner  types.NamespacedName
	secret string
}

type chain struct {
	secret string
	owner  types.NamespacedName
	hosts  []string
}

func newListenerSet(name string, addresses []string) *listenerSet {
	return &listenerSet{name: name, addresses: addresses, sni: map[string]*chain{}, chains: map[chainKey]*chain{}}
}

// tableNames are the route tables of a listener set; https is empty when the set
// has no TLS listener, so that no route is attached to a table nothing serves.
type tableNames struct{ http, https string }

func (ls *listenerSet) hasTLS() bool { return len(ls.chains) > 0 || ls.fallback != nil }

func (ls *listenerSet) tables() tableNames {
	t := tableNames{http: ls.name + "/http"}
	if ls.hasTLS() {
		t.https = ls.name + "/https"
	}
	return t
}

// tlsCover is which of an Ingress's hosts are served over TLS.
type tlsCover struct {
	hosts map[string]bool
	all   bool // a spec.tls entry without hosts: every host of the Ingress
}

func (c tlsCover) covers(host string) bool {
	if c.all || c.hosts[host] {
		return true
	}
	// A wildcard certificate host covers hosts one label below it.
	if _, rest, ok := strings.Cut(host, "."); ok && host != "*" {
		return c.hosts["*."+rest]
	}
	return false
}

// addTLS claims ing's spec.tls hosts and returns the hosts it got. denied are
// hosts another namespace owns on this (shared) listener set.
//
// A tls entry without hosts means "every host of this Ingress". On a dedicated
// listener that is the listener's default certificate. On the shared listener
// it covers the Ingress's own named hosts by SNI and nothing else: were it the
// listener's default, one tenant's certificate would be presented to every
// client of every other tenant whose SNI matched no chain. The shared default
// certificate is the IngressClass's to set (Input.DefaultCertificate).
func (ls *listenerSet) addTLS(ing *networkingv1.Ingress, secrets map[types.NamespacedName]bool, denied map[string]types.NamespacedName) (tlsCover, []Problem) {
	cover := tlsCover{hosts: map[string]bool{}}
	var problems []Problem
	key := types.NamespacedName{Namespace: ing.Namespace, Name: ing.Name}
	for i, t := range ing.Spec.TLS {
		field := fmt.Sprintf("spec.tls[%d]", i)
		if t.SecretName == "" {
			problems = append(problems, Problem{ReasonTLSSecretNotFound, field + ".secretName", "no secretName: the hosts are not served over HTTPS"})
			continue
		}
		sk := types.NamespacedName{Namespace: ing.Namespace, Name: t.SecretName}
		if !secrets[sk] {
			problems = append(problems, Problem{ReasonTLSSecretNotFound, field + ".secretName",
				fmt.Sprintf("Secret %s not found: hosts %v are not served over HTTPS", sk, t.Hosts)})
			continue
		}
		secret := sk.String()
		hosts := t.Hosts
		if len(hosts) == 0 && !ls.fragments {
			problems = append(problems, ls.addFallback(secret, key, field, &cover)...)
			continue
		}
		if len(hosts) == 0 {
			hosts = namedHosts(ing, denied)
			if len(hosts) == 0 {
				problems = append(problems, Problem{ReasonTLSConflict, field, "a tls entry without hosts covers this Ingress's named hosts, and it has none it may serve: " +
					"rules without a host cannot be matched by SNI on the shared load balancer (its default certificate is set on the IngressClass)"})
				continue
			}
		}
		for j, h := range hosts {
			h = strings.ToLower(h)
			hostField := fmt.Sprintf("%s.hosts[%d]", field, j)
			if len(t.Hosts) == 0 {
				hostField = field
			}
			if owner, taken := denied[h]; taken {
				problems = append(problems, hostConflict(hostField, h, owner))
				continue
			}
			if have := ls.sni[h]; have != nil {
				if have.secret == secret {
					cover.hosts[h] = true
				} else {
					problems = append(problems, Problem{ReasonTLSConflict, hostField,
						fmt.Sprintf("host %s is already served with Secret %s by Ingress %s", h, have.secret, have.owner)})
				}
				continue
			}
			c := ls.chains[chainKey{key, secret}]
			if c == nil {
				c = &chain{secret: secret, owner: key}
				ls.chains[chainKey{key, secret}] = c
			}
			c.hosts = append(c.hosts, h)
			ls.sni[h] = c
			cover.hosts[h] = true
		}
	}
	return cover, problems
}

// addFallback makes secret the default certificate of a dedicated listener.
func (ls *listenerSet) addFallback(secret string, owner types.NamespacedName, field string, cover *tlsCover) []Problem {
	switch {
	case ls.fallback == nil:
		ls.fallback = &chain{secret: secret, owner: owner}
		cover.all = true
	case ls.fallback.secret == secret:
		cover.all = true
	default:
		return []Problem{{ReasonTLSConflict, field,
			fmt.Sprintf("the default certificate (a tls entry without hosts) is already Secret %s", ls.fallback.secret)}}
	}
	return nil
}

// namedHosts are the hosts ing's rules name, other than the catch-all and those
// another namespace owns, in rule order.
func namedHosts(ing *networkingv1.Ingress, denied map[string]types.NamespacedName) []string {
	var out []string
	for _, r := range ing.Spec.Rules {
		h := hostOf(r.Host)
		if _, taken := denied[h]; h == "*" || taken || slices.Contains(out, h) {
			continue
		}
		out = append(out, h)
	}
	return out
}

// addTo adds the listeners, their redirects and their (empty) route tables to spec.
func (ls *listenerSet) addTo(spec *v1alpha1.NodeProxyConfigSpec) {
	t := ls.tables()
	if spec.Envoy == nil {
		spec.Envoy = &v1alpha1.EnvoyResources{}
	}
	addrs := slices.Clone(ls.addresses)
	slices.Sort(addrs)
	addrs = slices.Compact(addrs)

	httpName := ls.name + "/http"
	http := envoykit.NewListener(httpName)
	http.FilterChains = []envoykit.FilterChain{{Filters: []envoykit.NamedTyped{envoykit.HCMFilter(httpName, t.http)}}}
	spec.Envoy.Resources = append(spec.Envoy.Resources, envoykit.Resource(envoykit.TypeListener, http))
	for _, a := range addrs {
		spec.Redirects = append(spec.Redirects, v1alpha1.Redirect{Name: "http/" + a, VIP: a, Port: HTTPPort, Protocol: v1alpha1.ProtocolTCP, Listener: httpName})
	}
	// An empty fragment makes the table exist with no Ingress attached: Envoy then
	// answers every request with 404 instead of the listener being refused.
	spec.RouteFragments = append(spec.RouteFragments, envoykit.EmptyTable(t.http))
	if !ls.hasTLS() {
		return
	}

	httpsName := ls.name + "/https"
	https := envoykit.NewListener(httpsName)
	https.ListenerFilters = []envoykit.NamedTyped{envoykit.TLSInspector()}
	https.FilterChains = []envoykit.FilterChain{} // fragments only: the agent adds them
	if ls.fragments && ls.fallback != nil && ls.fallback.owner == (types.NamespacedName{}) {
		// The IngressClass's default certificate belongs to the shared config itself.
		chains, secrets := ls.filterChains(func(c *chain) bool { return c == ls.fallback })
		for _, fc := range chains {
			https.FilterChains = append(https.FilterChains, unnamed(fc))
		}
		spec.Envoy.Secrets = append(spec.Envoy.Secrets, secrets...)
	}
	if !ls.fragments {
		chains, secrets := ls.filterChains(func(*chain) bool { return true })
		for _, fc := range chains {
			https.FilterChains = append(https.FilterChains, unnamed(fc))
		}
		spec.Envoy.Secrets = append(spec.Envoy.Secrets, secrets...)
	}
	spec.Envoy.Resources = append(spec.Envoy.Resources, envoykit.Resource(envoykit.TypeListener, https))
	for _, a := range addrs {
		spec.Redirects = append(spec.Redirects, v1alpha1.Redirect{Name: "https/" + a, VIP: a, Port: HTTPSPort, Protocol: v1alpha1.ProtocolTCP, Listener: httpsName})
	}
	spec.RouteFragments = append(spec.RouteFragments, envoykit.EmptyTable(t.https))
}

// addFragmentsTo adds the filter chains owner won on a fragments-mode set's HTTPS
// listener, and the Secrets they serve, to owner's config.
func (ls *listenerSet) addFragmentsTo(spec *v1alpha1.NodeProxyConfigSpec, owner types.NamespacedName) {
	if !ls.fragments || !ls.hasTLS() {
		return
	}
	chains, secrets := ls.filterChains(func(c *chain) bool { return c.owner == owner })
	if len(chains) == 0 {
		return
	}
	frag := v1alpha1.FilterChainFragment{Listener: ls.name + "/https"}
	for _, fc := range chains {
		frag.FilterChains = append(frag.FilterChains, envoykit.Raw(fc))
	}
	spec.FilterChainFragments = append(spec.FilterChainFragments, frag)
	if spec.Envoy == nil {
		spec.Envoy = &v1alpha1.EnvoyResources{}
	}
	spec.Envoy.Secrets = append(spec.Envoy.Secrets, secrets...)
}

// filterChains are the HTTPS chains of the set that keep selects, SNI chains
// sorted by Secret and the fallback last, with the Secrets they serve. Chains
// contributed as fragments are named "<namespace>/<ingress>/<secret>"
// (plus "/default" for the fallback), unique on the listener because each
// Ingress has one chain per Secret.
func (ls *listenerSet) filterChains(keep func(*chain) bool) ([]envoykit.FilterChain, []string) {
	https := ls.name + "/https"
	table := ls.tables().https
	chains := make([]*chain, 0, len(ls.chains))
	for _, c := range ls.chains {
		if keep(c) {
			chains = append(chains, c)
		}
	}
	slices.SortFunc(chains, func(a, b *chain) int {
		return cmp.Or(cmp.Compare(a.secret, b.secret), cmp.Compare(a.owner.String(), b.owner.String()))
	})
	var out []envoykit.FilterChain
	var secrets []string
	name := func(c *chain, suffix string) string {
		if !ls.fragments {
			return ""
		}
		if c.owner == (types.NamespacedName{}) {
			return "ingressclass/default-certificate"
		}
		_, secret, _ := strings.Cut(c.secret, "/")
		return c.owner.Namespace + "/" + c.owner.Name + "/" + secret + suffix
	}
	for _, c := range chains {
		hosts := slices.Clone(c.hosts)
		slices.Sort(hosts)
		out = append(out, envoykit.FilterChain{Name: name(c, ""), FilterChainMatch: &envoykit.FilterChainMatch{ServerNames: hosts},
			TransportSocket: envoykit.DownstreamTLS(envoykit.HTTPALPN, c.secret), Filters: []envoykit.NamedTyped{envoykit.HCMFilter(https, table)}})
		secrets = append(secrets, c.secret)
	}
	if f := ls.fallback; f != nil && keep(f) {
		out = append(out, envoykit.FilterChain{Name: name(f, "/default"),
			TransportSocket: envoykit.DownstreamTLS(envoykit.HTTPALPN, f.secret), Filters: []envoykit.NamedTyped{envoykit.HCMFilter(https, table)}})
		secrets = append(secrets, f.secret)
	}
	slices.Sort(secrets)
	return out, slices.Compact(secrets)
}

// unnamed is fc as a chain of the listener's own: names only matter to tell
// chains merged from several configs apart.
func unnamed(fc envoykit.FilterChain) envoykit.FilterChain {
	fc.Name = ""
	return fc
}
