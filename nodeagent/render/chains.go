package render

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/xdsres"
)

// closedChainName names the filter chain render gives a listener that has none:
// a listener defined without chains waits for fragments, and until one arrives
// (or while every contributor is rejected) Envoy must still accept it, or the
// whole config defining it, with its other listeners, would be refused. A chain
// without filters makes Envoy close each connection it accepts.
const closedChainName = "portico-no-filter-chains"

// chainFragment is the filter chains one config contributes to one listener.
type chainFragment struct {
	listener string
	index    int // position in spec.filterChainFragments, for error messages and order
	chains   []*listenerv3.FilterChain
}

func (p *parsed) parseFilterChainFragments() *rejection {
	names := map[string]bool{}
	for fi, f := range p.cfg.Spec.FilterChainFragments {
		if f.Listener == "" {
			return reject(v1alpha1.ReasonInvalidFilterChain, "filterChainFragments[%d]: listener is empty", fi)
		}
		frag := chainFragment{listener: f.Listener, index: fi}
		for ci, raw := range f.FilterChains {
			fc := &listenerv3.FilterChain{}
			if err := xdsres.Strict.Unmarshal(raw.Raw, fc); err != nil {
				return reject(v1alpha1.ReasonInvalidFilterChain, "filterChainFragments[%d].filterChains[%d]: %s", fi, ci, errText(err))
			}
			name := fc.GetName()
			switch {
			case name == "":
				return reject(v1alpha1.ReasonInvalidFilterChain, "filterChainFragments[%d].filterChains[%d]: name is empty (chains merged into a shared listener need names)", fi, ci)
			case names[f.Listener+"\x00"+name]:
				return reject(v1alpha1.ReasonInvalidFilterChain, "filterChainFragments[%d].filterChains[%d]: chain %q is contributed to listener %q twice", fi, ci, name, f.Listener)
			}
			names[f.Listener+"\x00"+name] = true
			if err := xdsres.ValidateMessage(fc); err != nil {
				return reject(v1alpha1.ReasonInvalidFilterChain, "filterChainFragments[%d].filterChains[%d] %q: %s", fi, ci, name, errText(err))
			}
			frag.chains = append(frag.chains, fc)
		}
		p.chainFragments = append(p.chainFragments, frag)
	}
	return nil
}

// chainKeys are the claims a listener's filter chains make: each chain's name, and
// each (match, server name) pair, because Envoy refuses a listener on which two chains
// match the same connection ("multiple filter chains with the same matching rules").
func chainKeys(listener string, chains []*listenerv3.FilterChain) []sharedName {
	var out []sharedName
	for _, fc := range chains {
		out = append(out, sharedName{"FilterChain/" + listener + "\x00" + fc.GetName(),
			fmt.Sprintf("filter chain %q of listener %q", fc.GetName(), listener)})
		m := proto.Clone(fc.GetFilterChainMatch()).(*listenerv3.FilterChainMatch)
		if m == nil {
			m = &listenerv3.FilterChainMatch{}
		}
		sni := m.GetServerNames()
		m.ServerNames = nil
		rest, _ := proto.MarshalOptions{Deterministic: true}.Marshal(m)
		if len(sni) == 0 {
			sni = []string{""}
		}
		for _, s := range sni {
			what := fmt.Sprintf("the filter chain match of %q on listener %q", fc.GetName(), listener)
			if s != "" {
				what = fmt.Sprintf("server name %q (filter chain %q) on listener %q", s, fc.GetName(), listener)
			}
			out = append(out, sharedName{"FilterChainMatch/" + listener + "\x00" + string(rest) + "\x00" + strings.ToLower(s), what})
		}
	}
	return out
}

// ownChainKeys are the chain claims of the listeners a config defines.
func ownChainKeys(p *parsed) []sharedName {
	var out []sharedName
	for _, l := range p.listeners {
		out = append(out, chainKeys(l.GetName(), l.GetFilterChains())...)
	}
	return out
}

func contributedChainKeys(p *parsed) []sharedName {
	var out []sharedName
	for _, f := range p.chainFragments {
		out = append(out, chainKeys(f.listener, f.chains)...)
	}
	return out
}

// settleChainFragments checks what a contribution can only be judged by against
// the winners: that its listener is defined by one, and that its chains reference
// route tables and Secrets some winner provides. A contributor to a listener held
// back for its proxy port is held back too (with the listener named in
// missingPorts), so that it is applied together with it.
//
// A contribution to a listener that no config applied on this node defines is not
// for this node (a route attached to Gateways that run on other nodes): it is left
// out and counted in notHere, not rejected.
func settleChainFragments(winners []*parsed, known map[string]SecretState) (kept []*parsed, rejected map[string]*rejection, notHere int) {
	listeners := map[string]*parsed{}
	routes, secrets := map[string]bool{}, map[string]bool{}
	for _, p := range winners {
		for _, l := range p.listeners {
			listeners[l.GetName()] = p
		}
		for _, rc := range p.routes {
			routes[rc.GetName()] = true
		}
		for _, f := range p.fragments {
			routes[f.table] = true
		}
		for _, s := range p.secrets {
			secrets[s.GetName()] = true
		}
		for _, ref := range p.secretRefs {
			for _, s := range known[ref].Resources {
				secrets[s.GetName()] = true
			}
		}
	}
	kept = make([]*parsed, 0, len(winners))
	for _, p := range winners {
		if len(p.chainFragments) == 0 {
			kept = append(kept, p)
			continue
		}
		var dropped int
		p, dropped = onlyHere(p, listeners)
		notHere += dropped
		rej, waitFor := checkContribution(p, listeners, routes, secrets)
		switch {
		case rej != nil:
			if rejected == nil {
				rejected = map[string]*rejection{}
			}
			rejected[p.cfg.Name] = rej
		case len(waitFor) > 0 && !p.held():
			held := *p // parsed values may be shared with a cache: copy, never modify
			held.missingPorts = waitFor
			kept = append(kept, &held)
		default:
			kept = append(kept, p)
		}
	}
	return kept, rejected, notHere
}

// onlyHere is p without its chain fragments for listeners no winner defines.
func onlyHere(p *parsed, listeners map[string]*parsed) (*parsed, int) {
	n := 0
	for _, f := range p.chainFragments {
		if listeners[f.listener] == nil {
			n++
		}
	}
	if n == 0 {
		return p, 0
	}
	q := *p // parsed values may be shared with a cache: copy, never modify
	q.chainFragments = nil
	for _, f := range p.chainFragments {
		if listeners[f.listener] != nil {
			q.chainFragments = append(q.chainFragments, f)
		}
	}
	return &q, n
}

func checkContribution(p *parsed, listeners map[string]*parsed, routes, secrets map[string]bool) (*rejection, []string) {
	var waitFor []string
	for _, f := range p.chainFragments {
		owner := listeners[f.listener]
		if owner.held() && owner != p {
			waitFor = append(waitFor, f.listener)
		}
		// References are checked on a listener made of this contribution alone, with
		// stand-ins for everything that exists, so the errors are this config's own.
		probe := &listenerv3.Listener{Name: probeName, Address: socketAddress("127.0.0.1", 1, ProtoTCP), FilterChains: f.chains}
		res := xdsres.Resources{Listeners: []*listenerv3.Listener{probe}}
		for name := range routes {
			res.Routes = append(res.Routes, &routev3.RouteConfiguration{Name: name})
		}
		for name := range secrets {
			res.Secrets = append(res.Secrets, &tlsv3.Secret{Name: name})
		}
		for _, e := range xdsres.Validate(res) {
			if e.Kind == xdsres.KindListener && e.Name == probeName {
				return reject(v1alpha1.ReasonInvalidFilterChain, "filterChainFragments[%d] (listener %q): %s", f.index, f.listener, e.Message), nil
			}
		}
	}
	return nil, sortedUnique(waitFor)
}

// contribution is one config's chains for one listener, ordered in the merged
// listener by config name, then position, so the order never depends on input order.
type contribution struct {
	config string
	index  int
	chains []*listenerv3.FilterChain
}

// mergeChains returns the listeners with the contributed chains appended. A
// listener that receives chains is cloned: parsed resources may be shared with a
// cache and must stay as decoded.
func mergeChains(listeners []*listenerv3.Listener, contributions map[string][]contribution, m *memo) []*listenerv3.Listener {
	out := make([]*listenerv3.Listener, len(listeners))
	for i, l := range listeners {
		cs := contributions[l.GetName()]
		if len(cs) == 0 && (len(l.GetFilterChains()) > 0 || l.GetDefaultFilterChain() != nil || l.GetApiListener() != nil || isUDP(l)) {
			out[i] = l
			continue
		}
		slices.SortFunc(cs, func(a, b contribution) int {
			return cmp.Or(cmp.Compare(a.config, b.config), cmp.Compare(a.index, b.index))
		})
		var chains []*listenerv3.FilterChain
		for _, c := range cs {
			chains = append(chains, c.chains...)
		}
		out[i] = m.merged(l, chains, withChains)
	}
	return out
}

// withChains is a clone of l with chains appended, or with a chain that closes every
// connection if it would have none.
func withChains(l *listenerv3.Listener, chains []*listenerv3.FilterChain) *listenerv3.Listener {
	l = proto.Clone(l).(*listenerv3.Listener)
	l.FilterChains = append(l.FilterChains, chains...)
	if len(l.FilterChains) == 0 && l.GetDefaultFilterChain() == nil && l.GetApiListener() == nil && !isUDP(l) {
		l.FilterChains = []*listenerv3.FilterChain{{Name: closedChainName}}
	}
	return l
}

// isUDP: a UDP listener's work is done by listener filters and needs no chain.
func isUDP(l *listenerv3.Listener) bool {
	return l.GetUdpListenerConfig() != nil || l.GetAddress().GetSocketAddress().GetProtocol() == corev3.SocketAddress_UDP
}
