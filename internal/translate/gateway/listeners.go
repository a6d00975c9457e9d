package gateway

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/envoykit"
	"github.com/portico-dev/portico/internal/npcwriter"
)

// gateway is one Gateway being translated.
type gateway struct {
	obj       *gatewayv1.Gateway
	key       types.NamespacedName
	cfg       string
	accepted  Condition
	listeners []*listener
	addresses []string
	selector  *metav1.LabelSelector
}

// listener is one Gateway listener.
type listener struct {
	gw       *gateway
	name     string
	port     int32
	protocol gatewayv1.ProtocolType
	hostname string // "" for none
	mode     gatewayv1.TLSModeType
	spec     *gatewayv1.Listener

	kinds                        []gatewayv1.RouteGroupKind
	accepted, resolved, conflict Condition
	// attachable: routes may attach (accepted, not conflicted).
	attachable bool
	// servable: attachable and its certificates resolved: it is in the config.
	servable bool
	secrets  []string
	attached int32
}

// group is the Gateway API group, the only group of routes and parents Portico serves.
const group = gatewayv1.GroupName

// supportedKinds are the route kinds each protocol can serve.
var supportedKinds = map[gatewayv1.ProtocolType][]string{
	gatewayv1.HTTPProtocolType:  {KindHTTPRoute, KindGRPCRoute},
	gatewayv1.HTTPSProtocolType: {KindHTTPRoute, KindGRPCRoute},
	gatewayv1.TLSProtocolType:   {KindTLSRoute},
}

// envoyListener is the Envoy listener serving a port of a Gateway.
func (g *gateway) envoyListener(port int32) string { return g.cfg + "/" + strconv.Itoa(int(port)) }

// table is the route table of an HTTP or HTTPS listener: HTTP listeners of one
// port share one (a request is told apart by Host only), each HTTPS listener has
// its own (its filter chain was chosen by SNI).
func (l *listener) table() string {
	switch l.protocol {
	case gatewayv1.HTTPProtocolType:
		return l.gw.envoyListener(l.port)
	case gatewayv1.HTTPSProtocolType:
		return l.gw.envoyListener(l.port) + "/" + l.name
	}
	return ""
}

// gateways validates every Gateway and its listeners.
func (t *translation) gateways() {
	for _, obj := range t.in.Gateways {
		key := types.NamespacedName{Namespace: obj.Namespace, Name: obj.Name}
		g := &gateway{obj: obj, key: key, cfg: GatewayConfigName(key), addresses: sortedAddrs(t.in.Addresses[key]),
			selector: t.in.Classes[string(obj.Spec.GatewayClassName)].Selector()}
		for i := range obj.Spec.Listeners {
			g.listeners = append(g.listeners, t.listener(g, &obj.Spec.Listeners[i]))
		}
		markConflicts(g.listeners)
		g.accepted = gatewayAccepted(g)
		t.gws = append(t.gws, g)
		t.byKey[key] = g
	}
	slices.SortFunc(t.gws, func(a, b *gateway) int { return strings.Compare(a.cfg, b.cfg) })
}

func sortedAddrs(in []string) []string {
	out := slices.Clone(in)
	slices.Sort(out)
	return slices.Compact(out)
}

func gatewayAccepted(g *gateway) Condition {
	if inf := g.obj.Spec.Infrastructure; inf != nil && inf.ParametersRef != nil {
		p := inf.ParametersRef
		return cond(string(gatewayv1.GatewayConditionAccepted), false, string(gatewayv1.GatewayReasonInvalidParameters),
			fmt.Sprintf("spec.infrastructure.parametersRef: %s/%s %s is not supported: Portico takes parameters per GatewayClass (spec.parametersRef to a GatewayClassConfig), not per Gateway", p.Group, p.Kind, p.Name))
	}
	for i, a := range g.obj.Spec.Addresses {
		if a.Type != nil && *a.Type != gatewayv1.IPAddressType {
			return cond(string(gatewayv1.GatewayConditionAccepted), false, string(gatewayv1.GatewayReasonUnsupportedAddress),
				fmt.Sprintf("spec.addresses[%d]: address type %q is not supported (only IPAddress)", i, *a.Type))
		}
		if a.Value == "" {
			continue // GatewayAddressEmpty: an address of the family, whichever the pool hands out
		}
		if _, err := netip.ParseAddr(a.Value); err != nil {
			return cond(string(gatewayv1.GatewayConditionAccepted), false, string(gatewayv1.GatewayReasonUnsupportedAddress),
				fmt.Sprintf("spec.addresses[%d]: %q is not an IP address", i, a.Value))
		}
	}
	var bad []string
	ok := 0
	for _, l := range g.listeners {
		if l.servable {
			ok++
		}
		if !l.attachable || l.resolved.Status != metav1.ConditionTrue {
			bad = append(bad, l.name)
		}
	}
	switch {
	case ok == 0 && len(bad) > 0:
		return cond(string(gatewayv1.GatewayConditionAccepted), false, string(gatewayv1.GatewayReasonListenersNotValid),
			"no listener can be served: "+strings.Join(bad, ", ")+" (see status.listeners)")
	case len(bad) > 0:
		return cond(string(gatewayv1.GatewayConditionAccepted), true, string(gatewayv1.GatewayReasonListenersNotValid),
			"listeners not valid: "+strings.Join(bad, ", ")+" (see status.listeners); the others are served")
	}
	return cond(string(gatewayv1.GatewayConditionAccepted), true, string(gatewayv1.GatewayReasonAccepted), "Accepted by "+string(ControllerName))
}

// listener validates one listener on its own (conflicts come after).
func (t *translation) listener(g *gateway, spec *gatewayv1.Listener) *listener {
	l := &listener{gw: g, name: string(spec.Name), port: spec.Port, protocol: spec.Protocol, spec: spec}
	if spec.Hostname != nil {
		l.hostname = strings.ToLower(string(*spec.Hostname))
	}
	l.accepted = cond(string(gatewayv1.ListenerConditionAccepted), true, string(gatewayv1.ListenerReasonAccepted), "Accepted")
	l.resolved = cond(string(gatewayv1.ListenerConditionResolvedRefs), true, string(gatewayv1.ListenerReasonResolvedRefs), "References resolved")
	l.conflict = cond(string(gatewayv1.ListenerConditionConflicted), false, string(gatewayv1.ListenerReasonNoConflicts), "No conflicts")
	l.kinds = []gatewayv1.RouteGroupKind{}
	field := fmt.Sprintf("spec.listeners[%s]", spec.Name)
	kinds, ok := supportedKinds[spec.Protocol]
	if !ok {
		l.accepted = cond(string(gatewayv1.ListenerConditionAccepted), false, string(gatewayv1.ListenerReasonUnsupportedProtocol),
			fmt.Sprintf("%s.protocol: %q is not supported (HTTP, HTTPS and TLS are)", field, spec.Protocol))
		return l
	}
	l.kinds, l.resolved = routeKinds(spec, kinds, field)
	if spec.Protocol != gatewayv1.HTTPProtocolType {
		l.mode = gatewayv1.TLSModeTerminate
		if spec.TLS != nil && spec.TLS.Mode != nil {
			l.mode = *spec.TLS.Mode
		}
		if spec.Protocol == gatewayv1.HTTPSProtocolType && l.mode != gatewayv1.TLSModeTerminate {
			l.accepted = cond(string(gatewayv1.ListenerConditionAccepted), false, string(gatewayv1.ListenerReasonUnsupportedValue),
				field+".tls.mode: an HTTPS listener terminates TLS; use protocol TLS for passthrough")
			return l
		}
		if l.mode == gatewayv1.TLSModeTerminate {
			secrets, problem := t.certificates(g, spec, field)
			l.secrets = secrets
			if problem != nil && l.resolved.Status == metav1.ConditionTrue {
				l.resolved = *problem
			}
		}
	}
	l.attachable = true
	l.servable = l.mode != gatewayv1.TLSModeTerminate || len(l.secrets) > 0
	return l
}

// routeKinds are the kinds a listener accepts: allowedRoutes.kinds that the
// protocol can serve, or every kind it can serve when none are given.
func routeKinds(spec *gatewayv1.Listener, supported []string, field string) ([]gatewayv1.RouteGroupKind, Condition) {
	resolved := cond(string(gatewayv1.ListenerConditionResolvedRefs), true, string(gatewayv1.ListenerReasonResolvedRefs), "References resolved")
	var want []gatewayv1.RouteGroupKind
	if spec.AllowedRoutes != nil {
		want = spec.AllowedRoutes.Kinds
	}
	if len(want) == 0 {
		out := make([]gatewayv1.RouteGroupKind, 0, len(supported))
		for _, k := range supported {
			g := gatewayv1.Group(group)
			out = append(out, gatewayv1.RouteGroupKind{Group: &g, Kind: gatewayv1.Kind(k)})
		}
		return out, resolved
	}
	out := []gatewayv1.RouteGroupKind{}
	var invalid []string
	for _, k := range want {
		g := group
		if k.Group != nil {
			g = string(*k.Group)
		}
		if g != group || !slices.Contains(supported, string(k.Kind)) {
			invalid = append(invalid, g+"/"+string(k.Kind))
			continue
		}
		gg := gatewayv1.Group(group)
		out = append(out, gatewayv1.RouteGroupKind{Group: &gg, Kind: k.Kind})
	}
	if len(invalid) > 0 {
		resolved = cond(string(gatewayv1.ListenerConditionResolvedRefs), false, string(gatewayv1.ListenerReasonInvalidRouteKinds),
			fmt.Sprintf("%s.allowedRoutes.kinds: %s cannot be served on a %s listener", field, strings.Join(invalid, ", "), spec.Protocol))
	}
	return out, resolved
}

// certificates resolves a terminating listener's certificateRefs to the
// Secrets it serves ("<ns>/<name>") and the first problem, if any.
func (t *translation) certificates(g *gateway, spec *gatewayv1.Listener, field string) ([]string, *Condition) {
	var refs []gatewayv1.SecretObjectReference
	if spec.TLS != nil {
		refs = spec.TLS.CertificateRefs
	}
	bad := func(reason gatewayv1.ListenerConditionReason, msg string) *Condition {
		c := cond(string(gatewayv1.ListenerConditionResolvedRefs), false, string(reason), msg)
		return &c
	}
	if len(refs) == 0 {
		return nil, bad(gatewayv1.ListenerReasonInvalidCertificateRef, field+".tls.certificateRefs: a terminating listener needs a certificate")
	}
	var out []string
	var problem *Condition
	for i, ref := range refs {
		f := fmt.Sprintf("%s.tls.certificateRefs[%d]", field, i)
		grp, kind := "", "Secret"
		if ref.Group != nil {
			grp = string(*ref.Group)
		}
		if ref.Kind != nil {
			kind = string(*ref.Kind)
		}
		ns := g.key.Namespace
		if ref.Namespace != nil {
			ns = string(*ref.Namespace)
		}
		key := types.NamespacedName{Namespace: ns, Name: string(ref.Name)}
		var p *Condition
		switch {
		case grp != "" || kind != "Secret":
			p = bad(gatewayv1.ListenerReasonInvalidCertificateRef, fmt.Sprintf("%s: %s/%s is not supported (only core Secrets)", f, grp, kind))
		case ns != g.key.Namespace && !t.grants.permit(KindGateway, g.key.Namespace, "", "Secret", key):
			p = bad(gatewayv1.ListenerReasonRefNotPermitted, fmt.Sprintf("%s: Secret %s is in another namespace and no ReferenceGrant there allows it", f, key))
		default:
			why, found := t.in.Secrets[key]
			switch {
			case !found:
				p = bad(gatewayv1.ListenerReasonInvalidCertificateRef, fmt.Sprintf("%s: Secret %s not found", f, key))
			case why != "":
				p = bad(gatewayv1.ListenerReasonInvalidCertificateRef, fmt.Sprintf("%s: Secret %s: %s", f, key, why))
			default:
				out = append(out, key.String())
			}
		}
		if p != nil && problem == nil {
			problem = p
		}
	}
	return out, problem
}

// markConflicts marks listeners that are not distinct: on one port, HTTP and
// the TLS-based protocols cannot share (ProtocolConflict), and two listeners of
// one kind cannot share a hostname (HostnameConflict). Every listener of a
// conflict is marked and left out: none has a better claim than the others.
func markConflicts(ls []*listener) {
	byPort := map[int32][]*listener{}
	for _, l := range ls {
		if _, ok := supportedKinds[l.protocol]; ok && l.accepted.Status == metav1.ConditionTrue {
			byPort[l.port] = append(byPort[l.port], l)
		}
	}
	class := func(p gatewayv1.ProtocolType) string {
		if p == gatewayv1.HTTPProtocolType {
			return "http"
		}
		return "tls"
	}
	mark := func(l *listener, reason gatewayv1.ListenerConditionReason, msg string) {
		l.conflict = cond(string(gatewayv1.ListenerConditionConflicted), true, string(reason), msg)
		l.accepted = cond(string(gatewayv1.ListenerConditionAccepted), false, string(reason), msg)
		l.attachable, l.servable = false, false
	}
	for port, group := range byPort {
		classes := map[string]bool{}
		for _, l := range group {
			classes[class(l.protocol)] = true
		}
		if len(classes) > 1 {
			for _, l := range group {
				mark(l, gatewayv1.ListenerReasonProtocolConflict, fmt.Sprintf("port %d is used by listeners of incompatible protocols (HTTP and HTTPS/TLS)", port))
			}
			continue
		}
		hosts := map[string][]*listener{}
		for _, l := range group {
			hosts[l.hostname] = append(hosts[l.hostname], l)
		}
		for h, same := range hosts {
			if len(same) < 2 {
				continue
			}
			names := make([]string, 0, len(same))
			for _, l := range same {
				names = append(names, l.name)
			}
			if h == "" {
				h = "(none)"
			}
			for _, l := range same {
				mark(l, gatewayv1.ListenerReasonHostnameConflict, fmt.Sprintf("listeners %s all use port %d with hostname %s", strings.Join(names, ", "), port, h))
			}
		}
	}
}

func (g *gateway) status() *GatewayStatus {
	st := &GatewayStatus{Config: g.cfg, Conditions: []Condition{g.accepted}, Addresses: g.addresses}
	for _, l := range g.listeners {
		st.Listeners = append(st.Listeners, ListenerStatus{Name: l.name, SupportedKinds: l.kinds, AttachedRoutes: l.attached,
			Conditions: []Condition{l.accepted, l.resolved, l.conflict}, Servable: l.servable})
	}
	return st
}

// config is the Gateway's own NodeProxyConfig: listeners, redirects, HTTPS
// chains and the empty route tables of its servable listeners.
func (g *gateway) config() Config {
	spec := v1alpha1.NodeProxyConfigSpec{NodeSelector: g.selector, Envoy: &v1alpha1.EnvoyResources{}}
	ports := map[int32][]*listener{}
	var order []int32
	for _, l := range g.listeners {
		if !l.servable {
			continue
		}
		if _, seen := ports[l.port]; !seen {
			order = append(order, l.port)
		}
		ports[l.port] = append(ports[l.port], l)
	}
	slices.Sort(order)
	var secrets []string
	for _, port := range order {
		ls := ports[port]
		name := g.envoyListener(port)
		el := envoykit.NewListener(name)
		if ls[0].protocol == gatewayv1.HTTPProtocolType {
			el.FilterChains = []envoykit.FilterChain{{Filters: []envoykit.NamedTyped{hcm(name, name)}}}
			spec.RouteFragments = append(spec.RouteFragments, envoykit.EmptyTable(name))
		} else {
			el.ListenerFilters = []envoykit.NamedTyped{envoykit.TLSInspector()}
			el.FilterChains = []envoykit.FilterChain{} // TLS listeners get their chains from routes
			for _, l := range ls {
				if l.protocol != gatewayv1.HTTPSProtocolType {
					continue
				}
				fc := envoykit.FilterChain{Name: l.name, TransportSocket: envoykit.DownstreamTLS(envoykit.HTTPALPN, l.secrets...),
					Filters: []envoykit.NamedTyped{hcm(l.table(), l.table())}}
				if l.hostname != "" {
					fc.FilterChainMatch = &envoykit.FilterChainMatch{ServerNames: []string{l.hostname}}
				}
				el.FilterChains = append(el.FilterChains, fc)
				spec.RouteFragments = append(spec.RouteFragments, envoykit.EmptyTable(l.table()))
			}
			for _, l := range ls {
				secrets = append(secrets, l.secrets...)
			}
		}
		spec.Envoy.Resources = append(spec.Envoy.Resources, envoykit.Resource(envoykit.TypeListener, el))
		for _, a := range g.addresses {
			spec.Redirects = append(spec.Redirects, v1alpha1.Redirect{Name: fmt.Sprintf("%d/%s", port, a), VIP: a, Port: port,
				Protocol: v1alpha1.ProtocolTCP, Listener: name})
		}
	}
	slices.Sort(secrets)
	spec.Envoy.Secrets = slices.Compact(secrets)
	return Config{Name: g.cfg, Source: npcwriter.Source{Kind: KindGateway, Namespace: g.key.Namespace, Name: g.key.Name}, Gateway: g.key, Spec: spec}
}

// hcm is the HTTP connection manager of a Gateway listener: CORS (a no-op on
// routes without a policy) before the router, and WebSocket upgrades allowed.
func hcm(statPrefix, table string) envoykit.NamedTyped {
	h := envoykit.NewHCM(statPrefix, table)
	h.HTTPFilters = append([]envoykit.NamedTyped{envoykit.CORSFilter()}, h.HTTPFilters...)
	h.UpgradeConfigs = envoykit.WebSocketUpgrade
	return envoykit.NamedTyped{Name: "envoy.filters.network.http_connection_manager", TypedConfig: h}
}
