//go:build linux

package bpf

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// These tests cover SYNs that arrive while the proxy still holds a socket under the
// same 4-tuple. The kernel resolves both cases on the socket itself, so the program must
// hand such a SYN to it rather than to the listener (see redirect.c).

// TestRedirectReusesTimeWaitTuple: the proxy closes first, so its side of the
// connection sits in TIME_WAIT under (VIP:80, client:port), and the client connects
// again from the same port at once, as busy clients and NATs do.
func TestRedirectReusesTimeWaitTuple(t *testing.T) {
	top := newTopology(t)
	d := openTest(t, mountBPFFS(t), Options{})
	top.attach(t, d)
	ln := listenTransparent(t, top.node, netip.MustParseAddrPort("127.0.0.1:15001"))
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, "bye")
			c.Close()
		}
	}()
	checkSync(t, d, map[Key]uint16{{Addr: vipV4, Port: vipPort, Proto: ProtoTCP}: proxyPort}, 1, 0, 0)
	vip := netip.AddrPortFrom(vipV4, vipPort)
	from := netip.AddrPortFrom(top.client.IPv4.Addr(), 41000)

	for i := range 3 {
		if i > 0 {
			// The previous round must have left the proxy's socket in TIME_WAIT, or
			// this round would not test anything.
			waitTCPState(t, top, vip, from, tcpTimeWait)
		}
		c, err := dialFromPort(top, from, vip, 5*time.Second)
		if err != nil {
			st, _ := d.Stats()
			t.Fatalf("round %d: dial %s from %s: %v (stats %+v)", i, vip, from, err, st)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		got, err := io.ReadAll(c)
		c.Close()
		if err != nil || string(got) != "bye" {
			t.Fatalf("round %d: read %q, %v; want \"bye\"", i, got, err)
		}
	}
}

// TestRedirectTimeWaitSkipsHostListener: with a host socket listening on *:80, the
// kernel's own TIME_WAIT handling would give a SYN on the busy 4-tuple to that socket
// (it looks for a listener on the packet's VIP:80), so the program must not hand such
// a SYN to the TIME_WAIT socket. The host listener here is transparent, the kind that
// can answer from the VIP and so really take the connection over. The reconnect may
// then wait out TIME_WAIT on kernels that drop the duplicate, but it must never reach
// the host listener.
func TestRedirectTimeWaitSkipsHostListener(t *testing.T) {
	top := newTopology(t)
	d := openTest(t, mountBPFFS(t), Options{})
	top.attach(t, d)
	proxy := listenTransparent(t, top.node, netip.MustParseAddrPort("127.0.0.1:15001"))
	host := listenTransparent(t, top.node, netip.MustParseAddrPort("0.0.0.0:80"))
	for ln, msg := range map[net.Listener]string{proxy: "proxy", host: "host"} {
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				_, _ = io.WriteString(c, msg)
				c.Close()
			}
		}()
	}
	checkSync(t, d, map[Key]uint16{{Addr: vipV4, Port: vipPort, Proto: ProtoTCP}: proxyPort}, 1, 0, 0)
	vip := netip.AddrPortFrom(vipV4, vipPort)
	from := netip.AddrPortFrom(top.client.IPv4.Addr(), 41002)

	read := func(timeout time.Duration) (string, error) {
		c, err := dialFromPort(top, from, vip, timeout)
		if err != nil {
			return "", err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		got, err := io.ReadAll(c)
		return string(got), err
	}
	// A fresh SYN finds the host listener in the 4-tuple lookup and must skip it.
	if got, err := read(2 * time.Second); err != nil || got != "proxy" {
		t.Fatalf("first connection: %q, %v; want \"proxy\"", got, err)
	}
	waitTCPState(t, top, vip, from, tcpTimeWait)
	got, err := read(1500 * time.Millisecond)
	t.Logf("reconnect on the TIME_WAIT tuple: %q, %v", got, err)
	if err == nil && got != "proxy" {
		t.Fatalf("reconnect on the TIME_WAIT tuple reached %q, want the proxy or nothing", got)
	}
}

// TestRedirectReusesHalfOpenTuple: the client loses its socket without telling the
// proxy (a reboot, a NAT that forgot the mapping) and connects again from the same
// port. The proxy's stale connection must answer the SYN with a challenge ACK so that
// the client's RST clears it, and the new connection must reach the listener.
func TestRedirectReusesHalfOpenTuple(t *testing.T) {
	top := newTopology(t)
	d := openTest(t, mountBPFFS(t), Options{})
	top.attach(t, d)
	srv := serveEcho(t, listenTransparent(t, top.node, netip.MustParseAddrPort("127.0.0.1:15001")))
	checkSync(t, d, map[Key]uint16{{Addr: vipV4, Port: vipPort, Proto: ProtoTCP}: proxyPort}, 1, 0, 0)
	vip := netip.AddrPortFrom(vipV4, vipPort)
	from := netip.AddrPortFrom(top.client.IPv4.Addr(), 41001)

	old, err := dialFromPort(top, from, vip, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := roundTrip(old, "first life"); err != nil {
		t.Fatal(err)
	}
	<-srv.locals
	// TCP_REPAIR makes close silent: no FIN, no RST, the proxy keeps its connection.
	if err := forgetConn(old); err != nil {
		t.Fatalf("drop client socket silently: %v", err)
	}
	waitTCPState(t, top, vip, from, tcpEstablished)

	c, err := dialFromPort(top, from, vip, 5*time.Second)
	if err != nil {
		st, _ := d.Stats()
		t.Fatalf("dial %s again from %s: %v (stats %+v)", vip, from, err, st)
	}
	defer c.Close()
	if err := roundTrip(c, "second life"); err != nil {
		t.Fatal(err)
	}
}

// dialFromPort connects from a fixed local address; SO_REUSEADDR as a client that
// picks its port itself would set it.
func dialFromPort(top *topology, from, to netip.AddrPort, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{
		Timeout:   timeout,
		LocalAddr: net.TCPAddrFromAddrPort(from),
		Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
			})
			return errors.Join(err, serr)
		},
	}
	var c net.Conn
	err := top.client.Do(func() error {
		var err error
		c, err = d.DialContext(context.Background(), "tcp", to.String())
		return err
	})
	return c, err
}

// forgetConn closes c in repair mode, which discards the socket without a packet.
func forgetConn(c net.Conn) error {
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_TCP, unix.TCP_REPAIR, 1)
	}); err != nil {
		return err
	}
	return errors.Join(serr, c.Close())
}

// TCP states as /proc/net/tcp prints them (include/net/tcp_states.h).
const (
	tcpEstablished = 0x01
	tcpTimeWait    = 0x06
)

// waitTCPState fails t unless the node's socket local->remote reaches state soon: the
// client's last packets may still be in a softirq backlog when its close returns.
func waitTCPState(t *testing.T, top *topology, local, remote netip.AddrPort, state int) {
	t.Helper()
	var st int
	for range 100 {
		if st = tcpState(t, top, local, remote); st == state {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("proxy socket %s<-%s in state %#x, want %#x", local, remote, st, state)
}

// tcpState reports the state of the node namespace's IPv4 socket with local address
// local and remote address remote, or -1 if there is none.
func tcpState(t *testing.T, top *topology, local, remote netip.AddrPort) int {
	t.Helper()
	want := procAddr(local) + " " + procAddr(remote)
	state := -1
	err := top.node.Do(func() error {
		// thread-self: /proc/self/net would show the namespace of the process's main
		// thread, not of this one.
		f, err := os.Open("/proc/thread-self/net/tcp")
		if err != nil {
			return err
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) > 3 && fields[1]+" "+fields[2] == want {
				_, err := fmt.Sscanf(fields[3], "%X", &state)
				return err
			}
		}
		return sc.Err()
	})
	if err != nil {
		t.Fatalf("read socket table: %v", err)
	}
	return state
}

// procAddr formats an IPv4 address:port as /proc/net/tcp does: the address as a
// native-endian hex word, the port in hex.
func procAddr(ap netip.AddrPort) string {
	a := ap.Addr().As4()
	return fmt.Sprintf("%02X%02X%02X%02X:%04X", a[3], a[2], a[1], a[0], ap.Port())
}
