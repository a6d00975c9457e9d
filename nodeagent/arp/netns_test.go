//go:build linux

package arp

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/vishvananda/netlink"

	"github.com/portico-dev/portico/internal/netlab"
	"github.com/portico-dev/portico/internal/privileged"
)

// Test LAN: node1, node2 and client on a netlab bridge. The VIPs are in the LAN's
// subnets but configured nowhere, so only a responder can make them resolvable.
var (
	lanV4    = netip.MustParsePrefix("192.168.77.0/24")
	lanV6    = netip.MustParsePrefix("fd00:77::/64")
	vip4     = netip.MustParseAddr("192.168.77.211")
	vip6     = netip.MustParseAddr("fd00:77::211")
	otherIP4 = netip.MustParseAddr("192.168.77.212") // announced by nobody
)

const lanIf = netlab.HostInterface // the LAN interface of nodes and client

type lan struct {
	lab                  *netlab.Lab
	node1, node2, client *netlab.Host
	clientIfIndex        int
	clientNL             *netlink.Handle
}

func newLAN(t testing.TB) *lan {
	t.Helper()
	privileged.Require(t)
	l := &lan{lab: netlab.New(t, lanV4, lanV6)}
	l.node1 = l.lab.AddHost("node1")
	l.node2 = l.lab.AddHost("node2")
	l.client = l.lab.AddHost("client")
	l.clientNL = l.client.Netlink()
	cl, err := l.clientNL.LinkByName(lanIf)
	if err != nil {
		t.Fatal(err)
	}
	l.clientIfIndex = cl.Attrs().Index
	return l
}

// combined runs a command in h and returns its stdout and stderr, whatever its exit
// status: the tools run through it report "no answer" by failing.
func combined(h *netlab.Host, name string, args ...string) string {
	out, _ := h.Command(context.Background(), name, args...).CombinedOutput()
	return string(out)
}

// runResponder runs r in h until the test ends.
func runResponder(t testing.TB, h *netlab.Host, r *Responder) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Do(func() error { return r.Run(ctx) }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run in %s: %v", h.Name, err)
		}
	})
}

func newResponder(t testing.TB, name string, fenced func() bool) *Responder {
	return New(Options{
		Log:                testr.NewWithInterface(t, testr.Options{LogTimestamp: true}).WithName(name),
		Fenced:             fenced,
		LinkScanInterval:   200 * time.Millisecond,
		GratuitousInterval: 200 * time.Millisecond,
	})
}

// neighMAC returns the client's neighbour entry for ip ("" if none or incomplete).
func (l *lan) neighMAC(t testing.TB, ip netip.Addr) (string, string) {
	t.Helper()
	fam := netlink.FAMILY_V4
	if ip.Is6() {
		fam = netlink.FAMILY_V6
	}
	neighs, err := l.clientNL.NeighList(l.clientIfIndex, fam)
	if err != nil {
		t.Fatalf("list neighbours: %v", err)
	}
	for _, n := range neighs {
		if a, ok := netip.AddrFromSlice(n.IP); ok && a.Unmap() == ip && len(n.HardwareAddr) == 6 {
			return n.HardwareAddr.String(), neighState(n.State)
		}
	}
	return "", ""
}

func neighState(s int) string {
	names := map[int]string{
		netlink.NUD_INCOMPLETE: "INCOMPLETE", netlink.NUD_REACHABLE: "REACHABLE", netlink.NUD_STALE: "STALE",
		netlink.NUD_DELAY: "DELAY", netlink.NUD_PROBE: "PROBE", netlink.NUD_FAILED: "FAILED",
		netlink.NUD_PERMANENT: "PERMANENT", netlink.NUD_NOARP: "NOARP",
	}
	if n, ok := names[s]; ok {
		return n
	}
	return fmt.Sprintf("0x%x", s)
}

// waitNeigh polls the client's neighbour table until ip maps to mac and returns how
// long that took.
func (l *lan) waitNeigh(t testing.TB, ip netip.Addr, mac net.HardwareAddr, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		got, state := l.neighMAC(t, ip)
		if got == mac.String() {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("client neighbour %s = %q (%s) after %v, want %s", ip, got, state, timeout, mac)
		}
		time.Sleep(500 * time.Microsecond)
	}
}

// resolveFromClient makes the client's kernel resolve ip by sending a UDP datagram to
// it (discard port): the datagram itself goes nowhere, the resolution is the point.
func (l *lan) resolveFromClient(t testing.TB, ip netip.Addr) {
	t.Helper()
	err := l.client.Do(func() error {
		c, err := net.Dial("udp", netip.AddrPortFrom(ip, 9).String())
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte("x"))
		return err
	})
	if err != nil {
		t.Fatalf("send to %s from client: %v", ip, err)
	}
}

// sysctl reads key as the host sees it.
func sysctl(h *netlab.Host, key string) string {
	return strings.TrimSpace(h.MustRun("sysctl", "-n", key))
}
