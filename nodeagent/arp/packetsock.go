//go:build linux

package arp

import (
	"fmt"
	"net"
	"os"
	"syscall"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// packetConn is an AF_PACKET/SOCK_DGRAM socket bound to one interface and one
// EtherType: the kernel strips the Ethernet header on receive and builds it (with the
// interface's MAC as source) on send.
//
// mdlayher/arp's Client is not used because arp.Dial requires an IPv4 address on the
// interface, which a node's LAN interface need not have; mdlayher/arp provides the ARP
// codec. (go.mod pins mdlayher/packet v1.1.2: v1.0.0, which arp asks for, does not
// compile against the mdlayher/socket version cilium/ebpf brings in.)
type packetConn struct {
	f       *os.File
	rc      syscall.RawConn
	ifindex int
	proto   uint16 // network byte order, as sockaddr_ll wants it
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// listenPacket opens the socket with protocol 0 (receiving nothing), attaches filter and
// only then binds to ethertype on ifindex, so no unfiltered packet is ever queued.
func listenPacket(ifindex int, ethertype uint16, filter []bpf.RawInstruction) (*packetConn, error) {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket(AF_PACKET): %w", err)
	}
	prog := make([]unix.SockFilter, len(filter))
	for i, ins := range filter {
		prog[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &fprog); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("attach filter: %w", err)
	}
	proto := htons(ethertype)
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: proto, Ifindex: ifindex}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind to ifindex %d: %w", ifindex, err)
	}
	// A non-blocking fd makes os.NewFile register it with the runtime poller, so reads
	// park the goroutine rather than a thread and Close unblocks them.
	f := os.NewFile(uintptr(fd), "packet")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &packetConn{f: f, rc: rc, ifindex: ifindex, proto: proto}, nil
}

// read returns one packet and the source MAC of the frame that carried it.
func (c *packetConn) read(b []byte) (int, net.HardwareAddr, error) {
	var (
		n    int
		from unix.Sockaddr
		err  error
	)
	if rerr := c.rc.Read(func(fd uintptr) bool {
		n, from, err = unix.Recvfrom(int(fd), b, 0)
		return err != unix.EAGAIN
	}); rerr != nil {
		return 0, nil, rerr
	}
	var src net.HardwareAddr
	if ll, ok := from.(*unix.SockaddrLinklayer); ok && int(ll.Halen) <= len(ll.Addr) {
		src = net.HardwareAddr(append([]byte(nil), ll.Addr[:ll.Halen]...))
	}
	return n, src, err
}

func (c *packetConn) write(b []byte, dst net.HardwareAddr) error {
	sa := &unix.SockaddrLinklayer{Protocol: c.proto, Ifindex: c.ifindex, Halen: uint8(len(dst))}
	copy(sa.Addr[:], dst)
	var err error
	if werr := c.rc.Write(func(fd uintptr) bool {
		err = unix.Sendto(int(fd), b, 0, sa)
		return err != unix.EAGAIN
	}); werr != nil {
		return werr
	}
	return err
}

func (c *packetConn) close() error { return c.f.Close() }
