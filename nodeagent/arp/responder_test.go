//go:build linux

package arp

import (
	"net"
	"net/netip"
	"os/exec"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mdlayher/ndp"
)

// arpingReply matches a reply line of Debian's arping (Thomas Habets), e.g.
// "42 bytes from 9a:..:01 (192.168.77.211): index=0 time=1.234 msec".
var arpingReply = regexp.MustCompile(`from ([0-9a-f:]{17}) \(([0-9.]+)\): index=\d+ time=([0-9.]+) (usec|msec|sec)`)

type arpingResult struct {
	macs  map[string]int
	times []time.Duration
	out   string
}

// arping sends count requests for ip from the client namespace, interval apart.
func (l *lan) arping(t testing.TB, ip netip.Addr, count int, interval time.Duration) arpingResult {
	t.Helper()
	if _, err := exec.LookPath("arping"); err != nil {
		t.Fatalf("arping not installed (apt-get install -y arping): %v", err)
	}
	out := combined(l.client, "arping", "-c", strconv.Itoa(count), "-W", strconv.FormatFloat(interval.Seconds(), 'f', 3, 64),
		"-i", lanIf, ip.String())
	res := arpingResult{macs: map[string]int{}, out: out}
	for _, m := range arpingReply.FindAllStringSubmatch(out, -1) {
		res.macs[m[1]]++
		v, _ := strconv.ParseFloat(m[3], 64)
		unit := map[string]time.Duration{"usec": time.Microsecond, "msec": time.Millisecond, "sec": time.Second}[m[4]]
		res.times = append(res.times, time.Duration(v*float64(unit)))
	}
	return res
}

var ndisc6Reply = regexp.MustCompile(`(?i)link-layer address: ([0-9a-f:]{17})`)

// ndisc6 solicits ip from the client namespace (multicast NS, one attempt) and returns
// the MACs of all advertisements seen.
func (l *lan) ndisc6(t testing.TB, ip netip.Addr) ([]string, string) {
	t.Helper()
	if _, err := exec.LookPath("ndisc6"); err != nil {
		t.Fatalf("ndisc6 not installed (apt-get install -y ndisc6): %v", err)
	}
	out := combined(l.client, "ndisc6", "-m", "-n", "-r", "1", "-w", "500", ip.String(), lanIf)
	var macs []string
	for _, m := range ndisc6Reply.FindAllStringSubmatch(out, -1) {
		macs = append(macs, strings.ToLower(m[1]))
	}
	return macs, out
}

func waitListening(t testing.TB, r *Responder, ifname string, want bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for slices.Contains(r.Stats().Interfaces, ifname) != want {
		if time.Now().After(deadline) {
			t.Fatalf("listening on %s = %v after 5s, want %v (interfaces %v)", ifname, !want, want, r.Stats().Interfaces)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func ann(ip netip.Addr, ifaces ...string) Announcement {
	a := Announcement{IP: ip, Service: "default/web"}
	for _, s := range ifaces {
		a.Interfaces = append(a.Interfaces, regexp.MustCompile(s))
	}
	return a
}

func TestAnswersOnlyOnAssignedNode(t *testing.T) {
	l := newLAN(t)
	r1, r2 := newResponder(t, "node1", nil), newResponder(t, "node2", nil)
	runResponder(t, l.node1, r1)
	runResponder(t, l.node2, r2)
	r1.Set([]Announcement{ann(vip4), ann(vip6)})
	r2.Set(nil)
	waitListening(t, r1, lanIf, true)

	res := l.arping(t, vip4, 3, 100*time.Millisecond)
	t.Logf("arping %s: replies by MAC %v (node1 %s, node2 %s)", vip4, res.macs, l.node1.MAC, l.node2.MAC)
	if len(res.macs) != 1 || res.macs[l.node1.MAC.String()] != 3 {
		t.Fatalf("want 3 replies, all from node1 %s; arping said:\n%s", l.node1.MAC, res.out)
	}
	if res := l.arping(t, otherIP4, 2, 100*time.Millisecond); len(res.macs) != 0 {
		t.Fatalf("unannounced %s answered: %v", otherIP4, res.macs)
	}

	macs, out := l.ndisc6(t, vip6)
	t.Logf("ndisc6 %s: advertisements from %v; output:\n%s", vip6, macs, out)
	if len(macs) != 1 || macs[0] != l.node1.MAC.String() {
		t.Fatalf("ndisc6 %s: got %v, want exactly [%s]", vip6, macs, l.node1.MAC)
	}

	// A client with a neighbour entry probes it with unicast NS to the VIP (NUD); the
	// node's IPv6 stack drops those, so this checks the packet-socket receive path.
	l.resolveFromClient(t, vip6)
	l.waitNeigh(t, vip6, l.node1.MAC, 2*time.Second)
	before := r1.Stats().PerIP[vip6].Replies
	if mac := l.unicastNS(t, vip6); mac != l.node1.MAC.String() {
		t.Fatalf("unicast NS for %s answered with %q, want %s", vip6, mac, l.node1.MAC)
	}
	if after := r1.Stats().PerIP[vip6].Replies; after <= before {
		t.Fatalf("node1 replies for %s did not grow (%d -> %d)", vip6, before, after)
	}

	s1, s2 := r1.Stats(), r2.Stats()
	t.Logf("node1 stats: replies=%d gratuitous=%d interfaces=%v perIP=%v", s1.Replies, s1.Gratuitous, s1.Interfaces, s1.PerIP)
	t.Logf("node2 stats: replies=%d gratuitous=%d interfaces=%v", s2.Replies, s2.Gratuitous, s2.Interfaces)
	if s2.Replies != 0 || s2.Gratuitous != 0 || len(s2.Interfaces) != 0 {
		t.Fatalf("node2 with an empty set sent something or listens: %+v", s2)
	}
}

// unicastNS sends a Neighbor Solicitation for target from the client to target's
// unicast address (as NUD does) and returns the target link-layer address of the
// advertisement that answers it.
func (l *lan) unicastNS(t testing.TB, target netip.Addr) string {
	t.Helper()
	var mac string
	err := l.client.Do(func() error {
		ifi, err := net.InterfaceByName(lanIf)
		if err != nil {
			return err
		}
		c, _, err := ndp.Listen(ifi, ndp.LinkLocal)
		if err != nil {
			return err
		}
		defer c.Close()
		ns := &ndp.NeighborSolicitation{TargetAddress: target, Options: []ndp.Option{
			&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: ifi.HardwareAddr},
		}}
		if err := c.WriteTo(ns, nil, target); err != nil {
			return err
		}
		if err := c.SetReadDeadline(time.Now().Add(time.Second)); err != nil {
			return err
		}
		for {
			m, _, _, err := c.ReadFrom()
			if err != nil {
				return err
			}
			na, ok := m.(*ndp.NeighborAdvertisement)
			if !ok || na.TargetAddress != target {
				continue
			}
			if !na.Solicited || !na.Override {
				t.Errorf("NA flags solicited=%v override=%v, want both", na.Solicited, na.Override)
			}
			for _, o := range na.Options {
				if lla, ok := o.(*ndp.LinkLayerAddress); ok && lla.Direction == ndp.Target {
					mac = lla.Addr.String()
				}
			}
			return nil
		}
	})
	if err != nil {
		t.Fatalf("unicast NS for %s: %v", target, err)
	}
	return mac
}

// TestGratuitousMovesClient moves each VIP between the nodes and checks that the
// client's neighbour entry follows without the client soliciting again.
func TestGratuitousMovesClient(t *testing.T) {
	l := newLAN(t)
	r1, r2 := newResponder(t, "node1", nil), newResponder(t, "node2", nil)
	runResponder(t, l.node1, r1)
	runResponder(t, l.node2, r2)

	// Linux updates an existing entry from any ARP whose sender IP matches it (and a
	// gratuitous one overrides even within locktime); arp_accept only decides whether
	// such a packet may create a missing entry. The IPv6 twins are accept_untracked_na
	// (create) and drop_unsolicited_na (ignore altogether).
	t.Logf("client sysctls: arp_accept=%s accept_untracked_na=%s drop_unsolicited_na=%s",
		sysctl(l.client, "net.ipv4.conf."+lanIf+".arp_accept"),
		sysctl(l.client, "net.ipv6.conf."+lanIf+".accept_untracked_na"),
		sysctl(l.client, "net.ipv6.conf."+lanIf+".drop_unsolicited_na"))

	for _, ip := range []netip.Addr{vip4, vip6} {
		r1.Set([]Announcement{ann(ip)})
		r2.Set(nil)
		waitListening(t, r1, lanIf, true)
		l.resolveFromClient(t, ip)
		l.waitNeigh(t, ip, l.node1.MAC, 2*time.Second)

		owners := [2]*Responder{r1, r2}
		macs := [2]net.HardwareAddr{l.node1.MAC, l.node2.MAC}
		var times []time.Duration
		cur := 0
		for run := 0; run < 6; run++ {
			next := 1 - cur
			repliesBefore := owners[next].Stats().Replies
			owners[cur].Set(nil)
			start := time.Now()
			owners[next].Set([]Announcement{ann(ip)})
			l.waitNeigh(t, ip, macs[next], 3*time.Second)
			d := time.Since(start)
			times = append(times, d)
			// Only gratuitous packets may have moved the entry: the new owner answered
			// no solicitation.
			if got := owners[next].Stats().Replies; got != repliesBefore {
				t.Fatalf("run %d: node%d sent %d solicited replies; the move must come from the gratuitous burst", run, next+1, got-repliesBefore)
			}
			mac, state := l.neighMAC(t, ip)
			t.Logf("%s run %d: Set on node%d -> client neighbour %s %s after %v", ip, run, next+1, mac, state, d)
			// Let the burst finish so the next move starts from a quiet LAN.
			time.Sleep(time.Duration(owners[next].opts.GratuitousCount) * owners[next].opts.GratuitousInterval)
			cur = next
		}
		sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
		t.Logf("FIGURE %s handover (Set on new node -> client neighbour updated): min %v median %v max %v over %d runs",
			ip, times[0], times[len(times)/2], times[len(times)-1], len(times))
	}
}

func TestFencedAnswersNothing(t *testing.T) {
	l := newLAN(t)
	var fenced atomic.Bool
	fenced.Store(true)
	r1 := newResponder(t, "node1", fenced.Load)
	runResponder(t, l.node1, r1)
	r1.Set([]Announcement{ann(vip4), ann(vip6)})
	waitListening(t, r1, lanIf, true)

	if res := l.arping(t, vip4, 2, 100*time.Millisecond); len(res.macs) != 0 {
		t.Fatalf("fenced responder answered ARP: %v", res.macs)
	}
	if macs, _ := l.ndisc6(t, vip6); len(macs) != 0 {
		t.Fatalf("fenced responder answered NDP: %v", macs)
	}
	s := r1.Stats()
	t.Logf("fenced stats: replies=%d gratuitous=%d suppressed=%d", s.Replies, s.Gratuitous, s.Suppressed)
	if s.Replies != 0 || s.Gratuitous != 0 || s.Suppressed == 0 {
		t.Fatalf("fenced: want no packets sent and suppressed > 0, got %+v", s)
	}

	fenced.Store(false)
	if res := l.arping(t, vip4, 1, 100*time.Millisecond); res.macs[l.node1.MAC.String()] != 1 {
		t.Fatalf("unfenced responder did not answer: %s", res.out)
	}
}

func TestInterfaceSelection(t *testing.T) {
	l := newLAN(t)
	r1 := newResponder(t, "node1", nil)
	runResponder(t, l.node1, r1)

	r1.Set([]Announcement{ann(vip4, "^nomatch$"), ann(vip6, "^nomatch$")})
	time.Sleep(3 * r1.opts.LinkScanInterval) // a few scans must pass without incident
	if s := r1.Stats(); len(s.Interfaces) != 0 || s.Gratuitous != 0 {
		t.Fatalf("regex matching nothing: listening on %v, gratuitous %d", s.Interfaces, s.Gratuitous)
	}
	if res := l.arping(t, vip4, 2, 100*time.Millisecond); len(res.macs) != 0 {
		t.Fatalf("answered on a non-matching interface: %v", res.macs)
	}
	if macs, _ := l.ndisc6(t, vip6); len(macs) != 0 {
		t.Fatalf("answered NDP on a non-matching interface: %v", macs)
	}

	// An interface that appears later is picked up by the link scan...
	r1.Set([]Announcement{ann(vip4, "^eth2$")})
	mac := l.lab.AddInterface(l.node1, "eth2").MAC
	waitListening(t, r1, "eth2", true)
	if res := l.arping(t, vip4, 1, 100*time.Millisecond); res.macs[mac.String()] != 1 || len(res.macs) != 1 {
		t.Fatalf("want the reply from eth2 %s only: %s", mac, res.out)
	}
	// ...and one that disappears is dropped without taking the responder down.
	l.node1.MustRun("ip", "link", "del", "eth2")
	waitListening(t, r1, "eth2", false)
	r1.Set([]Announcement{ann(vip4, "^eth")})
	waitListening(t, r1, lanIf, true)
	if res := l.arping(t, vip4, 1, 100*time.Millisecond); res.macs[l.node1.MAC.String()] != 1 {
		t.Fatalf("responder did not recover after the interface went away: %s", res.out)
	}
}

// TestReplyLatencyFigure reports the round trip arping measures (client namespace,
// through the bridge, to the responder and back).
func TestReplyLatencyFigure(t *testing.T) {
	l := newLAN(t)
	r1 := newResponder(t, "node1", nil)
	runResponder(t, l.node1, r1)
	r1.Set([]Announcement{ann(vip4)})
	waitListening(t, r1, lanIf, true)
	res := l.arping(t, vip4, 50, 20*time.Millisecond)
	if len(res.times) < 45 {
		t.Fatalf("only %d of 50 replies:\n%s", len(res.times), res.out)
	}
	sort.Slice(res.times, func(i, j int) bool { return res.times[i] < res.times[j] })
	n := len(res.times)
	t.Logf("FIGURE arping reply latency over %d requests: min %v median %v p90 %v max %v",
		n, res.times[0], res.times[n/2], res.times[n*9/10], res.times[n-1])
}

// TestKernelAnswersForVIPOnAnInterface documents why the VIPs must stay off the node's
// interfaces (or the node needs arp_ignore): Linux answers ARP for any local address on
// any interface (weak host model), as happens with kube-proxy's IPVS mode putting
// LoadBalancer IPs on kube-ipvs0 or with a VIP on lo (used here: this kernel has no
// dummy driver). NDP is strict per interface and is not affected.
func TestKernelAnswersForVIPOnAnInterface(t *testing.T) {
	l := newLAN(t)
	r1 := newResponder(t, "node1", nil)
	runResponder(t, l.node1, r1)
	r1.Set([]Announcement{ann(vip4), ann(vip6)})
	waitListening(t, r1, lanIf, true)

	for _, cmd := range [][]string{
		{"ip", "addr", "add", vip4.String() + "/32", "dev", "lo"},
		{"ip", "addr", "add", vip6.String() + "/128", "dev", "lo"},
	} {
		l.node2.MustRun(cmd[0], cmd[1:]...)
	}
	res := l.arping(t, vip4, 2, 100*time.Millisecond)
	t.Logf("VIP on node2's lo, arp_ignore=%s: ARP replies by MAC %v (node1 %s, node2 %s)",
		sysctl(l.node2, "net.ipv4.conf.all.arp_ignore"), res.macs, l.node1.MAC, l.node2.MAC)
	if res.macs[l.node2.MAC.String()] == 0 {
		t.Fatalf("expected node2's kernel to answer for %s with arp_ignore=0: %v", vip4, res.macs)
	}
	macs, _ := l.ndisc6(t, vip6)
	t.Logf("VIP on node2's lo: NDP advertisements from %v", macs)
	if slices.Contains(macs, l.node2.MAC.String()) {
		t.Fatalf("node2's kernel answered NDP for an address on another interface: %v", macs)
	}

	l.node2.MustRun("sysctl", "-q", "-w", "net.ipv4.conf.all.arp_ignore=1")
	res = l.arping(t, vip4, 2, 100*time.Millisecond)
	t.Logf("arp_ignore=1 on node2: ARP replies by MAC %v", res.macs)
	if len(res.macs) != 1 || res.macs[l.node1.MAC.String()] != 2 {
		t.Fatalf("with arp_ignore=1 only node1 should answer: %v", res.macs)
	}
}
