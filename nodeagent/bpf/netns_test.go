//go:build linux

package bpf

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/portico-dev/portico/internal/privileged"
	"github.com/portico-dev/portico/nodeagent/bpf/routing"
)

// Test topology: client namespace --veth-- node namespace. The VIPs are not configured
// anywhere; the client routes them to the node, where only the redirect can deliver them.
var (
	clientV4 = netip.MustParsePrefix("10.99.0.1/24")
	nodeV4   = netip.MustParsePrefix("10.99.0.2/24")
	clientV6 = netip.MustParsePrefix("fd00:99::1/64")
	nodeV6   = netip.MustParsePrefix("fd00:99::2/64")
	vipV4    = netip.MustParseAddr("10.99.1.10")
	vipV6    = netip.MustParseAddr("fd00:99:1::10")
)

const (
	nodeIf    = "veth-node"
	clientIf  = "veth-client"
	proxyPort = 15001
	vipPort   = 80
)

var nsSeq atomic.Uint32

// mountBPFFS gives the test a private bpffs, so pins never touch /sys/fs/bpf and all of
// them disappear (detaching pinned links) when the mount goes away.
func mountBPFFS(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("bpf", dir, "bpf", 0, "mode=0700"); err != nil {
		t.Fatalf("mount bpffs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount bpffs: %v", err)
		}
	})
	return filepath.Join(dir, "portico")
}

// inNS runs fn on an OS thread switched into ns. The thread is never handed back to the
// scheduler: the goroutine exits still locked, so the runtime discards the thread and no
// other goroutine can inherit its namespace.
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

// newNS creates a named network namespace (visible to `ip netns` while the test runs)
// and deletes it on cleanup.
func newNS(t testing.TB, role string) netns.NsHandle {
	t.Helper()
	name := fmt.Sprintf("portico-%s-%d-%d", role, os.Getpid(), nsSeq.Add(1))
	var ns netns.NsHandle
	errc := make(chan error, 1)
	go func() {
		// NewNamed moves the calling thread into the new namespace; see inNS.
		runtime.LockOSThread()
		h, err := netns.NewNamed(name)
		ns = h
		errc <- err
	}()
	if err := <-errc; err != nil {
		t.Fatalf("create netns %s: %v", name, err)
	}
	t.Cleanup(func() {
		ns.Close()
		if err := netns.DeleteNamed(name); err != nil {
			t.Errorf("delete netns %s: %v", name, err)
		}
	})
	return ns
}

type topology struct {
	node, client netns.NsHandle
}

// newTopology builds client and node namespaces joined by a veth pair, with the VIPs
// routed from the client to the node's veth address.
func newTopology(t testing.TB) *topology {
	t.Helper()
	privileged.Require(t)
	top := &topology{node: newNS(t, "node"), client: newNS(t, "client")}
	nh, err := netlink.NewHandleAt(top.node)
	if err != nil {
		t.Fatal(err)
	}
	defer nh.Close()
	ch, err := netlink.NewHandleAt(top.client)
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()

	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: nodeIf},
		PeerName:      clientIf,
		PeerNamespace: netlink.NsFd(int(top.client)),
	}
	if err := nh.LinkAdd(veth); err != nil {
		t.Fatalf("add veth: %v", err)
	}
	setup := func(h *netlink.Handle, ifname string, addrs ...netip.Prefix) {
		t.Helper()
		for _, name := range []string{"lo", ifname} {
			l, err := h.LinkByName(name)
			if err != nil {
				t.Fatal(err)
			}
			if err := h.LinkSetUp(l); err != nil {
				t.Fatal(err)
			}
		}
		l, _ := h.LinkByName(ifname)
		for _, p := range addrs {
			a := &netlink.Addr{IPNet: prefixNet(p), Flags: unix.IFA_F_NODAD}
			if err := h.AddrAdd(l, a); err != nil {
				t.Fatalf("add %s: %v", p, err)
			}
		}
	}
	setup(nh, nodeIf, nodeV4, nodeV6)
	setup(ch, clientIf, clientV4, clientV6)
	cl, _ := ch.LinkByName(clientIf)
	for _, r := range []struct{ dst, gw netip.Addr }{{vipV4, nodeV4.Addr()}, {vipV6, nodeV6.Addr()}} {
		route := &netlink.Route{
			LinkIndex: cl.Attrs().Index,
			Dst:       prefixNet(netip.PrefixFrom(r.dst, r.dst.BitLen())),
			Gw:        net.IP(r.gw.AsSlice()),
		}
		if err := ch.RouteAdd(route); err != nil {
			t.Fatalf("route %s via %s: %v", r.dst, r.gw, err)
		}
	}
	return top
}

func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// attach loads nothing itself: it attaches d in the node namespace and ensures routing.
func (top *topology) attach(t testing.TB, d *Datapath) {
	t.Helper()
	err := inNS(top.node, func() error {
		if err := d.Attach(nodeIf); err != nil {
			return err
		}
		return routing.EnsureRouting()
	})
	if err != nil {
		t.Fatalf("attach in node namespace: %v", err)
	}
}

// listenTransparent binds like an Envoy listener with transparent: true and
// enable_reuse_port: false, inside ns.
func listenTransparent(t testing.TB, ns netns.NsHandle, addr netip.AddrPort) net.Listener {
	t.Helper()
	lc := net.ListenConfig{Control: func(network, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if addr.Addr().Is4() {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_TRANSPARENT, 1)
			} else {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_IPV6, unix.IPV6_TRANSPARENT, 1)
			}
		})
		if err != nil {
			return err
		}
		return serr
	}}
	return listenIn(t, ns, lc, addr)
}

func listenIn(t testing.TB, ns netns.NsHandle, lc net.ListenConfig, addr netip.AddrPort) net.Listener {
	t.Helper()
	var ln net.Listener
	err := inNS(ns, func() error {
		var err error
		ln, err = lc.Listen(context.Background(), "tcp", addr.String())
		return err
	})
	if err != nil {
		t.Fatalf("listen on %s: %v", addr, err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// echoServer accepts on ln, reports each accepted connection's local address and
// echoes what it reads.
type echoServer struct {
	locals chan net.Addr
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  []net.Conn
}

func serveEcho(t testing.TB, ln net.Listener) *echoServer {
	s := &echoServer{locals: make(chan net.Addr, 64)}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			select {
			case s.locals <- c.LocalAddr():
			default:
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	// Connections are closed from here rather than waiting for the client's FIN: once a
	// test removed the redirect, that FIN may never be delivered.
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func dialFrom(ns netns.NsHandle, addr netip.AddrPort, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := inNS(ns, func() error {
		var err error
		c, err = net.DialTimeout("tcp", addr.String(), timeout)
		return err
	})
	return c, err
}

// roundTrip writes msg and expects it echoed back within a second.
func roundTrip(c net.Conn, msg string) error {
	if err := c.SetDeadline(time.Now().Add(time.Second)); err != nil {
		return err
	}
	if _, err := io.WriteString(c, msg); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if string(buf) != msg {
		return fmt.Errorf("echo %q, want %q", buf, msg)
	}
	return nil
}
