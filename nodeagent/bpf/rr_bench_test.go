//go:build linux

package bpf

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"testing"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// rrSize is the request and the response size of BenchmarkRedirectRequestResponseRatio:
// small enough that every message is one packet, so the cost per packet, not per byte,
// sets the rate.
const rrSize = 64

// BenchmarkRedirectRequestResponseRatio measures transactions per second through the
// redirect as a share of the direct path: rrSize-byte request, rrSize-byte response,
// one outstanding request per connection, TCP_NODELAY, GRO, GSO and TSO off on every
// veth of the rig. With bulk streams (BenchmarkRedirectThroughputRatio) GRO and TSO
// merge many segments into one skb, so the program runs once per 64 KiB and its cost
// hides; here it runs for every message, as it would for an API's small calls.
//
// Both paths run at the same time on one CPU (measureRatio). The run fails if the
// redirect path was not taken for every request (the program's Established counter
// must have moved at least once per redirected transaction, Hits once per redirected
// connection, Misses once per direct transaction) or if GRO is still on anywhere.
func BenchmarkRedirectRequestResponseRatio(b *testing.B) {
	rig := newThroughputRig(b)
	disableOffloads(b, rig.top)
	cpu := firstCPU(b)
	retrans0 := retransmits(b, rig.top)
	before, err := rig.d.Stats()
	if err != nil {
		b.Fatal(err)
	}
	w := rig.measureRatio(b, func(to netip.AddrPort) *flow { return rig.requestResponse(b, to, cpu) })
	after, err := rig.d.Stats()
	if err != nil {
		b.Fatal(err)
	}
	delta := statsDelta(after, before)
	// Every transaction sends at least its request from the client, which runs the
	// program on the node's interface; ACKs and the handshake only add to the counts.
	switch {
	case delta.Hits < uint64(w.pairs):
		b.Fatalf("redirect: %d connections handed to the listener, want >= %d (not redirected)", delta.Hits, w.pairs)
	case delta.Established < uint64(w.redirectTotal):
		b.Fatalf("redirect: %d packets assigned to established flows, want >= %d transactions (the redirect path was not taken)", delta.Established, w.redirectTotal)
	case delta.Misses < uint64(w.directTotal):
		b.Fatalf("direct: %d map misses, want >= %d transactions (the program did not run on the direct path)", delta.Misses, w.directTotal)
	}
	w.report(b, "tx/s", 1)
	b.ReportMetric(float64(retransmits(b, rig.top)-retrans0), "retransmits")
}

// requestResponse opens a connection to to and runs transactions on it until stop:
// the client writes a request and waits for the whole response before the next, the
// server answers each request as soon as it has all of it. Both run on threads bound
// to cpu, as the streams do.
//
// The loops make blocking read and write system calls on the sockets rather than go
// through Go's netpoller: there, every wakeup costs an epoll round and a hand-off to
// the locked thread, on top of the kernel's own, which would dilute the per-packet
// difference this benchmark is after (netperf's TCP_RR blocks the same way).
func (r *throughputRig) requestResponse(b *testing.B, to netip.AddrPort, cpu int) *flow {
	c, srv := r.connect(b, to)
	// Go sets TCP_NODELAY already; set so that it does not depend on that default.
	if err := errors.Join(c.SetNoDelay(true), srv.SetNoDelay(true)); err != nil {
		b.Fatal(err)
	}
	cf, sf := blockingFile(b, c), blockingFile(b, srv)
	cfd, sfd := int(cf.Fd()), int(sf.Fd())
	// shutdown, unlike close, wakes a thread blocked in read on the socket.
	unblock := func() {
		_ = unix.Shutdown(cfd, unix.SHUT_RDWR)
		_ = unix.Shutdown(sfd, unix.SHUT_RDWR)
	}
	release := func() {
		cf.Close()
		sf.Close()
		c.Close()
		srv.Close()
	}
	client := func(f *flow) {
		req, resp := make([]byte, rrSize), make([]byte, rrSize)
		for writeFull(cfd, req) && readFull(cfd, resp) {
			f.done.Add(1)
		}
	}
	server := func(*flow) {
		buf := make([]byte, rrSize)
		for readFull(sfd, buf) && writeFull(sfd, buf) {
		}
	}
	return runPinned(b, cpu, unblock, release, client, server)
}

// blockingFile returns a duplicate of c's socket in blocking mode. The mode belongs to
// the socket, not the descriptor: c must not be read or written afterwards.
func blockingFile(b *testing.B, c interface{ File() (*os.File, error) }) *os.File {
	f, err := c.File()
	if err != nil {
		b.Fatal(err)
	}
	if err := unix.SetNonblock(int(f.Fd()), false); err != nil {
		f.Close()
		b.Fatal(err)
	}
	return f
}

// readFull reads len(buf) bytes from fd; false on EOF or error.
func readFull(fd int, buf []byte) bool {
	for got := 0; got < len(buf); {
		n, err := unix.Read(fd, buf[got:])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || n == 0 {
			return false
		}
		got += n
	}
	return true
}

// writeFull writes all of buf to fd; false on error.
func writeFull(fd int, buf []byte) bool {
	for sent := 0; sent < len(buf); {
		n, err := unix.Write(fd, buf[sent:])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return false
		}
		sent += n
	}
	return true
}

// offloads are the features disableOffloads turns off, as the legacy ethtool ioctls
// name them: get and set command each. GRO matters on the receiving veth (with it on,
// veth queues to NAPI and merges segments), GSO and TSO on the sender.
var offloads = []struct {
	name     string
	get, set uint32
}{
	{"gro", unix.ETHTOOL_GGRO, unix.ETHTOOL_SGRO},
	{"gso", unix.ETHTOOL_GGSO, unix.ETHTOOL_SGSO},
	{"tso", unix.ETHTOOL_GTSO, unix.ETHTOOL_STSO},
}

// disableOffloads turns the offloads off on both ends of every veth of the topology
// (eth1 in the node and the client, their bridge ports in this namespace) and fails
// if one is still on afterwards.
func disableOffloads(b *testing.B, top *topology) {
	for _, h := range []struct {
		where string
		do    func(func() error) error
	}{{"node", top.node.Do}, {"client", top.client.Do}} {
		if err := h.do(func() error { return offloadsOff(nodeIf) }); err != nil {
			b.Fatalf("%s: %v", h.where, err)
		}
	}
	br, err := netlink.LinkByName(top.lab.Bridge)
	if err != nil {
		b.Fatal(err)
	}
	links, err := netlink.LinkList()
	if err != nil {
		b.Fatal(err)
	}
	ports := 0
	for _, l := range links {
		if l.Attrs().MasterIndex == br.Attrs().Index && l.Type() == "veth" {
			ports++
			if err := offloadsOff(l.Attrs().Name); err != nil {
				b.Fatal(err)
			}
		}
	}
	if ports != 2 {
		b.Fatalf("%d veth ports on %s, want 2 (node and client)", ports, top.lab.Bridge)
	}
}

// offloadsOff turns every feature of offloads off on ifname in the calling thread's
// network namespace and reads it back.
func offloadsOff(ifname string) error {
	for _, o := range offloads {
		if _, err := ethtool(ifname, o.set, 0); err != nil {
			return fmt.Errorf("%s: turn %s off: %w", ifname, o.name, err)
		}
		on, err := ethtool(ifname, o.get, 0)
		if err != nil {
			return fmt.Errorf("%s: read %s: %w", ifname, o.name, err)
		}
		if on != 0 {
			return fmt.Errorf("%s: %s still on after turning it off", ifname, o.name)
		}
	}
	return nil
}

// ethtoolValue is struct ethtool_value, the argument of the per-feature ethtool
// ioctls; ifreqData is struct ifreq with ifr_data, which unix.Ifreq cannot hold (it
// has no pointer setter). No module in go.mod speaks ethtool, and the ethtool binary
// is not installed everywhere the tests run.
type ethtoolValue struct{ cmd, data uint32 }

type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [24 - unsafe.Sizeof(uintptr(0))]byte // the rest of the ifreq union
}

// ethtool runs one SIOCETHTOOL command with an ethtool_value on ifname and returns the
// value's data field afterwards.
func ethtool(ifname string, cmd, data uint32) (uint32, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	v := ethtoolValue{cmd: cmd, data: data}
	var ifr ifreqData
	copy(ifr.name[:unix.IFNAMSIZ-1], ifname)
	ifr.data = unsafe.Pointer(&v)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr))); errno != 0 {
		return 0, errno
	}
	return v.data, nil
}
