//go:build linux

package arp

import (
	"regexp"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
)

// An unanchored pattern such as "eth1" also matches a pod's "veth1". The responder
// answers there only if the agent's exclusion (the interfaces it leaves out of what L2
// eligibility is decided on) lets it: with the default exclusion it answers on eth1
// alone, exactly where the controller believes it does (issue 10 §3).
func TestExcludedInterfacesNeverAnswer(t *testing.T) {
	l := newLAN(t)
	veth := l.lab.AddInterface(l.node1, "veth1").MAC // on the same bridge: the client reaches both
	r := New(Options{Log: testr.New(t).WithName("node1"), LinkScanInterval: 200 * time.Millisecond,
		GratuitousInterval: 200 * time.Millisecond, Exclude: regexp.MustCompile(`^(veth|lxc)`)})
	runResponder(t, l.node1, r)
	r.Set([]Announcement{ann(vip4, "eth1")})
	waitListening(t, r, lanIf, true)
	for range 3 {
		res := l.arping(t, vip4, 1, 200*time.Millisecond)
		if res.macs[l.node1.MAC.String()] != 1 || res.macs[veth.String()] != 0 {
			t.Fatalf("want a reply from eth1 (%s) only, not veth1 (%s): %s", l.node1.MAC, veth, res.out)
		}
	}
	if s := r.Stats(); len(s.Interfaces) != 1 {
		t.Errorf("listening on %v, want eth1 only", s.Interfaces)
	}

	// The control: without the exclusion the same pattern answers on the pod's veth too.
	r2 := New(Options{Log: testr.New(t).WithName("node2"), LinkScanInterval: 200 * time.Millisecond})
	veth2 := l.lab.AddInterface(l.node2, "veth1").MAC
	runResponder(t, l.node2, r2)
	r2.Set([]Announcement{ann(otherIP4, "eth1")})
	waitListening(t, r2, "veth1", true)
	res := l.arping(t, otherIP4, 1, 500*time.Millisecond)
	if res.macs[veth2.String()] == 0 {
		t.Fatalf("control: without exclusion the veth should answer: %s", res.out)
	}
}
