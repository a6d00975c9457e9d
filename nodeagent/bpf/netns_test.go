//go:build linux

package bpf

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/portico-dev/portico/internal/netlab"
	"github.com/portico-dev/portico/internal/privileged"
	"github.com/portico-dev/portico/nodeagent/bpf/routing"
)

// Test topology: a client and a node host on a netlab bridge. The VIPs are not
// configured anywhere; the client routes them to the node, where only the redirect can
// deliver them.
var (
	labV4 = netip.MustParsePrefix("10.99.0.0/24")
	labV6 = netip.MustParsePrefix("fd00:99::/64")
	vipV4 = netip.MustParseAddr("10.99.1.10")
	vipV6 = netip.MustParseAddr("fd00:99:1::10")
)

const (
	nodeIf    = netlab.HostInterface // where the program is attached and its link pinned
	proxyPort = 15001
	vipPort   = 80
)

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

type topology struct {
	node, client *netlab.Host
	lab          *netlab.Lab
}

// newTopology builds the client and node hosts, with the VIPs routed from the client to
// the node's address.
func newTopology(t testing.TB) *topology {
	t.Helper()
	privileged.Require(t)
	lab := netlab.New(t, labV4, labV6)
	top := &topology{node: lab.AddHost("node"), client: lab.AddHost("client"), lab: lab}
	top.client.MustRun("ip", "route", "add", vipV4.String()+"/32", "via", top.node.IPv4.Addr().String())
	top.client.MustRun("ip", "-6", "route", "add", vipV6.String()+"/128", "via", top.node.IPv6.Addr().String())
	return top
}

// attach loads nothing itself: it attaches d in the node namespace and ensures routing.
func (top *topology) attach(t testing.TB, d *Datapath) {
	t.Helper()
	err := top.node.Do(func() error {
		if err := d.Attach(nodeIf); err != nil {
			return err
		}
		return routing.EnsureRouting()
	})
	if err != nil {
		t.Fatalf("attach in node namespace: %v", err)
	}
}

// listenTransparent binds like an Envoy listener in h and closes the listener when the
// test ends.
func listenTransparent(t testing.TB, h *netlab.Host, addr netip.AddrPort) net.Listener {
	t.Helper()
	ln, err := h.ListenTransparent(addr)
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
