//go:build linux

package arp

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync/atomic"

	"github.com/mdlayher/ndp"
	"golang.org/x/net/bpf"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// ndpListener answers Neighbor Solicitations on one interface.
//
// Solicitations are read from an AF_PACKET socket, not from the ndp.Conn's ICMPv6
// socket: a raw ICMPv6 socket only sees packets the IPv6 stack delivers locally, and the
// stack drops a unicast NS whose destination is the VIP (not configured here). Clients
// send exactly those for neighbour unreachability detection once an entry goes stale;
// unanswered, the entry fails and traffic stalls until the next multicast resolution.
//
// Advertisements are sent on the same packet socket, IPv6 header built here, straight to
// the soliciting frame's source MAC: no neighbour resolution of the client first, and no
// interface-name zones (ndp.Conn.WriteTo resolves its zone by name in the calling
// thread's network namespace, which is wrong for any goroutine but Run's).
//
// The ndp.Conn only holds the solicited-node multicast memberships: joining programs the
// NIC's multicast filter and makes the kernel send MLD reports, without which a
// snooping switch would not forward the solicitations to this port.
type ndpListener struct {
	l      *link
	pkt    *packetConn
	conn   *ndp.Conn
	groups map[netip.Addr]bool // joined solicited-node groups; owned by Run's goroutine
	failed atomic.Bool
}

const (
	ipv6HeaderLen = 40
	protoICMPv6   = 58
)

var (
	allNodes    = netip.MustParseAddr("ff02::1")
	allNodesMAC = net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}
)

// nsFilter keeps incoming ICMPv6 Neighbor Solicitations without extension headers (NS
// never carries any in practice). The packet starts at the IPv6 header (SOCK_DGRAM).
var nsFilter = mustAssemble([]bpf.Instruction{
	bpf.LoadExtension{Num: bpf.ExtType},
	bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.PACKET_OUTGOING, SkipTrue: 5},
	bpf.LoadAbsolute{Off: 6, Size: 1}, // next header
	bpf.JumpIf{Cond: bpf.JumpEqual, Val: protoICMPv6, SkipFalse: 3},
	bpf.LoadAbsolute{Off: ipv6HeaderLen, Size: 1}, // ICMPv6 type
	bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(ipv6.ICMPTypeNeighborSolicitation), SkipFalse: 1},
	bpf.RetConstant{Val: 0xffff},
	bpf.RetConstant{Val: 0},
})

func listenNDP(l *link) (*ndpListener, error) {
	// Unspecified: the Conn must not depend on a link-local address, which is
	// tentative (and unbindable) for a second after an interface comes up.
	conn, _, err := ndp.Listen(&l.ifi, ndp.Unspecified)
	if err != nil {
		return nil, err
	}
	// Nothing is read from this socket; block everything so the kernel does not queue
	// every ICMPv6 packet of the host into it.
	var block ipv6.ICMPFilter
	block.SetAll(true)
	if err := conn.SetICMPFilter(&block); err != nil {
		conn.Close()
		return nil, err
	}
	pkt, err := listenPacket(l.ifi.Index, unix.ETH_P_IPV6, nsFilter)
	if err != nil {
		conn.Close()
		return nil, err
	}
	n := &ndpListener{l: l, pkt: pkt, conn: conn, groups: map[netip.Addr]bool{}}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		n.serve()
	}()
	return n, nil
}

// refresh joins the solicited-node group of every announced IPv6 address and leaves the
// groups no announced address needs any more (several can share one).
func (n *ndpListener) refresh(ips map[netip.Addr]Announcement) {
	want := map[netip.Addr]bool{}
	for ip := range ips {
		if !ip.Is6() {
			continue
		}
		if g, err := ndp.SolicitedNodeMulticast(ip); err == nil {
			want[g] = true
		}
	}
	for g := range want {
		if n.groups[g] {
			continue
		}
		if err := n.conn.JoinGroup(g); err != nil {
			n.l.r.log.Error(err, "join solicited-node group", "group", g, "interface", n.l.ifi.Name)
			continue
		}
		n.groups[g] = true
	}
	for g := range n.groups {
		if !want[g] {
			if err := n.conn.LeaveGroup(g); err != nil {
				n.l.r.log.Error(err, "leave solicited-node group", "group", g, "interface", n.l.ifi.Name)
			}
			delete(n.groups, g)
		}
	}
}

func (n *ndpListener) serve() {
	buf := make([]byte, 1500)
	for {
		size, from, err := n.pkt.read(buf)
		if err != nil {
			n.failed.Store(true)
			n.l.readFailed(err, "ndp")
			return
		}
		src, ns, ok := parseNS(buf[:size])
		if !ok {
			continue
		}
		target := ns.TargetAddress
		if !n.l.r.shouldAnswer(n.l.ifi.Name, target) {
			continue
		}
		na := n.advertisement(target)
		dst, dstMAC := src, from
		if src.IsUnspecified() {
			// Duplicate address detection by another host: RFC 4861 §7.2.4 says answer
			// to all-nodes, unsolicited.
			dst, dstMAC = allNodes, allNodesMAC
		} else {
			na.Solicited = true
		}
		if len(dstMAC) != 6 {
			continue
		}
		if err := n.send(na, target, dst, dstMAC); err != nil {
			n.l.r.sendFailed(err, "neighbor advertisement", n.l.ifi.Name, target)
			continue
		}
		n.l.r.count(target, false)
	}
}

// parseNS validates an IPv6 packet as a Neighbor Solicitation (RFC 4861 §7.1.1: hop
// limit 255) and returns its source address and message.
func parseNS(b []byte) (netip.Addr, *ndp.NeighborSolicitation, bool) {
	if len(b) < ipv6HeaderLen || b[0]>>4 != 6 || b[6] != protoICMPv6 || b[7] != ndp.HopLimit {
		return netip.Addr{}, nil, false
	}
	end := ipv6HeaderLen + int(binary.BigEndian.Uint16(b[4:6]))
	if end > len(b) {
		return netip.Addr{}, nil, false
	}
	m, err := ndp.ParseMessage(b[ipv6HeaderLen:end])
	if err != nil {
		return netip.Addr{}, nil, false
	}
	ns, ok := m.(*ndp.NeighborSolicitation)
	if !ok {
		return netip.Addr{}, nil, false
	}
	return netip.AddrFrom16([16]byte(b[8:24])), ns, true
}

// advertisement builds an NA for target with the override flag, so that a client moves
// an existing entry to this node's MAC.
func (n *ndpListener) advertisement(target netip.Addr) *ndp.NeighborAdvertisement {
	return &ndp.NeighborAdvertisement{
		Override:      true,
		TargetAddress: target,
		Options: []ndp.Option{&ndp.LinkLayerAddress{
			Direction: ndp.Target,
			Addr:      n.l.ifi.HardwareAddr,
		}},
	}
}

// send wraps an advertisement for src in an IPv6 header (hop limit 255, as receivers
// require) and writes it to dstMAC.
//
// The source address is the advertised address itself, as Linux does for its own
// addresses (ndisc_send_na): tools such as ndisc6 drop an answer to a global target
// that comes from a link-local source, and the VIP is the one address this node
// speaks for on the link.
func (n *ndpListener) send(m ndp.Message, src, dst netip.Addr, dstMAC net.HardwareAddr) error {
	icmp, err := ndp.MarshalMessageChecksum(m, src, dst)
	if err != nil {
		return err
	}
	b := make([]byte, ipv6HeaderLen+len(icmp))
	b[0] = 6 << 4
	binary.BigEndian.PutUint16(b[4:6], uint16(len(icmp)))
	b[6], b[7] = protoICMPv6, ndp.HopLimit
	s, d := src.As16(), dst.As16()
	copy(b[8:24], s[:])
	copy(b[24:40], d[:])
	copy(b[ipv6HeaderLen:], icmp)
	return n.pkt.write(b, dstMAC)
}

// unsolicited sends an unsolicited NA with the override flag to all-nodes.
func (n *ndpListener) unsolicited(ip netip.Addr) error {
	return n.send(n.advertisement(ip), ip, allNodes, allNodesMAC)
}

func (n *ndpListener) close() {
	_ = n.pkt.close()
	// Closing the socket also drops its multicast memberships.
	_ = n.conn.Close()
}
