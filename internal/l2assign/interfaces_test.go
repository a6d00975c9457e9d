package l2assign

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/portico-dev/portico/apis/v1alpha1"
)

// A node none of whose interfaces matches the policy's regexes could never answer for
// an address: it gets none, the policy status names it, and when it is the only live
// node the Service's condition says which interfaces it does have.
func TestNodeWithoutMatchingInterfaceIsNotEligible(t *testing.T) {
	nodes := liveNodes("node-a", "node-b", "node-c")
	nodes[2].Interfaces = []string{"uplink"}
	r := Assign(Input{Policies: []*Policy{policy("p")}, Services: manyServices(300), Nodes: nodes})
	if got := len(r.Announcements["node-c"]); got != 0 {
		t.Errorf("node-c, without eth1, announces %d addresses", got)
	}
	if got := len(r.Announcements["node-a"]) + len(r.Announcements["node-b"]); got != 300 {
		t.Errorf("node-a and node-b announce %d of 300 addresses", got)
	}
	pr := r.Policies["p"]
	if pr.EligibleNodes != 2 || pr.NoInterfaceCount != 1 || len(pr.NoInterface) != 1 || pr.NoInterface[0] != "node-c" {
		t.Errorf("policy status %+v", pr)
	}

	nodes[0].Live, nodes[0].Down = false, DownExpired
	nodes[1].Live, nodes[1].Down = false, DownReleased
	r = Assign(Input{Policies: []*Policy{policy("p")}, Services: manyServices(1), Nodes: nodes})
	sr := r.Services[types.NamespacedName{Namespace: "default", Name: "svc-0"}]
	if sr.Status != metav1.ConditionFalse || sr.Reason != v1alpha1.ReasonNoEligibleNode {
		t.Fatalf("got %+v", sr)
	}
	want := "node-c: no interface matches spec.interfaces of policy p (^eth1$); its agent reports uplink"
	if !strings.Contains(sr.Message, want) {
		t.Errorf("message\n got %q\nwant it to contain %q", sr.Message, want)
	}
	if len(r.Announcements) != 0 {
		t.Errorf("announced on %v", r.Announcements)
	}
}

// An interface that disappears moves the node's addresses away, and the Event says why.
func TestLosingTheInterfaceMovesTheAddresses(t *testing.T) {
	svcs := manyServices(60)
	first := Assign(Input{Policies: []*Policy{policy("p")}, Services: svcs, Nodes: liveNodes("node-a", "node-b")})
	nodes := liveNodes("node-a", "node-b")
	nodes[0].Interfaces = nil
	second := Assign(Input{Policies: []*Policy{policy("p")}, Services: svcs, Nodes: nodes, Previous: owners(first)})
	if len(second.Moves) == 0 || len(second.Announcements["node-a"]) != 0 {
		t.Fatalf("node-a kept %d addresses, %d moves", len(second.Announcements["node-a"]), len(second.Moves))
	}
	for _, m := range second.Moves {
		if m.From != "node-a" || m.To != "node-b" || !strings.Contains(m.Why, "its agent reports no interface ARP/NDP can run on") {
			t.Errorf("move %+v", m)
		}
	}
}

// Regexes match as the agent's responder matches them (unanchored, any of them); a
// policy without regexes needs just one interface, and a node reporting none gets nothing.
func TestInterfaceMatching(t *testing.T) {
	for _, c := range []struct {
		regexes, have []string
		want          bool
	}{
		{[]string{"^eth1$"}, []string{"eth1"}, true},
		{[]string{"^eth1$"}, []string{"eth10", "veth1"}, false},
		{[]string{"eth"}, []string{"veth1"}, true},
		{[]string{"^bond0$", "^eth1$"}, []string{"lo0", "eth1"}, true},
		{nil, []string{"anything"}, true},
		{nil, nil, false},
		{[]string{"^eth1$"}, nil, false},
	} {
		p := policy("p", func(s *v1alpha1.L2AnnouncementPolicySpec) { s.Interfaces = c.regexes })
		if got := p.MatchesInterfaces(c.have); got != c.want {
			t.Errorf("regexes %q on %q: got %v, want %v", c.regexes, c.have, got, c.want)
		}
	}
}

// Messages stay small however many interfaces a node has (pod veths on a busy node).
func TestNoInterfaceProblemIsBounded(t *testing.T) {
	have := make([]string, 200)
	for i := range have {
		have[i] = "veth" + strings.Repeat("x", i%7)
	}
	msg := NoInterfaceProblem([]*Policy{policy("p")}, have)
	if !strings.HasSuffix(msg, "and 195 more") || len(msg) > 300 {
		t.Errorf("message %q (%d bytes)", msg, len(msg))
	}
}
