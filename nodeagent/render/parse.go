package render

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/envoykit"
	"github.com/portico-dev/portico/internal/xdsres"
)

// parsed is one config checked on its own, before it meets the others. Everything
// here depends only on the config and the proxy ports, so it is computed once per
// Render however many times conflicts and validation make the merge run again.
type parsed struct {
	cfg *v1alpha1.NodeProxyConfig

	listeners []*listenerv3.Listener
	routes    []*routev3.RouteConfiguration
	clusters  []*clusterv3.Cluster
	secrets   []*tlsv3.Secret

	redirects []redirect
	fragments []fragment
	// chainFragments are filter chains for listeners of (usually) other configs.
	chainFragments []chainFragment
	backends       []v1alpha1.BackendService
	secretRefs     []string
	announcements  []v1alpha1.Announcement

	// missingPorts are redirect listeners with no proxy port yet; a config with any
	// is held back whole (it still claims its names, so verdicts do not flip
	// while ports are being allocated).
	missingPorts []string
	// waitSecrets: a cluster needs a Secret the agent has not read yet, so the
	// config is held back whole (claiming its names) until it is read.
	waitSecrets bool

	claims claims
}

// held reports whether the config is held back whole: it claims its names but
// contributes nothing until its proxy ports or Secrets are there.
func (p *parsed) held() bool { return len(p.missingPorts) > 0 || p.waitSecrets }

type redirect struct {
	name     string
	key      Key
	listener string
}

type fragment struct {
	table, host string
	routes      []fragmentRoute
}

type fragmentRoute struct {
	precedence string
	config     string
	fragment   int
	index      int
	route      *routev3.Route
}

// parse checks cfg on its own. routes, when not nil, supplies the fragment routes a
// previous parse of the same config decoded (see routeCache); nil decodes them all.
func parse(cfg *v1alpha1.NodeProxyConfig, ports map[string]uint16, routes *routeCache) (*parsed, *rejection) {
	p := &parsed{cfg: cfg}
	if rej := p.decodeResources(); rej != nil {
		return nil, rej
	}
	if rej := p.parseRedirects(ports); rej != nil {
		return nil, rej
	}
	if rej := p.parseFragments(routes); rej != nil {
		return nil, rej
	}
	if rej := p.parseFilterChainFragments(); rej != nil {
		return nil, rej
	}
	if rej := p.parseBackends(); rej != nil {
		return nil, rej
	}
	if rej := p.parseAnnouncements(); rej != nil {
		return nil, rej
	}
	p.claims = claimsOf(p)
	return p, nil
}

func (p *parsed) decodeResources() *rejection {
	if p.cfg.Spec.Envoy == nil {
		return nil
	}
	seen := map[string]bool{}
	for i, r := range p.cfg.Spec.Envoy.Resources {
		d, err := xdsres.Decode(r)
		if err != nil {
			return reject(v1alpha1.ReasonInvalidResource, "envoy.resources[%d]%s", i, prefixed(err))
		}
		switch m := d.Message.(type) {
		case *listenerv3.Listener:
			p.listeners = append(p.listeners, m)
		case *routev3.RouteConfiguration:
			p.routes = append(p.routes, m)
		case *clusterv3.Cluster:
			p.clusters = append(p.clusters, m)
		case *tlsv3.Secret:
			p.secrets = append(p.secrets, m)
		}
		if seen[d.Kind+"/"+d.Name] {
			return reject(v1alpha1.ReasonInvalidResource, "envoy.resources[%d]: %s %q is defined twice", i, d.Kind, d.Name)
		}
		seen[d.Kind+"/"+d.Name] = true
	}
	for i, ref := range p.cfg.Spec.Envoy.Secrets {
		ns, name, ok := strings.Cut(ref, "/")
		if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
			return reject(v1alpha1.ReasonInvalidResource, "envoy.secrets[%d]: %q is not <namespace>/<name>", i, ref)
		}
		p.secretRefs = append(p.secretRefs, ref)
	}
	return nil
}

func (p *parsed) parseRedirects(ports map[string]uint16) *rejection {
	listeners := map[string]*listenerv3.Listener{}
	for _, l := range p.listeners {
		listeners[l.GetName()] = l
	}
	type target struct {
		proto uint8
		v6    bool
	}
	targets := map[string]*target{}
	var order []string
	keys := map[Key]string{}
	for i, r := range p.cfg.Spec.Redirects {
		addr, err := netip.ParseAddr(r.VIP)
		if err != nil || addr.Zone() != "" {
			return reject(v1alpha1.ReasonInvalidRedirect, "redirects[%d] %q: vip %q is not an IP address", i, r.Name, r.VIP)
		}
		if r.Port < 1 || r.Port > 65535 {
			return reject(v1alpha1.ReasonInvalidRedirect, "redirects[%d] %q: port %d is out of range", i, r.Name, r.Port)
		}
		var proto uint8
		switch r.Protocol {
		case v1alpha1.ProtocolTCP, "":
			proto = ProtoTCP
		case v1alpha1.ProtocolUDP:
			proto = ProtoUDP
		default:
			return reject(v1alpha1.ReasonInvalidRedirect, "redirects[%d] %q: unknown protocol %q", i, r.Name, r.Protocol)
		}
		if listeners[r.Listener] == nil {
			return reject(v1alpha1.ReasonInvalidRedirect, "redirects[%d] %q: listener %q is not defined by this config", i, r.Name, r.Listener)
		}
		// The datapath treats IPv4-mapped addresses as IPv4; unmapping here makes
		// ::ffff:10.0.0.1 and 10.0.0.1 the same claim.
		k := Key{Addr: addr.Unmap(), Port: uint16(r.Port), Proto: proto}
		if other, dup := keys[k]; dup {
			return reject(v1alpha1.ReasonInvalidRedirect, "redirects[%d] %q: %s is also claimed by redirect %q of this config", i, r.Name, k, other)
		}
		keys[k] = r.Name
		t := targets[r.Listener]
		if t == nil {
			t = &target{proto: proto}
			targets[r.Listener] = t
			order = append(order, r.Listener)
		} else if t.proto != proto {
			return reject(v1alpha1.ReasonInvalidRedirect, "redirects[%d] %q: listener %q receives both TCP and UDP redirects", i, r.Name, r.Listener)
		}
		t.v6 = t.v6 || k.Addr.Is6()
		p.redirects = append(p.redirects, redirect{name: r.Name, key: k, listener: r.Listener})
	}
	for _, name := range order {
		port, ok := ports[name]
		if !ok || port == 0 {
			p.missingPorts = append(p.missingPorts, name)
			continue
		}
		bindLocal(listeners[name], port, targets[name].proto, targets[name].v6)
	}
	return nil
}

// bindLocal makes a redirect target listen where the datapath delivers: the
// proxy port on loopback, IP_TRANSPARENT (without it the SYN-ACK from the VIP is
// never sent) and no SO_REUSEPORT (bpf_sk_assign refuses reuseport sockets), see
// design §4. The producer's own addresses are replaced: the port is the node's.
func bindLocal(l *listenerv3.Listener, port uint16, proto uint8, v6 bool) {
	l.Address = socketAddress("127.0.0.1", port, proto)
	l.AdditionalAddresses = nil
	if v6 {
		l.AdditionalAddresses = []*listenerv3.AdditionalAddress{{Address: socketAddress("::1", port, proto)}}
	}
	l.Transparent = wrapperspb.Bool(true)
	l.EnableReusePort = wrapperspb.Bool(false)
}

func socketAddress(ip string, port uint16, proto uint8) *corev3.Address {
	sa := &corev3.SocketAddress{
		Address:       ip,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(port)},
	}
	if proto == ProtoUDP {
		sa.Protocol = corev3.SocketAddress_UDP
	}
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: sa}}
}

func (p *parsed) parseFragments(routes *routeCache) *rejection {
	if len(p.cfg.Spec.RouteFragments) == 0 {
		return nil
	}
	own := map[string]bool{}
	for _, rc := range p.routes {
		own[rc.GetName()] = true
	}
	probe := &routev3.RouteConfiguration{Name: probeName}
	for fi, f := range p.cfg.Spec.RouteFragments {
		if own[f.RouteTable] {
			return reject(v1alpha1.ReasonInvalidRoute, "routeFragments[%d]: route table %q is also defined as a RouteConfiguration by this config", fi, f.RouteTable)
		}
		if f.Host == "" {
			return reject(v1alpha1.ReasonInvalidRoute, "routeFragments[%d]: host is empty", fi)
		}
		// Envoy matches domains case-insensitively and refuses two virtual hosts
		// whose domains differ only in case.
		frag := fragment{table: f.RouteTable, host: strings.ToLower(f.Host)}
		vh := &routev3.VirtualHost{Name: fmt.Sprintf("routeFragments[%d]", fi), Domains: []string{frag.host}}
		for ri, fr := range f.Routes {
			route, err := routes.decode(fr.Route.Raw)
			if err != nil {
				return reject(v1alpha1.ReasonInvalidRoute, "routeFragments[%d].routes[%d] (precedence %q): %v", fi, ri, fr.Precedence, errText(err))
			}
			frag.routes = append(frag.routes, fragmentRoute{
				precedence: fr.Precedence, config: p.cfg.Name, fragment: fi, index: ri, route: route,
			})
			vh.Routes = append(vh.Routes, route)
		}
		probe.VirtualHosts = append(probe.VirtualHosts, vh)
		p.fragments = append(p.fragments, frag)
	}
	// Routes are checked here, on this config's fragments alone, because once
	// merged into a shared table a bad route would be blamed on every contributor.
	for _, e := range xdsres.Validate(xdsres.Resources{Routes: []*routev3.RouteConfiguration{probe}}) {
		if !probeBaseline[e.Message] {
			return reject(v1alpha1.ReasonInvalidRoute, "routeFragments: %s", e.Message)
		}
	}
	return nil
}

// errText: see xdsres.ErrText.
func errText(err error) string { return xdsres.ErrText(err) }

// prefixed is a Decode error after a field path: ": msg", or " (type): msg" as it comes.
func prefixed(err error) string {
	msg := err.Error()
	if strings.HasPrefix(msg, "(") {
		return " " + msg
	}
	return ": " + msg
}

// probeName names the throwaway RouteConfiguration that fragment routes are
// validated in; probeBaseline are the errors xdsres.Validate reports for it even when
// it is empty (no listener references it), which say nothing about the routes.
const probeName = "portico-render-probe"

var probeBaseline = func() map[string]bool {
	out := map[string]bool{}
	for _, e := range xdsres.Validate(xdsres.Resources{Routes: []*routev3.RouteConfiguration{{Name: probeName}}}) {
		out[e.Message] = true
	}
	return out
}()

func (p *parsed) parseBackends() *rejection {
	if p.cfg.Spec.Envoy == nil {
		return nil
	}
	for i, b := range p.cfg.Spec.Envoy.BackendServices {
		// NodeProxyConfig is cluster-scoped, so "the referring object's namespace"
		// is the source object's, which producers record in this label.
		if b.Namespace == "" {
			b.Namespace = p.cfg.Labels[v1alpha1.LabelSourceNamespace]
		}
		if b.Namespace == "" || b.Name == "" {
			return reject(v1alpha1.ReasonInvalidResource, "envoy.backendServices[%d]: namespace and name are required", i)
		}
		b.Ports = append([]string(nil), b.Ports...)
		p.backends = append(p.backends, b)
	}
	return p.checkEDSClusters()
}

// checkEDSClusters refuses an EDS cluster whose endpoints the agent would never
// serve: the agent serves EDS only for the config's backendServices, and Envoy
// keeps such a cluster warming (its listeners and routes with it) until its
// initial fetch times out, then routes to no endpoint. The name the cluster asks
// for must be one a backendService gives (envoykit.BackendEDSNames).
func (p *parsed) checkEDSClusters() *rejection {
	served := map[string]bool{}
	for _, b := range p.backends {
		for _, n := range envoykit.BackendEDSNames(b) {
			served[n] = true
		}
	}
	for _, cl := range p.clusters {
		if cl.GetType() != clusterv3.Cluster_EDS || cl.GetEdsClusterConfig().GetEdsConfig().GetAds() == nil {
			continue
		}
		name := cl.GetEdsClusterConfig().GetServiceName()
		if name == "" {
			name = cl.GetName()
		}
		if !served[name] {
			return reject(v1alpha1.ReasonInvalidResource, "cluster %q asks EDS for %q, which no envoy.backendServices entry of this config gives (an entry {namespace, name, ports: [port]} serves \"<namespace>/<name>:<port>\")", cl.GetName(), name)
		}
	}
	return nil
}

func (p *parsed) parseAnnouncements() *rejection {
	for i, a := range p.cfg.Spec.Announcements {
		addr, err := netip.ParseAddr(a.IP)
		if err != nil || addr.Zone() != "" {
			return reject(v1alpha1.ReasonInvalidAnnouncement, "announcements[%d]: %q is not an IP address", i, a.IP)
		}
		for j, re := range a.Interfaces {
			if _, err := regexp.Compile(re); err != nil {
				return reject(v1alpha1.ReasonInvalidAnnouncement, "announcements[%d].interfaces[%d]: %v", i, j, err)
			}
		}
		a.IP = addr.Unmap().String()
		a.Interfaces = append([]string(nil), a.Interfaces...)
		if a.Service.Namespace == "" {
			a.Service.Namespace = p.cfg.Labels[v1alpha1.LabelSourceNamespace]
		}
		p.announcements = append(p.announcements, a)
	}
	return nil
}
