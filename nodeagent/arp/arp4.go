//go:build linux

package arp

import (
	"net"
	"net/netip"
	"sync/atomic"

	marp "github.com/mdlayher/arp"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// arpListener answers ARP requests on one interface.
type arpListener struct {
	l      *link
	conn   *packetConn
	failed atomic.Bool
}

// The request opcode as the socket filter reads it, and the Ethernet address length.
const (
	opRequest  = 1
	ethAddrLen = 6
)

var (
	zeroMAC      = net.HardwareAddr{0, 0, 0, 0, 0, 0}
	broadcastMAC = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
)

// arpFilter keeps ARP requests that arrived from the wire. Without it the socket would
// also see every ARP the host sends (our own replies included) and every reply on the
// LAN, each costing a wakeup. The packet starts at the ARP header (SOCK_DGRAM).
var arpFilter = mustAssemble([]bpf.Instruction{
	bpf.LoadExtension{Num: bpf.ExtType},
	bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.PACKET_OUTGOING, SkipTrue: 3},
	bpf.LoadAbsolute{Off: 6, Size: 2}, // ARP operation
	bpf.JumpIf{Cond: bpf.JumpEqual, Val: opRequest, SkipFalse: 1},
	bpf.RetConstant{Val: 0xffff},
	bpf.RetConstant{Val: 0},
})

func mustAssemble(prog []bpf.Instruction) []bpf.RawInstruction {
	raw, err := bpf.Assemble(prog)
	if err != nil {
		panic(err) // the programs are constants: this is a programming error
	}
	return raw
}

// The codec is github.com/mdlayher/arp's Packet. Its Client is not used: arp.Dial
// insists on an IPv4 address on the interface, and a node's LAN interface need not have
// one (the VIP is the only IPv4 address we send from); packetConn is the socket instead.
func parseARP(b []byte) (*marp.Packet, bool) {
	var p marp.Packet
	if err := p.UnmarshalBinary(b); err != nil || p.ProtocolType != unix.ETH_P_IP || p.HardwareAddrLength != ethAddrLen {
		return nil, false
	}
	return &p, true
}

func marshalARP(op marp.Operation, senderMAC net.HardwareAddr, senderIP netip.Addr, targetMAC net.HardwareAddr, targetIP netip.Addr) ([]byte, error) {
	p, err := marp.NewPacket(op, senderMAC, senderIP, targetMAC, targetIP)
	if err != nil {
		return nil, err
	}
	return p.MarshalBinary()
}

func listenARP(l *link) (*arpListener, error) {
	c, err := listenPacket(l.ifi.Index, unix.ETH_P_ARP, arpFilter)
	if err != nil {
		return nil, err
	}
	a := &arpListener{l: l, conn: c}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		a.serve()
	}()
	return a, nil
}

func (a *arpListener) serve() {
	buf := make([]byte, 128)
	for {
		n, _, err := a.conn.read(buf)
		if err != nil {
			a.failed.Store(true)
			a.l.readFailed(err, "arp")
			return
		}
		req, ok := parseARP(buf[:n])
		if !ok || req.Operation != marp.OperationRequest {
			continue
		}
		// Someone else's gratuitous ARP for one of our IPs means a conflict (two nodes
		// announcing, or a host configured with the VIP); replying would not help, so
		// only make it visible.
		if req.SenderIP == req.TargetIP {
			if _, ok := a.l.r.lookup(a.l.ifi.Name, req.TargetIP); ok {
				a.l.r.log.Info("another host announces our IP", "ip", req.TargetIP,
					"mac", req.SenderHardwareAddr.String(), "interface", a.l.ifi.Name)
			}
			continue
		}
		if !a.l.r.shouldAnswer(a.l.ifi.Name, req.TargetIP) {
			continue
		}
		// Probes (RFC 5227, sender IP 0.0.0.0) are answered too: that is how a host
		// about to take the VIP learns it is in use.
		reply, err := marshalARP(marp.OperationReply, a.l.ifi.HardwareAddr, req.TargetIP, req.SenderHardwareAddr, req.SenderIP)
		if err == nil {
			err = a.conn.write(reply, req.SenderHardwareAddr)
		}
		if err != nil {
			a.l.r.sendFailed(err, "arp reply", a.l.ifi.Name, req.TargetIP)
			continue
		}
		a.l.r.count(req.TargetIP, false)
	}
}

// gratuitous broadcasts an ARP announcement (RFC 5227 §2.3: a request with sender IP =
// target IP). Linux treats it as "garp" (arp_is_garp) and overrides an existing
// neighbour entry even within locktime; whether it creates a missing entry is
// net.ipv4.conf.*.arp_accept's business.
func (a *arpListener) gratuitous(ip netip.Addr) error {
	p, err := marshalARP(marp.OperationRequest, a.l.ifi.HardwareAddr, ip, zeroMAC, ip)
	if err != nil {
		return err
	}
	return a.conn.write(p, broadcastMAC)
}

func (a *arpListener) close() { _ = a.conn.close() }
