//go:build linux

package arp

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/portico-dev/portico/internal/privileged"
)

// Test LAN: a bridge in its own namespace with node1, node2 and client attached by veth
// pairs. The VIPs are in the LAN's subnets but configured nowhere, so only a responder
// can make them resolvable.
var (
	lanV4    = netip.MustParsePrefix("192.168.77.0/24")
	lanV6    = netip.MustParsePrefix("fd00:77::/64")
	vip4     = netip.MustParseAddr("192.168.77.211")
	vip6     = netip.MustParseAddr("fd00:77::211")
	otherIP4 = netip.MustParseAddr("192.168.77.212") // announced by nobody
)

const (
	lanIf    = "eth0" // interface name inside node and client namespaces
	bridgeIf = "br-lan"
)

var nsSeq atomic.Uint32

// inNS runs fn on an OS thread switched into ns. The goroutine exits still locked, so
// the runtime discards the thread and no other goroutine inherits its namespace.
func inNS(ns netns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := netns.Set(ns); err != nil {
			errc <- fmt.Errorf("setns: %w", err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

type namespace struct {
	name   string
	handle netns.NsHandle
}

// newNS creates a named network namespace (so `ip netns exec` reaches it) and deletes it
// on cleanup. DAD is switched off first: tentative addresses would make the first
// seconds of every test flaky for reasons unrelated to the responder.
func newNS(t testing.TB, role string) *namespace {
	t.Helper()
	name := fmt.Sprintf("portico-arp-%s-%d-%d", role, os.Getpid(), nsSeq.Add(1))
	var h netns.NsHandle
	errc := make(chan error, 1)
	go func() {
		// NewNamed moves the calling thread into the new namespace; see inNS.
		runtime.LockOSThread()
		var err error
		h, err = netns.NewNamed(name)
		if err == nil {
			for _, k := range []string{"all", "default"} {
				if err = os.WriteFile(filepath.Join("/proc/sys/net/ipv6/conf", k, "accept_dad"), []byte("0"), 0o644); err != nil {
					break
				}
			}
		}
		errc <- err
	}()
	if err := <-errc; err != nil {
		t.Fatalf("create netns %s: %v", name, err)
	}
	t.Cleanup(func() {
		h.Close()
		if err := netns.DeleteNamed(name); err != nil {
			t.Errorf("delete netns %s: %v", name, err)
		}
	})
	return &namespace{name: name, handle: h}
}

// exec runs a command inside the namespace and returns its combined output.
func (n *namespace) exec(args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", n.name}, args...)...).CombinedOutput()
	return string(out), err
}

func (n *namespace) netlink(t testing.TB) *netlink.Handle {
	t.Helper()
	h, err := netlink.NewHandleAt(n.handle)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

type lan struct {
	bridge               *namespace
	node1, node2, client *namespace
	mac1, mac2           net.HardwareAddr
	clientIfIndex        int
	clientNL             *netlink.Handle
	seq                  int
}

func newLAN(t testing.TB) *lan {
	t.Helper()
	privileged.Require(t)
	l := &lan{bridge: newNS(t, "lan")}
	bh := l.bridge.netlink(t)
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: bridgeIf}}
	if err := bh.LinkAdd(br); err != nil {
		t.Fatalf("add bridge: %v", err)
	}
	// Without an MLD querier a snooping bridge's forwarding of solicited-node multicast
	// depends on timing; the responder is under test here, not the bridge.
	if out, err := l.bridge.exec("ip", "link", "set", bridgeIf, "type", "bridge", "mcast_snooping", "0"); err != nil {
		t.Fatalf("disable snooping: %v: %s", err, out)
	}
	if err := bh.LinkSetUp(br); err != nil {
		t.Fatal(err)
	}
	l.node1 = newNS(t, "node1")
	l.node2 = newNS(t, "node2")
	l.client = newNS(t, "client")
	l.mac1 = l.attach(t, l.node1, lanIf, 11)
	l.mac2 = l.attach(t, l.node2, lanIf, 12)
	l.attach(t, l.client, lanIf, 100)
	l.clientNL = l.client.netlink(t)
	cl, err := l.clientNL.LinkByName(lanIf)
	if err != nil {
		t.Fatal(err)
	}
	l.clientIfIndex = cl.Attrs().Index
	return l
}

// attach plugs ns into the bridge through a veth named ifname inside ns, addressed with
// host number host in both LAN subnets, and returns its MAC.
func (l *lan) attach(t testing.TB, ns *namespace, ifname string, host byte) net.HardwareAddr {
	t.Helper()
	bh := l.bridge.netlink(t)
	l.seq++
	port := fmt.Sprintf("p%d", l.seq)
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: port},
		PeerName:      ifname,
		PeerNamespace: netlink.NsFd(int(ns.handle)),
	}
	if err := bh.LinkAdd(veth); err != nil {
		t.Fatalf("add veth %s: %v", port, err)
	}
	p, err := bh.LinkByName(port)
	if err != nil {
		t.Fatal(err)
	}
	br, err := bh.LinkByName(bridgeIf)
	if err != nil {
		t.Fatal(err)
	}
	if err := bh.LinkSetMaster(p, br); err != nil {
		t.Fatal(err)
	}
	if err := bh.LinkSetUp(p); err != nil {
		t.Fatal(err)
	}
	h := ns.netlink(t)
	for _, name := range []string{"lo", ifname} {
		lk, err := h.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.LinkSetUp(lk); err != nil {
			t.Fatal(err)
		}
	}
	lk, err := h.LinkByName(ifname)
	if err != nil {
		t.Fatal(err)
	}
	b4, b6 := lanV4.Addr().As4(), lanV6.Addr().As16()
	b4[3], b6[15] = host, host
	for _, pfx := range []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4(b4), lanV4.Bits()), netip.PrefixFrom(netip.AddrFrom16(b6), lanV6.Bits())} {
		ipn := &net.IPNet{IP: pfx.Addr().AsSlice(), Mask: net.CIDRMask(pfx.Bits(), pfx.Addr().BitLen())}
		if err := h.AddrAdd(lk, &netlink.Addr{IPNet: ipn, Flags: unix.IFA_F_NODAD}); err != nil {
			t.Fatalf("add %s: %v", pfx, err)
		}
	}
	return lk.Attrs().HardwareAddr
}

// runResponder runs r in ns until the test ends.
func runResponder(t testing.TB, ns *namespace, r *Responder) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		// Same discipline as inNS: the thread is never reused outside ns.
		runtime.LockOSThread()
		if err := netns.Set(ns.handle); err != nil {
			done <- err
			return
		}
		done <- r.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run in %s: %v", ns.name, err)
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
	err := inNS(l.client.handle, func() error {
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

// sysctl reads /proc/sys/<key> as seen from inside the namespace (/proc/sys/net follows
// the reading thread's network namespace).
func (n *namespace) sysctl(t testing.TB, key string) string {
	t.Helper()
	var v []byte
	err := inNS(n.handle, func() error {
		var err error
		v, err = os.ReadFile(filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/")))
		return err
	})
	if err != nil {
		t.Fatalf("sysctl %s: %v", key, err)
	}
	return strings.TrimSpace(string(v))
}
