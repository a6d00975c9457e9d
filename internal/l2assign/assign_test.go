package l2assign

import (
	"fmt"
	"github.com/portico-dev/portico/internal/ipam"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/portico-dev/portico/apis/v1alpha1"
)

func policy(name string, mod ...func(*v1alpha1.L2AnnouncementPolicySpec)) *Policy {
	p := &v1alpha1.L2AnnouncementPolicy{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.L2AnnouncementPolicySpec{Interfaces: []string{"^eth1$"}, LoadBalancerIPs: true, ExternalIPs: true}}
	for _, m := range mod {
		m(&p.Spec)
	}
	return ParsePolicy(p)
}

func liveNodes(names ...string) []Node {
	out := make([]Node, len(names))
	for i, n := range names {
		out[i] = Node{Name: n, Labels: map[string]string{"kubernetes.io/hostname": n}, Live: true, Interfaces: []string{"eth1"}}
	}
	return out
}

func lbService(ns, name string, ips ...string) Service {
	s := Service{Key: types.NamespacedName{Namespace: ns, Name: name}}
	for _, ip := range ips {
		s.LoadBalancerIPs = append(s.LoadBalancerIPs, netip.MustParseAddr(ip))
	}
	return s
}

// manyServices returns n Services with one address each, spread over 10.1.0.0/16.
func manyServices(n int) []Service {
	out := make([]Service, n)
	for i := range out {
		out[i] = lbService("default", fmt.Sprintf("svc-%d", i), fmt.Sprintf("10.1.%d.%d", i/250, i%250+1))
	}
	return out
}

func owners(r *Result) map[Key]string {
	out := map[Key]string{}
	for node, anns := range r.Announcements {
		for _, a := range anns {
			out[Key{Service: types.NamespacedName{Namespace: a.Service.Namespace, Name: a.Service.Name}, IP: netip.MustParseAddr(a.IP)}] = node
		}
	}
	return out
}

func nodeNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("node-%d", i)
	}
	return out
}

func TestRendezvousRemovingANodeMovesOnlyItsShare(t *testing.T) {
	const ips, n = 3000, 10
	svcs := manyServices(ips)
	before := owners(Assign(Input{Policies: []*Policy{policy("p")}, Services: svcs, Nodes: liveNodes(nodeNames(n)...)}))
	if len(before) != ips {
		t.Fatalf("assigned %d of %d addresses", len(before), ips)
	}
	gone := "node-3"
	after := owners(Assign(Input{Policies: []*Policy{policy("p")}, Services: svcs,
		Nodes: liveNodes(append(nodeNames(n)[:3], nodeNames(n)[4:]...)...)}))
	moved := 0
	for k, was := range before {
		if after[k] == was {
			continue
		}
		moved++
		if was != gone {
			t.Errorf("%v moved from %s to %s although only %s left", k, was, after[k], gone)
		}
		if after[k] == gone || after[k] == "" {
			t.Errorf("%v went to %q", k, after[k])
		}
	}
	// Only the departed node's share moves: about 1/N of all addresses.
	if lo, hi := ips/n*7/10, ips/n*13/10; moved < lo || moved > hi {
		t.Errorf("%d of %d addresses moved, want about %d", moved, ips, ips/n)
	}

	// And when it comes back, exactly those return and nothing else moves.
	back := owners(Assign(Input{Policies: []*Policy{policy("p")}, Services: svcs, Nodes: liveNodes(nodeNames(n)...)}))
	for k, was := range before {
		if back[k] != was {
			t.Errorf("%v: %s before, %s after the node returned", k, was, back[k])
		}
	}
}

func TestRendezvousSpreadsEvenly(t *testing.T) {
	const ips = 3000
	count := map[string]int{}
	for _, node := range owners(Assign(Input{Policies: []*Policy{policy("p")}, Services: manyServices(ips), Nodes: liveNodes("node-a", "node-b", "node-c")})) {
		count[node]++
	}
	for _, n := range []string{"node-a", "node-b", "node-c"} {
		if c := count[n]; c < ips/3*85/100 || c > ips/3*115/100 {
			t.Errorf("%s announces %d of %d addresses, want about %d: %v", n, c, ips, ips/3, count)
		}
	}
}

func TestDeterministicWhateverTheInputOrder(t *testing.T) {
	svcs := manyServices(200)
	nodes := liveNodes(nodeNames(7)...)
	want := owners(Assign(Input{Policies: []*Policy{policy("a"), policy("b")}, Services: svcs, Nodes: nodes}))
	for i := range 5 {
		r := rand.New(rand.NewPCG(uint64(i), 1))
		s2, n2 := append([]Service(nil), svcs...), append([]Node(nil), nodes...)
		r.Shuffle(len(s2), func(i, j int) { s2[i], s2[j] = s2[j], s2[i] })
		r.Shuffle(len(n2), func(i, j int) { n2[i], n2[j] = n2[j], n2[i] })
		got := owners(Assign(Input{Policies: []*Policy{policy("b"), policy("a")}, Services: s2, Nodes: n2}))
		if len(got) != len(want) {
			t.Fatalf("run %d: %d assignments, want %d", i, len(got), len(want))
		}
		for k, v := range want {
			if got[k] != v {
				t.Fatalf("run %d: %v on %s, want %s", i, k, got[k], v)
			}
		}
	}
}

func TestExcludedAndDeadNodesAreNeverChosen(t *testing.T) {
	nodes := liveNodes("node-a", "node-b", "node-c")
	nodes[0].Labels[LabelExcludeFromLB] = ""
	nodes[1].Live, nodes[1].Down = false, DownExpired
	r := Assign(Input{Policies: []*Policy{policy("p")}, Services: manyServices(100), Nodes: nodes})
	if len(r.Announcements) != 1 || len(r.Announcements["node-c"]) != 100 {
		t.Fatalf("want everything on node-c, got %d nodes", len(r.Announcements))
	}
	if got := r.Policies["p"]; got.EligibleNodes != 1 || got.SelectedServices != 100 || got.AnnouncedIPs != 100 {
		t.Errorf("policy status %+v", got)
	}

	nodes[2].Live, nodes[2].Down = false, DownReleased
	r = Assign(Input{Policies: []*Policy{policy("p")}, Services: manyServices(1), Nodes: nodes})
	sr := r.Services[types.NamespacedName{Namespace: "default", Name: "svc-0"}]
	if sr.Status != metav1.ConditionFalse || sr.Reason != v1alpha1.ReasonNoEligibleNode {
		t.Fatalf("got %+v", sr)
	}
	want := "no eligible node for 10.1.0.1: node-a: excluded by label node.kubernetes.io/exclude-from-external-load-balancers, " +
		"node-b: heartbeat expired, node-c: heartbeat released (agent stopped)"
	if sr.Message != want {
		t.Errorf("message\n got %q\nwant %q", sr.Message, want)
	}
}

func TestLocalTrafficFollowsReadyEndpoints(t *testing.T) {
	s := lbService("shop", "web", "10.2.0.1", "10.2.0.2", "10.2.0.3")
	s.Local, s.ReadyNodes = true, map[string]bool{"node-b": true}
	r := Assign(Input{Policies: []*Policy{policy("p")}, Services: []Service{s}, Nodes: liveNodes("node-a", "node-b", "node-c")})
	if len(r.Announcements) != 1 || len(r.Announcements["node-b"]) != 3 {
		t.Fatalf("want all three on node-b, got %+v", r.Announcements)
	}
	sr := r.Services[s.Key]
	if sr.Status != metav1.ConditionTrue || sr.Message != "10.2.0.1, 10.2.0.2, 10.2.0.3 announced by node-b" {
		t.Errorf("got %+v", sr)
	}

	// The endpoint moves: so do the addresses, and the event says why.
	prev := owners(r)
	s.ReadyNodes = map[string]bool{"node-c": true}
	r = Assign(Input{Policies: []*Policy{policy("p")}, Services: []Service{s}, Nodes: liveNodes("node-a", "node-b", "node-c"), Previous: prev})
	if len(r.Announcements["node-c"]) != 3 || len(r.Moves) != 3 {
		t.Fatalf("want three moves to node-c, got %+v", r.Moves)
	}
	if m := r.Moves[0]; m.From != "node-b" || m.To != "node-c" || m.Why != "no ready endpoint (externalTrafficPolicy: Local)" {
		t.Errorf("move %+v", m)
	}

	s.ReadyNodes = nil
	r = Assign(Input{Policies: []*Policy{policy("p")}, Services: []Service{s}, Nodes: liveNodes("node-a")})
	if got := r.Services[s.Key].Message; !strings.Contains(got, "node-a: no ready endpoint (externalTrafficPolicy: Local)") {
		t.Errorf("message %q", got)
	}
}

func TestPolicySelection(t *testing.T) {
	onlyShop := policy("shop-only", func(s *v1alpha1.L2AnnouncementPolicySpec) {
		s.ServiceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{LabelServiceNamespace: "shop"}}
		s.ExternalIPs = false
	})
	gpu := policy("gpu-nodes", func(s *v1alpha1.L2AnnouncementPolicySpec) {
		s.NodeSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"gpu": "true"}}
		s.ServiceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{LabelServiceName: "ext"}}
		s.LoadBalancerIPs, s.Interfaces = false, []string{"^bond0$"}
	})
	web := lbService("shop", "web", "10.3.0.1")
	web.ExternalIPs = []netip.Addr{netip.MustParseAddr("10.3.9.9")} // externalIPs not announced by shop-only
	other := lbService("blog", "web", "10.3.0.2")                   // other namespace: not selected
	ext := Service{Key: types.NamespacedName{Namespace: "blog", Name: "ext"}, ExternalIPs: []netip.Addr{netip.MustParseAddr("10.3.0.3")}}
	none := Service{Key: types.NamespacedName{Namespace: "shop", Name: "no-address"}}
	nodes := liveNodes("node-a", "node-b")
	nodes[1].Labels["gpu"] = "true"
	nodes[1].Interfaces = []string{"bond0", "eth1"}

	pool := []ipam.Range{{First: netip.MustParseAddr("10.3.0.0"), Last: netip.MustParseAddr("10.3.0.255")}}
	r := Assign(Input{Policies: []*Policy{onlyShop, gpu}, Services: []Service{web, other, ext, none}, Nodes: nodes, Pools: pool})
	got := owners(r)
	if len(got) != 2 {
		t.Fatalf("want 2 announced addresses, got %v", got)
	}
	if got[Key{web.Key, netip.MustParseAddr("10.3.0.1")}] == "" {
		t.Error("shop/web's load-balancer address is not announced")
	}
	if got[Key{ext.Key, netip.MustParseAddr("10.3.0.3")}] != "node-b" {
		t.Errorf("blog/ext's external address must go to the only gpu node, got %v", got)
	}
	for _, a := range r.Announcements["node-b"] {
		if a.IP == "10.3.0.3" && (len(a.Interfaces) != 1 || a.Interfaces[0] != "^bond0$") {
			t.Errorf("interfaces of the selecting policy expected, got %v", a.Interfaces)
		}
	}
	// Services with nothing to announce have no verdict: no condition, no write.
	for _, k := range []types.NamespacedName{other.Key, none.Key} {
		if _, ok := r.Services[k]; ok {
			t.Errorf("%v has a verdict", k)
		}
	}
	if p := r.Policies["shop-only"]; p.SelectedServices != 1 || p.AnnouncedIPs != 1 || p.EligibleNodes != 2 {
		t.Errorf("shop-only status %+v", p)
	}
	if p := r.Policies["gpu-nodes"]; p.SelectedServices != 1 || p.AnnouncedIPs != 1 || p.EligibleNodes != 1 {
		t.Errorf("gpu-nodes status %+v", p)
	}
}

func TestInvalidPolicyAnnouncesNothingAndSaysWhy(t *testing.T) {
	bad := policy("bad", func(s *v1alpha1.L2AnnouncementPolicySpec) {
		s.Interfaces = []string{"^eth1$", "eth(["}
		s.NodeSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "zone", Operator: "Near"}}}
	})
	if bad.Valid() {
		t.Fatal("want errors")
	}
	msgs := bad.Errors.ToAggregate().Error()
	for _, want := range []string{"spec.interfaces[1]", "not a valid RE2 regular expression", "spec.nodeSelector.matchExpressions[0].operator"} {
		if !strings.Contains(msgs, want) {
			t.Errorf("errors %q lack %q", msgs, want)
		}
	}
	r := Assign(Input{Policies: []*Policy{bad}, Services: manyServices(3), Nodes: liveNodes("node-a")})
	if len(r.Announcements) != 0 || len(r.Services) != 0 || r.Policies["bad"].SelectedServices != 0 {
		t.Errorf("an invalid policy must announce nothing: %+v", r)
	}
}

func TestSharedAddressGoesToOneNodeSuitingAllHolders(t *testing.T) {
	a := lbService("shop", "http", "10.4.0.1")
	b := lbService("shop", "dns", "10.4.0.1")
	b.Local, b.ReadyNodes = true, map[string]bool{"node-a": true, "node-c": true}
	r := Assign(Input{Policies: []*Policy{policy("p")}, Services: []Service{a, b}, Nodes: liveNodes("node-a", "node-b", "node-c")})
	got := owners(r)
	na, nb := got[Key{a.Key, netip.MustParseAddr("10.4.0.1")}], got[Key{b.Key, netip.MustParseAddr("10.4.0.1")}]
	if na == "" || na != nb || na == "node-b" {
		t.Errorf("shared address on %q and %q, want one node with a ready endpoint", na, nb)
	}
}

func TestMovesExplainWhy(t *testing.T) {
	svcs := manyServices(50)
	nodes := liveNodes("node-a", "node-b", "node-c")
	first := Assign(Input{Policies: []*Policy{policy("p")}, Services: svcs, Nodes: nodes})
	if len(first.Moves) != 50 || first.Moves[0].From != "" || first.Moves[0].To == "" {
		t.Fatalf("first assignment: want 50 new announcements, got %d", len(first.Moves))
	}
	prev := owners(first)
	nodes[0].Live, nodes[0].Down = false, DownExpired
	second := Assign(Input{Policies: []*Policy{policy("p")}, Services: svcs, Nodes: nodes, Previous: prev})
	if len(second.Moves) == 0 {
		t.Fatal("node-a held nothing?")
	}
	for _, m := range second.Moves {
		if m.From != "node-a" || m.To == "" || m.To == "node-a" || m.Why != DownExpired {
			t.Errorf("move %+v", m)
		}
	}
	// node-a comes back: it takes back exactly its share, and the others say why.
	third := Assign(Input{Policies: []*Policy{policy("p")}, Services: svcs, Nodes: liveNodes("node-a", "node-b", "node-c"), Previous: owners(second)})
	if len(third.Moves) != len(second.Moves) {
		t.Errorf("%d moved away, %d came back", len(second.Moves), len(third.Moves))
	}
	for _, m := range third.Moves {
		if m.To != "node-a" || m.Why != "node-a became eligible and ranks higher" {
			t.Errorf("move %+v", m)
		}
	}
	// Steady state: nothing moves.
	if again := Assign(Input{Policies: []*Policy{policy("p")}, Services: svcs, Nodes: liveNodes("node-a", "node-b", "node-c"), Previous: owners(third)}); len(again.Moves) != 0 {
		t.Errorf("steady state moved %d addresses", len(again.Moves))
	}
}

func BenchmarkAssign1000Services3Nodes(b *testing.B) {
	in := Input{Policies: []*Policy{policy("p")}, Services: manyServices(1000), Nodes: liveNodes("node-a", "node-b", "node-c")}
	for b.Loop() {
		Assign(in)
	}
}
