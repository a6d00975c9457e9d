package netlab

import (
	"fmt"
	"net/netip"
)

// Pod is a network namespace behind a veth whose other end is in a host's namespace,
// as a CNI plugin wires a pod: traffic the pod sends anywhere enters the host through
// HostInterface, never through the host's uplink.
type Pod struct {
	*Host
	// HostInterface is the host side of the pod's veth (named like Cilium's lxc*).
	HostInterface string
	// Gateway4 and Gateway6 are the host side's addresses, the pod's default routes.
	Gateway4, Gateway6 netip.Addr
}

// AddPod creates a pod namespace behind host h: its eth0 gets the second address of
// v4 and v6, the host side the first, and the pod routes everything to the host.
// The host side gets no route beyond its connected prefixes.
func (l *Lab) AddPod(h *Host, role string, v4, v6 netip.Prefix) *Pod {
	l.t.Helper()
	p := &Pod{Host: &Host{Name: fmt.Sprintf("pt%s-%s", l.id, role), lab: l}, HostInterface: fmt.Sprintf("lxc%s%s", l.id, role)}
	if len(p.HostInterface) > 15 {
		p.HostInterface = p.HostInterface[:15]
	}
	p.Gateway4, p.Gateway6 = v4.Addr().Next(), v6.Addr().Next()
	p.IPv4 = netip.PrefixFrom(p.Gateway4.Next(), v4.Bits())
	p.IPv6 = netip.PrefixFrom(p.Gateway6.Next(), v6.Bits())
	l.must("ip", "netns", "add", p.Name)
	l.hosts = append(l.hosts, p.Host)
	p.MustRun("ip", "link", "set", "lo", "up")
	l.must("ip", "link", "add", p.HostInterface, "netns", h.Name, "type", "veth", "peer", "name", "eth0", "netns", p.Name)
	h.MustRun("ip", "addr", "add", netip.PrefixFrom(p.Gateway4, v4.Bits()).String(), "dev", p.HostInterface)
	h.MustRun("ip", "-6", "addr", "add", netip.PrefixFrom(p.Gateway6, v6.Bits()).String(), "dev", p.HostInterface, "nodad")
	h.MustRun("ip", "link", "set", p.HostInterface, "up")
	p.MustRun("ip", "addr", "add", p.IPv4.String(), "dev", "eth0")
	p.MustRun("ip", "-6", "addr", "add", p.IPv6.String(), "dev", "eth0", "nodad")
	p.MustRun("ip", "link", "set", "eth0", "up")
	p.MustRun("ip", "route", "add", "default", "via", p.Gateway4.String())
	p.MustRun("ip", "-6", "route", "add", "default", "via", p.Gateway6.String())
	return p
}
