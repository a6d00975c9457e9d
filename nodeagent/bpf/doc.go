// Package bpf loads Portico's redirect datapath: a TC ingress eBPF program that hands
// TCP connections addressed to a VIP:port to the local proxy (Envoy) listener with
// bpf_sk_assign, keyed by pinned hash maps (one per address family) that the node agent
// keeps in sync.
//
// Everything lives under a bpffs pin path (DefaultPinPath), so the datapath keeps
// serving while the agent restarts or is upgraded: Close only drops this process's file
// descriptors, and Open adopts the pinned maps and links it finds. The companion package
// routing installs the policy routing the program's packet mark relies on.
//
// The redirect only reaches listeners that are bound to 127.0.0.1 or ::1, have
// IP_TRANSPARENT set (or the SYN-ACK from the VIP is never sent) and do not use
// SO_REUSEPORT (bpf_sk_assign refuses reuseport sockets).
//
// The loader is Linux-only; on other systems the package is empty.
package bpf
