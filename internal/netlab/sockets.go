package netlab

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Do runs fn on an OS thread switched into the host's namespace. Sockets fn creates stay
// in that namespace and may be used from any goroutine afterwards. The thread is never
// handed back to the scheduler (the goroutine exits locked, so the runtime discards it):
// no other goroutine can inherit the namespace.
func (h *Host) Do(fn func() error) error {
	ns, err := netns.GetFromName(h.Name)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", h.Name, err)
	}
	defer ns.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := netns.Set(ns); err != nil {
			errc <- fmt.Errorf("setns %s: %w", h.Name, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// Netlink returns a handle that acts in the host's namespace from any goroutine, without
// the thread switch Do costs on every call (which matters to tests that poll). It is
// closed when the test ends.
func (h *Host) Netlink() *netlink.Handle {
	h.lab.t.Helper()
	ns, err := netns.GetFromName(h.Name)
	if err != nil {
		h.lab.t.Fatalf("open netns %s: %v", h.Name, err)
	}
	defer ns.Close()
	nh, err := netlink.NewHandleAt(ns)
	if err != nil {
		h.lab.t.Fatalf("netlink in %s: %v", h.Name, err)
	}
	h.lab.t.Cleanup(nh.Close)
	return nh
}

// Dial opens a TCP connection from the host.
func (h *Host) Dial(addr netip.AddrPort, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := h.Do(func() error {
		var err error
		c, err = net.DialTimeout("tcp", addr.String(), timeout)
		return err
	})
	return c, err
}

// ListenTransparent listens on addr in the host the way Envoy binds a listener with
// transparent: true and enable_reuse_port: false (design.md §4): IP_TRANSPARENT set, so
// it may answer for the VIPs bpf_sk_assign hands it, and no SO_REUSEPORT, which
// bpf_sk_assign refuses.
func (h *Host) ListenTransparent(addr netip.AddrPort) (net.Listener, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
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
	// Envoy listens on plain TCP. Go's default, MPTCP where the kernel has it, hashes a
	// TCP subflow socket that the lookups find as well but that a sockmap refuses
	// (EOPNOTSUPP), so the listeners map of the bpf package would never hold it.
	lc.SetMultipathTCP(false)
	var ln net.Listener
	err := h.Do(func() error {
		var err error
		ln, err = lc.Listen(context.Background(), "tcp", addr.String())
		return err
	})
	return ln, err
}
