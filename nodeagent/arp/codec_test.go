//go:build linux

package arp

import (
	marp "github.com/mdlayher/arp"
	"net"
	"net/netip"
	"regexp"
	"testing"
)

func TestARPCodecRoundTrip(t *testing.T) {
	smac, tmac := net.HardwareAddr{2, 0, 0, 0, 0, 1}, net.HardwareAddr{2, 0, 0, 0, 0, 2}
	sip, tip := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	b, err := marshalARP(marp.OperationReply, smac, sip, tmac, tip)
	if err != nil {
		t.Fatal(err)
	}
	// Ethernet pads short frames; the padding must not confuse the parser.
	got, ok := parseARP(append(b, make([]byte, 18)...))
	if !ok || got.Operation != marp.OperationReply || got.SenderIP != sip || got.TargetIP != tip ||
		got.SenderHardwareAddr.String() != smac.String() || got.TargetHardwareAddr.String() != tmac.String() {
		t.Fatalf("round trip: got %+v ok=%v", got, ok)
	}
	if _, ok := parseARP(b[:27]); ok {
		t.Fatal("truncated packet parsed")
	}
}

func TestSetAndMatching(t *testing.T) {
	r := New(Options{})
	r.Set([]Announcement{
		{IP: netip.MustParseAddr("::ffff:192.0.2.10")}, // 4-in-6 must match the IPv4 wire form
		{IP: netip.MustParseAddr("2001:db8::10"), Interfaces: []*regexp.Regexp{regexp.MustCompile(`^bond0$`)}},
	})
	cases := []struct {
		ifname string
		ip     string
		want   bool
	}{
		{"eth0", "192.0.2.10", true},
		{"eth0", "192.0.2.11", false},
		{"bond0", "2001:db8::10", true},
		{"eth0", "2001:db8::10", false},
	}
	for _, c := range cases {
		if got := r.shouldAnswer(c.ifname, netip.MustParseAddr(c.ip)); got != c.want {
			t.Errorf("shouldAnswer(%s, %s) = %v, want %v", c.ifname, c.ip, got, c.want)
		}
	}
	fenced := New(Options{Fenced: func() bool { return true }})
	fenced.Set([]Announcement{{IP: netip.MustParseAddr("192.0.2.10")}})
	if fenced.shouldAnswer("eth0", netip.MustParseAddr("192.0.2.10")) {
		t.Error("fenced responder would answer")
	}
	if fenced.Stats().Suppressed != 1 {
		t.Errorf("suppressed = %d, want 1", fenced.Stats().Suppressed)
	}
}
