package l2assign

import (
	"cmp"
	"fmt"
	"hash/fnv"
	"net/netip"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/ipam"
)

// Node is a candidate announcer.
type Node struct {
	Name   string
	Labels map[string]string
	// Live is true while the node's agent heartbeat is live; Down says why it is not.
	Live bool
	Down string
	// Interfaces are the names of the interfaces the node's agent can answer ARP/NDP on,
	// as it reported them; nil when it reported none (or has not reported yet). A policy
	// whose interface regexes match none of them cannot be answered there.
	Interfaces []string
}

// Service is what assignment needs of a Service.
type Service struct {
	Key    types.NamespacedName
	Labels map[string]string // the Service's own labels; pseudo-labels are added here
	// LoadBalancerIPs are the addresses of status.loadBalancer.ingress, ExternalIPs those of spec.externalIPs.
	LoadBalancerIPs []netip.Addr
	ExternalIPs     []netip.Addr
	// Local is externalTrafficPolicy: Local; only nodes in ReadyNodes (with a ready local
	// endpoint) may then announce, or traffic would reach a node that drops it.
	Local      bool
	ReadyNodes map[string]bool
}

// Key identifies one announced address of one Service (Services sharing an address
// through LB-IPAM's sharing key each have their own key, and the same node).
type Key struct {
	Service types.NamespacedName
	IP      netip.Addr
}

// Input is everything one assignment depends on.
type Input struct {
	Policies []*Policy
	Services []Service
	Nodes    []Node
	// Previous maps each address to the node that announced it before, to explain moves.
	Previous map[Key]string
	// Pools are the address ranges of every LoadBalancerIPPool: spec.externalIPs are
	// announced only inside them or a policy's externalIPCIDRs.
	Pools []ipam.Range
}

// Move is a change of announcer: From "" is a new announcement, To "" a lost one.
type Move struct {
	Key
	From, To string
	// Why From no longer announces ("heartbeat expired", "node-c became eligible").
	Why string
}

// ServiceResult is the L2Announced verdict for a Service with at least one address that
// a policy selects. Services with nothing to announce have no result and cost nothing.
type ServiceResult struct {
	Status  metav1.ConditionStatus
	Reason  v1alpha1.ConditionReason
	Message string
	Nodes   map[netip.Addr]string
}

// PolicyResult is the status of one policy.
type PolicyResult struct {
	Policy           *Policy
	SelectedServices int32
	AnnouncedIPs     int32
	EligibleNodes    int32
	// NoInterface names (at most maxListed, sorted) the nodes the policy would otherwise
	// use (selected, live, not excluded) that have no interface matching its regexes;
	// NoInterfaceCount counts them all.
	NoInterface      []string
	NoInterfaceCount int32
}

// Result is a complete assignment.
type Result struct {
	// Announcements per announcing node, sorted by address then Service. Nodes with
	// nothing to announce are absent.
	Announcements map[string][]v1alpha1.Announcement
	Services      map[types.NamespacedName]*ServiceResult
	Policies      map[string]*PolicyResult
	// Moves are sorted by Service and address.
	Moves []Move
}

type holder struct {
	svc      *Service
	policies []*Policy // valid policies selecting the Service and announcing this address's kind, by name
}

// WhyNotSelected explains a move away from a node when no policy selects the address any more.
const WhyNotSelected = "address no longer selected by any policy"

// maxListed bounds how many nodes a "no eligible node" message names, so that a
// condition stays readable (and small) on a large cluster.
const maxListed = 5

// Assign gives every selected address to one eligible node by rendezvous hashing: the
// node with the highest hash of (address, node) among those eligible wins. The choice
// depends only on the address and the eligible set, so a node that joins takes only the
// addresses it now wins and a node that leaves gives up only its own, and two controller
// instances (or a restarted one) agree without any stored state.
func Assign(in Input) *Result {
	res := &Result{
		Announcements: map[string][]v1alpha1.Announcement{},
		Services:      map[types.NamespacedName]*ServiceResult{},
		Policies:      map[string]*PolicyResult{},
	}
	policies := slices.Clone(in.Policies)
	slices.SortFunc(policies, func(a, b *Policy) int { return cmp.Compare(a.Name, b.Name) })
	nodes := slices.Clone(in.Nodes)
	slices.SortFunc(nodes, func(a, b Node) int { return cmp.Compare(a.Name, b.Name) })
	byName := make(map[string]*Node, len(nodes))
	for i := range nodes {
		byName[nodes[i].Name] = &nodes[i]
	}

	eligible := map[string]map[string]bool{}
	var valid []*Policy
	for _, p := range policies {
		pr := &PolicyResult{Policy: p}
		res.Policies[p.Name] = pr
		if !p.Valid() {
			continue
		}
		valid = append(valid, p)
		set := map[string]bool{}
		for _, n := range nodes {
			if !n.Live || excluded(n) || !p.SelectsNode(n.Labels) {
				continue
			}
			if !p.MatchesInterfaces(n.Interfaces) {
				pr.NoInterfaceCount++
				if len(pr.NoInterface) < maxListed {
					pr.NoInterface = append(pr.NoInterface, n.Name)
				}
				continue
			}
			set[n.Name] = true
		}
		eligible[p.Name] = set
		pr.EligibleNodes = int32(len(set))
	}

	byIP := map[netip.Addr][]holder{}
	svcIPs := map[types.NamespacedName][]netip.Addr{}
	notAllowed := map[types.NamespacedName]string{}
	for i := range in.Services {
		s := &in.Services[i]
		lbl := ServiceLabels(s.Key.Namespace, s.Key.Name, s.Labels)
		var selecting []*Policy
		for _, p := range valid {
			if p.SelectsService(lbl) {
				selecting = append(selecting, p)
			}
		}
		if len(selecting) == 0 {
			continue
		}
		perIP := map[netip.Addr][]*Policy{}
		var order []netip.Addr
		add := func(ips []netip.Addr, covers func(*Policy, netip.Addr) bool) {
			for _, ip := range ips {
				ip = ip.Unmap()
				for _, p := range selecting {
					if covers(p, ip) && !slices.Contains(perIP[ip], p) {
						if len(perIP[ip]) == 0 {
							order = append(order, ip)
						}
						perIP[ip] = append(perIP[ip], p)
					}
				}
			}
		}
		add(s.LoadBalancerIPs, func(p *Policy, _ netip.Addr) bool { return p.LoadBalancerIPs })
		add(s.ExternalIPs, func(p *Policy, ip netip.Addr) bool { return p.ExternalIPs && p.AllowsExternalIP(ip, in.Pools) })
		if msg := refusedExternal(s, selecting, perIP, in.Pools); msg != "" {
			notAllowed[s.Key] = msg
		}
		counted := map[string]bool{}
		for _, ip := range order {
			ps := perIP[ip]
			slices.SortFunc(ps, func(a, b *Policy) int { return cmp.Compare(a.Name, b.Name) })
			byIP[ip] = append(byIP[ip], holder{svc: s, policies: ps})
			svcIPs[s.Key] = append(svcIPs[s.Key], ip)
			for _, p := range ps {
				if !counted[p.Name] {
					counted[p.Name] = true
					res.Policies[p.Name].SelectedServices++
				}
			}
		}
	}

	announcedBy := map[string]map[netip.Addr]bool{} // policy -> addresses it supplied interfaces for
	failures := map[types.NamespacedName][]string{}
	current := map[Key]string{}
	for _, ip := range sortedAddrs(byIP) {
		holders := byIP[ip]
		node := pick(ip, candidates(holders, eligible, nodes))
		for _, h := range holders {
			key := Key{Service: h.svc.Key, IP: ip}
			if node == "" {
				failures[h.svc.Key] = append(failures[h.svc.Key],
					fmt.Sprintf("no eligible node for %s: %s", ip, whyNone(h, holders, nodes, eligible)))
				continue
			}
			current[key] = node
			for _, p := range h.policies {
				if eligible[p.Name][node] {
					res.Announcements[node] = append(res.Announcements[node], v1alpha1.Announcement{
						IP: ip.String(), Interfaces: interfaces(p),
						Service: v1alpha1.ServiceRef{Namespace: h.svc.Key.Namespace, Name: h.svc.Key.Name},
					})
					if announcedBy[p.Name] == nil {
						announcedBy[p.Name] = map[netip.Addr]bool{}
					}
					announcedBy[p.Name][ip] = true
					break
				}
			}
		}
	}
	for name, ips := range announcedBy {
		res.Policies[name].AnnouncedIPs = int32(len(ips))
	}
	for i := range in.Services {
		s := &in.Services[i]
		ips, ok := svcIPs[s.Key]
		if ok || notAllowed[s.Key] != "" {
			res.Services[s.Key] = verdict(s.Key, ips, current, failures[s.Key], notAllowed[s.Key])
		}
	}
	res.Moves = moves(in, current, byName, byIP, eligible)
	return res
}

// refusedExternal explains which of a Service's externalIPs the selecting policies
// announce as externalIPs but may not (outside every pool and their externalIPCIDRs),
// naming the rule; "" when none. An address announced anyway (it is also the Service's
// load-balancer address, or another policy allows it) is not refused.
func refusedExternal(s *Service, selecting []*Policy, perIP map[netip.Addr][]*Policy, pools []ipam.Range) string {
	var refused []string
	var by []*Policy
	for _, ip := range s.ExternalIPs {
		ip = ip.Unmap()
		if len(perIP[ip]) > 0 || slices.Contains(refused, ip.String()) {
			continue
		}
		for _, p := range selecting {
			if p.ExternalIPs && !p.AllowsExternalIP(ip, pools) {
				refused = append(refused, ip.String())
				if !slices.Contains(by, p) {
					by = append(by, p)
				}
				break
			}
		}
	}
	if len(refused) == 0 {
		return ""
	}
	return fmt.Sprintf("externalIPs %s not announced: policy %s announces spec.externalIPs only inside a LoadBalancerIPPool or its spec.externalIPCIDRs",
		strings.Join(refused, ", "), policyNames(by))
}

// interfaces copies a policy's regexes, nil when empty, so the announcement compares
// equal to what the apiserver returns (omitempty drops an empty list).
func interfaces(p *Policy) []string {
	if len(p.Interfaces) == 0 {
		return nil
	}
	return slices.Clone(p.Interfaces)
}

func excluded(n Node) bool { _, ok := n.Labels[LabelExcludeFromLB]; return ok }

// candidates are the nodes every holder of an address may use: an address shared by
// several Services must be answered by one node, which must then suit all of them.
func candidates(holders []holder, eligible map[string]map[string]bool, nodes []Node) []string {
	var out []string
	for _, n := range nodes {
		if slices.IndexFunc(holders, func(h holder) bool { return !suits(h, n.Name, eligible) }) < 0 {
			out = append(out, n.Name)
		}
	}
	return out
}

func suits(h holder, node string, eligible map[string]map[string]bool) bool {
	if h.svc.Local && !h.svc.ReadyNodes[node] {
		return false
	}
	for _, p := range h.policies {
		if eligible[p.Name][node] {
			return true
		}
	}
	return false
}

// pick returns the candidate with the highest rendezvous score; ties (never seen in
// practice with 64-bit scores) go to the smaller name so the result stays deterministic.
func pick(ip netip.Addr, cands []string) string {
	best, bestScore := "", uint64(0)
	for _, n := range cands {
		if s := Score(ip, n); best == "" || s > bestScore || (s == bestScore && n < best) {
			best, bestScore = n, s
		}
	}
	return best
}

// Score is the rendezvous weight of node for ip. It must never change between releases:
// a different function would move every address on upgrade. FNV-1a is stable and cheap;
// the splitmix64 finaliser spreads it, because FNV alone scores similar node names
// (node-1, node-2) too alike for an even share.
func Score(ip netip.Addr, node string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write(ip.Unmap().AsSlice())
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(node))
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// whyNone explains why no node can announce an address of h, naming at most maxListed
// of the nodes h's policies select, so the user sees what to fix.
func whyNone(h holder, holders []holder, nodes []Node, eligible map[string]map[string]bool) string {
	var reasons []string
	listed := 0
	for _, n := range nodes {
		if !slices.ContainsFunc(h.policies, func(p *Policy) bool { return p.SelectsNode(n.Labels) }) {
			continue
		}
		listed++
		if listed <= maxListed {
			reasons = append(reasons, n.Name+": "+nodeProblem(h, holders, n, eligible))
		}
	}
	if listed == 0 {
		return "no node matches the nodeSelector of policy " + policyNames(h.policies)
	}
	if listed > maxListed {
		reasons = append(reasons, fmt.Sprintf("and %d more", listed-maxListed))
	}
	return strings.Join(reasons, ", ")
}

func nodeProblem(h holder, holders []holder, n Node, eligible map[string]map[string]bool) string {
	switch {
	case !n.Live:
		return n.Down
	case excluded(n):
		return "excluded by label " + LabelExcludeFromLB
	case h.svc.Local && !h.svc.ReadyNodes[n.Name]:
		return "no ready endpoint (externalTrafficPolicy: Local)"
	case !slices.ContainsFunc(h.policies, func(p *Policy) bool { return eligible[p.Name][n.Name] }):
		var selecting []*Policy
		for _, p := range h.policies {
			if p.SelectsNode(n.Labels) {
				selecting = append(selecting, p)
			}
		}
		if len(selecting) == 0 {
			return "not selected by the nodeSelector of policy " + policyNames(h.policies)
		}
		return NoInterfaceProblem(selecting, n.Interfaces)
	}
	for _, o := range holders {
		if o.svc != h.svc && !suits(o, n.Name, eligible) {
			return "unsuitable for " + o.svc.Key.String() + ", which shares the address"
		}
	}
	return "not eligible"
}

// NoInterfaceProblem says that none of a node's reported interfaces matches the
// interfaces of the policies, and which interfaces the node does have, so that the user
// can tell a wrong regex from a node that is missing a link.
func NoInterfaceProblem(ps []*Policy, have []string) string {
	var res []string
	for _, p := range ps {
		res = append(res, p.Interfaces...)
	}
	msg := "no interface matches spec.interfaces of policy " + policyNames(ps)
	if len(res) > 0 {
		msg += " (" + strings.Join(res, ", ") + ")"
	}
	if len(have) == 0 {
		return msg + "; its agent reports no interface ARP/NDP can run on"
	}
	listed := have
	if len(listed) > maxListed {
		listed = listed[:maxListed]
	}
	msg += "; its agent reports " + strings.Join(listed, ", ")
	if len(have) > maxListed {
		msg += fmt.Sprintf(" and %d more", len(have)-maxListed)
	}
	return msg
}

func policyNames(ps []*Policy) string {
	names := make([]string, len(ps))
	for i, p := range ps {
		names[i] = p.Name
	}
	return strings.Join(names, ", ")
}

func verdict(svc types.NamespacedName, ips []netip.Addr, current map[Key]string, failures []string, refused string) *ServiceResult {
	sr := &ServiceResult{Nodes: map[netip.Addr]string{}}
	var nodeOrder []string
	byNode := map[string][]string{}
	for _, ip := range ips {
		if n, ok := current[Key{Service: svc, IP: ip}]; ok {
			sr.Nodes[ip] = n
			if byNode[n] == nil {
				nodeOrder = append(nodeOrder, n)
			}
			byNode[n] = append(byNode[n], ip.String())
		}
	}
	var parts []string
	for _, n := range nodeOrder {
		parts = append(parts, strings.Join(byNode[n], ", ")+" announced by "+n)
	}
	switch {
	case len(failures) > 0:
		sr.Status, sr.Reason = metav1.ConditionFalse, v1alpha1.ReasonNoEligibleNode
		parts = append(failures, parts...)
		if refused != "" {
			parts = append(parts, refused)
		}
	case refused != "":
		sr.Status, sr.Reason = metav1.ConditionFalse, v1alpha1.ReasonNotAllowed
		parts = append([]string{refused}, parts...)
	default:
		sr.Status, sr.Reason = metav1.ConditionTrue, v1alpha1.ReasonAnnounced
	}
	sr.Message = strings.Join(parts, "; ")
	return sr
}

// moves compares the new assignment with the previous one and explains every change.
func moves(in Input, current map[Key]string, nodes map[string]*Node, byIP map[netip.Addr][]holder, eligible map[string]map[string]bool) []Move {
	var out []Move
	for k, to := range current {
		if from := in.Previous[k]; from != to {
			out = append(out, Move{Key: k, From: from, To: to, Why: whyLeft(k, from, to, nodes, byIP, eligible)})
		}
	}
	for k, from := range in.Previous {
		if _, ok := current[k]; !ok && from != "" {
			out = append(out, Move{Key: k, From: from, Why: whyLeft(k, from, "", nodes, byIP, eligible)})
		}
	}
	slices.SortFunc(out, func(a, b Move) int {
		return cmp.Or(cmp.Compare(a.Service.String(), b.Service.String()), a.IP.Compare(b.IP))
	})
	return out
}

func whyLeft(k Key, from, to string, nodes map[string]*Node, byIP map[netip.Addr][]holder, eligible map[string]map[string]bool) string {
	if from == "" {
		return ""
	}
	holders := byIP[k.IP]
	i := slices.IndexFunc(holders, func(h holder) bool { return h.svc.Key == k.Service })
	if i < 0 {
		return WhyNotSelected
	}
	n, ok := nodes[from]
	switch {
	case !ok:
		return "node deleted"
	case !n.Live || excluded(*n) || !suits(holders[i], from, eligible):
		return nodeProblem(holders[i], holders, *n, eligible)
	case to != "":
		return to + " became eligible and ranks higher"
	}
	return "not eligible"
}

func sortedAddrs[V any](m map[netip.Addr]V) []netip.Addr {
	out := make([]netip.Addr, 0, len(m))
	for a := range m {
		out = append(out, a)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}
