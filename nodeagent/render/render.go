// Package render is the node agent's pure translation from the NodeProxyConfigs
// that select a node into what the node applies: redirect map entries, the xDS
// resources for the local Envoy, the Services and Secrets to watch and the
// addresses to announce. It makes no client calls and does no I/O, so the same
// input always renders the same output, byte for byte once marshalled: the agent
// relies on that to avoid needless xDS version bumps.
//
// A config is applied whole or not at all: one that fails to decode, conflicts
// with an older config or produces a resource Envoy would refuse is rejected with
// a reason and contributes nothing, and the others render as if it were absent.
// That keeps "what does this node do" answerable config by config.
package render

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"unicode/utf8"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"k8s.io/apimachinery/pkg/types"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/xdsres"
)

// maxMessage is RejectedConfig.Message's schema limit.
const maxMessage = 1024

// Protocol numbers of Key.Proto.
const (
	ProtoTCP uint8 = 6
	ProtoUDP uint8 = 17
)

// Key is a redirected frontend. It has the same fields as bpf.Key, which only
// builds on Linux, so the agent converts with bpf.Key(k) while render stays
// portable. Addr is never an IPv4-mapped IPv6 address.
type Key struct {
	Addr  netip.Addr
	Port  uint16
	Proto uint8
}

func (k Key) String() string {
	proto := "TCP"
	if k.Proto == ProtoUDP {
		proto = "UDP"
	}
	return fmt.Sprintf("%s/%s", netip.AddrPortFrom(k.Addr, k.Port), proto)
}

// Input is everything Render reads.
type Input struct {
	// Configs are the NodeProxyConfigs whose nodeSelector matches this node, in any order.
	Configs []*v1alpha1.NodeProxyConfig
	// ProxyPorts maps a listener name to the proxy port allocated for it on this
	// node. The agent's allocator owns it; Render only reads it.
	ProxyPorts map[string]uint16
	// Secrets is what the agent read of the Kubernetes Secrets the configs list
	// (SecretRefs), by "<namespace>/<name>". A listed Secret missing here has not
	// been read yet: what needs it waits, neither applied nor rejected.
	Secrets map[string]SecretState
	// RedirectCapacity is how many redirects the node's maps hold per address
	// family (zero: unbounded). Configs that do not fit, newest first, are rejected
	// with v1alpha1.ReasonRedirectCapacity rather than the whole set failing to program.
	RedirectCapacity int
}

// Applied identifies a config applied whole.
type Applied struct {
	Name            string `json:"name"`
	Generation      int64  `json:"generation"`
	ResourceVersion string `json:"resourceVersion"`
}

// Output is what the node applies. Slices are sorted and the xDS resources are
// sorted by name.
type Output struct {
	Redirects map[Key]uint16
	Resources xdsres.Resources
	// BackendServices are the Services whose EndpointSlices feed EDS, one per
	// namespace/name with the union of the ports asked for (none = every port).
	BackendServices []v1alpha1.BackendService
	// Secrets are the Kubernetes Secrets ("<namespace>/<name>") served over SDS
	// (their SDS secrets are in Resources): those listed by configs and used by a
	// rendered listener or cluster.
	Secrets       []string
	Announcements []v1alpha1.Announcement
	// Applied are the configs applied whole, by name.
	Applied []Applied
	// Rejected are the configs not applied and why, oldest first as in NodeProxy status.
	Rejected []v1alpha1.RejectedConfig
	// ListenersNeedingPorts are redirect targets of otherwise valid configs that
	// have no proxy port in Input.ProxyPorts. Those configs are held back (neither
	// Applied nor Rejected) until the agent allocates the ports and renders again.
	// Every other redirect target is in Resources.Listeners with its port.
	ListenersNeedingPorts []string
	// FragmentsNotHere counts filter-chain fragments and route tables left out
	// because no config applied on this node defines their listener (or a listener
	// using the table): a route attached to Gateways that run on other nodes. They
	// are not rejections; the configs carrying them are applied.
	FragmentsNotHere int
}

type rejection struct {
	reason  v1alpha1.ConditionReason
	message string
}

func reject(reason v1alpha1.ConditionReason, format string, args ...any) *rejection {
	return &rejection{reason: reason, message: fmt.Sprintf(format, args...)}
}

// Render translates the configs selecting this node into what the node applies.
// A Renderer gives the same output faster when few configs change between calls.
func Render(in Input) Output {
	return render(in, func(cfg *v1alpha1.NodeProxyConfig) (*parsed, *rejection) {
		return parse(cfg, redirectPorts(cfg, in.ProxyPorts), nil)
	}, nil)
}

// render is Render with the per-config step supplied, so that a Renderer can answer
// it from its cache, and with the Renderer's memo of the merge (nil: none).
func render(in Input, parseConfig func(*v1alpha1.NodeProxyConfig) (*parsed, *rejection), m *memo) Output {
	configs := m.byAge(in.Configs)
	st := renderState{rejected: map[string]*rejection{}, partial: map[string]*rejection{}, pending: map[string]bool{}}
	var candidates []*parsed
	for _, cfg := range configs {
		p, rej := parseConfig(cfg)
		if rej != nil {
			st.rejected[cfg.Name] = rej
			continue
		}
		p, so := applySecrets(p, in.Secrets)
		switch {
		case so.whole != nil:
			st.rejected[cfg.Name] = so.whole
			continue
		case so.holdWhole && !p.waitSecrets:
			held := *p
			held.waitSecrets = true
			p = &held
		}
		if so.partial != nil {
			st.partial[cfg.Name] = so.partial
		}
		if so.pending {
			st.pending[cfg.Name] = true
		}
		candidates = append(candidates, p)
	}
	candidates = st.fitCapacity(candidates, in.RedirectCapacity)

	// Each round rejects at least one more config or ends, and a config rejected
	// for producing an invalid resource no longer claims anything, so a younger
	// config it was blocking gets its turn in the next round.
	invalid := map[string]*rejection{}
	for {
		winners, conflicts, notHere := claim(candidates, invalid, in.Secrets, m)
		b := build(winners, in.Secrets, m)
		errs, unused := validate(b.res, b.derived, m)
		st.notHere = notHere + unusedTables(unused)
		if len(errs) == 0 {
			return st.finish(configs, winners, dropUnused(b.res, unused), conflicts, invalid, m)
		}
		culprits := blame(errs, b.owners)
		if len(culprits) == 0 {
			// Every resource has an owner, so this is unreachable unless xdsres.Validate
			// learns a check that names no resource; serve what is valid rather than nothing.
			res, _ := xdsres.Prune(dropUnused(b.res, unused))
			return st.finish(configs, winners, res, conflicts, invalid, m)
		}
		for name, r := range culprits {
			invalid[name] = r
		}
	}
}

// renderState is what render learns about configs before the merge.
type renderState struct {
	rejected map[string]*rejection
	// partial: served without the filter chains whose Secrets cannot be served.
	partial map[string]*rejection
	// pending: waiting for a Secret to be read.
	pending map[string]bool
	// notHere counts fragments for tables or listeners this node does not serve.
	notHere int
}

// unusedTables counts the route tables left out because no listener here uses them.
func unusedTables(unused map[string]bool) int {
	n := 0
	for key := range unused {
		if strings.HasPrefix(key, xdsres.KindRouteConfiguration+"/") {
			n++
		}
	}
	return n
}

// validate runs xdsres.Validate. A resource render derived itself (an SDS secret
// made from a listed Kubernetes Secret, a route table made from fragments) that
// nothing references is not held against anyone: listing a Secret only allows
// the agent to read it, and a table whose listener is held back or rejected
// (a Gateway listener waiting for its port, a TLS listener whose only chain
// waits for its Secret) must not take every route contributor down with it.
// They are returned as unused and left out, since the snapshot cache refuses an
// unreferenced RouteConfiguration or Secret.
func validate(res xdsres.Resources, derived map[string]bool, m *memo) (errs []xdsres.ResourceError, unused map[string]bool) {
	unused = map[string]bool{}
	errs = slices.DeleteFunc(m.validate(res), func(e xdsres.ResourceError) bool {
		key := e.Kind + "/" + e.Name
		if derived[key] && strings.HasPrefix(e.Message, "not referenced") {
			unused[key] = true
			return true
		}
		return false
	})
	return errs, unused
}

func dropUnused(res xdsres.Resources, unused map[string]bool) xdsres.Resources {
	if len(unused) == 0 {
		return res
	}
	res.Secrets = slices.DeleteFunc(slices.Clone(res.Secrets), func(s *tlsv3.Secret) bool { return unused[xdsres.KindSecret+"/"+s.GetName()] })
	res.Routes = slices.DeleteFunc(slices.Clone(res.Routes), func(r *routev3.RouteConfiguration) bool {
		return unused[xdsres.KindRouteConfiguration+"/"+r.GetName()]
	})
	return res
}

// byAge orders configs oldest first (creationTimestamp, then name): the order in
// which conflicts are settled. A repeated name can only come from a broken
// cache; the younger copy is ignored.
func (m *memo) byAge(in []*v1alpha1.NodeProxyConfig) []*v1alpha1.NodeProxyConfig {
	if out, ok := m.inLastOrder(in); ok {
		return out
	}
	out := byAge(in)
	m.rememberOrder(out)
	return out
}

func byAge(in []*v1alpha1.NodeProxyConfig) []*v1alpha1.NodeProxyConfig {
	out := make([]*v1alpha1.NodeProxyConfig, 0, len(in))
	for _, c := range in {
		if c != nil {
			out = append(out, c)
		}
	}
	// An unstable sort (a stable one of 10,000 configs was a sixth of a
	// render): olderFirst is a total order but for two copies of one object.
	slices.SortFunc(out, olderFirst)
	seen := make(map[string]bool, len(out))
	return slices.DeleteFunc(out, func(c *v1alpha1.NodeProxyConfig) bool {
		dup := seen[c.Name]
		seen[c.Name] = true
		return dup
	})
}

func olderFirst(a, b *v1alpha1.NodeProxyConfig) int {
	if c := a.CreationTimestamp.Time.Compare(b.CreationTimestamp.Time); c != 0 {
		return c
	}
	return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.UID, b.UID), cmp.Compare(a.ResourceVersion, b.ResourceVersion))
}

// blame maps validation errors to the configs that produced the offending
// resources, one message per config listing all its errors.
func blame(errs []xdsres.ResourceError, owners map[string][]*parsed) map[string]*rejection {
	out := map[string]*rejection{}
	for _, e := range errs {
		for _, p := range owners[e.Kind+"/"+e.Name] {
			if r := out[p.cfg.Name]; r != nil {
				r.message += "; " + e.Error()
				continue
			}
			out[p.cfg.Name] = &rejection{reason: v1alpha1.ReasonInvalidResource, message: e.Error()}
		}
	}
	return out
}

func (st *renderState) finish(configs []*v1alpha1.NodeProxyConfig, winners []*parsed, res xdsres.Resources,
	conflicts, invalid map[string]*rejection, m *memo) Output {
	out := Output{Redirects: map[Key]uint16{}, Resources: res, FragmentsNotHere: st.notHere}
	rejected := st.rejected
	for _, m := range []map[string]*rejection{conflicts, invalid} {
		for name, r := range m {
			rejected[name] = r
		}
	}
	won := make(map[string]bool, len(winners))
	for _, p := range winners {
		won[p.cfg.Name] = true
	}
	for _, cfg := range configs {
		r := rejected[cfg.Name]
		if r == nil && won[cfg.Name] {
			r = st.partial[cfg.Name]
		}
		if r != nil {
			out.Rejected = append(out.Rejected, v1alpha1.RejectedConfig{
				Name: cfg.Name, Generation: cfg.Generation, Reason: r.reason, Message: truncate(r.message),
			})
		}
	}

	listenerPorts := map[string]uint16{}
	for _, l := range res.Listeners {
		listenerPorts[l.GetName()] = uint16(l.GetAddress().GetSocketAddress().GetPortValue())
	}
	served := map[string]bool{}
	for _, s := range res.Secrets {
		served[s.GetName()] = true
	}
	var backends [][]v1alpha1.BackendService
	for _, p := range winners {
		if len(p.missingPorts) > 0 {
			out.ListenersNeedingPorts = append(out.ListenersNeedingPorts, p.missingPorts...)
			continue
		}
		if p.waitSecrets {
			continue
		}
		// A config served without some of its chains is reported as rejected;
		// one waiting for a Secret is neither applied nor rejected yet.
		if st.partial[p.cfg.Name] == nil && !st.pending[p.cfg.Name] {
			out.Applied = append(out.Applied, Applied{
				Name: p.cfg.Name, Generation: p.cfg.Generation, ResourceVersion: p.cfg.ResourceVersion,
			})
		}
		for _, r := range p.redirects {
			if port, ok := listenerPorts[r.listener]; ok {
				out.Redirects[r.key] = port
			}
		}
		if len(p.backends) > 0 {
			backends = append(backends, p.backends)
		}
		for _, ref := range p.secretRefs {
			if served[ref] || served[ref+caSuffix] {
				out.Secrets = append(out.Secrets, ref)
			}
		}
		out.Announcements = append(out.Announcements, p.announcements...)
	}

	slices.SortFunc(out.Applied, func(a, b Applied) int { return cmp.Compare(a.Name, b.Name) })
	out.ListenersNeedingPorts = sortedUnique(out.ListenersNeedingPorts)
	out.Secrets = sortedUnique(out.Secrets)
	out.BackendServices = m.backendServices(backends)
	out.Announcements = sortAnnouncements(out.Announcements)
	return out
}

// backendServices merges what the applied configs ask for: one entry per
// Service, sorted.
func backendServices(asked [][]v1alpha1.BackendService) []v1alpha1.BackendService {
	merged := map[types.NamespacedName]*v1alpha1.BackendService{}
	for _, bs := range asked {
		for _, b := range bs {
			mergeBackend(merged, b)
		}
	}
	var out []v1alpha1.BackendService
	for _, b := range merged {
		wholeOnly(b)
		out = append(out, *b)
	}
	slices.SortFunc(out, func(a, b v1alpha1.BackendService) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	return out
}

// mergeBackend keeps one entry per Service with the union of the ports asked
// for. Asking for every port (no ports) is the port "" in the union, because the
// clusters asking for specific ports still need their own EDS names: a Service
// asked for whole by one config and for port 80 by another is served as both
// "<ns>/<svc>" and "<ns>/<svc>:80". A Service only ever asked for whole keeps no ports.
func mergeBackend(into map[types.NamespacedName]*v1alpha1.BackendService, b v1alpha1.BackendService) {
	key := types.NamespacedName{Namespace: b.Namespace, Name: b.Name}
	ports := b.Ports
	if len(ports) == 0 {
		ports = whole
	}
	have, ok := into[key]
	if !ok {
		// b.Ports is the parsed config's own slice, which a Renderer keeps for the
		// next render: sorting it in place would corrupt that.
		b.Ports = sortedUnique(slices.Clone(ports))
		into[key] = &b
		return
	}
	// Thousands of configs name the same few Services with the same ports:
	// the union is re-made only when it grows.
	for _, p := range ports {
		if _, found := slices.BinarySearch(have.Ports, p); !found {
			have.Ports = sortedUnique(append(have.Ports, ports...))
			return
		}
	}
}

// whole is the port list of a Service asked for whole.
var whole = []string{""}

// wholeOnly turns the port list of a Service asked for whole only back into none.
func wholeOnly(b *v1alpha1.BackendService) {
	if len(b.Ports) == 1 && b.Ports[0] == "" {
		b.Ports = nil
	}
}

func sortAnnouncements(in []v1alpha1.Announcement) []v1alpha1.Announcement {
	compare := func(a, b v1alpha1.Announcement) int {
		return cmp.Or(
			netip.MustParseAddr(a.IP).Compare(netip.MustParseAddr(b.IP)),
			cmp.Compare(a.Service.Namespace, b.Service.Namespace),
			cmp.Compare(a.Service.Name, b.Service.Name),
			slices.Compare(a.Interfaces, b.Interfaces),
		)
	}
	slices.SortFunc(in, compare)
	return slices.CompactFunc(in, func(a, b v1alpha1.Announcement) bool { return compare(a, b) == 0 })
}

func sortedUnique(in []string) []string {
	if len(in) == 0 {
		return nil
	}
	slices.Sort(in)
	return slices.Compact(in)
}

func truncate(s string) string {
	if len(s) <= maxMessage {
		return s
	}
	cut := maxMessage - len("...")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}
