package local

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/portico-dev/portico/e2e/framework"
	"github.com/portico-dev/portico/internal/l2probe"
	"github.com/portico-dev/portico/internal/standin"
)

// network is the client namespace on the nodes' bridge.
type network struct{ c *Cluster }

func (n *network) Arping(ip netip.Addr, timeout time.Duration) ([]string, string) {
	macs, out := l2probe.Arping(n.c.Client_, ip, timeout)
	nodes := make([]string, 0, len(macs))
	for _, m := range macs {
		nodes = append(nodes, n.NodeOfMAC(m))
	}
	return nodes, out
}

func (n *network) Dial(addr netip.AddrPort, timeout time.Duration) (net.Conn, error) {
	return n.c.Client_.Dial(addr, timeout)
}

// Request: the stand-in that the redirect delivered the request to answers with the
// cluster Envoy would pick (<namespace>/<service>:<port>, or <namespace>/<service>).
func (n *network) Request(addr netip.AddrPort, method, path string, header http.Header) (framework.Response, error) {
	code, a, err := standin.Get(n.c.Client_, addr, method, path, header)
	return framework.Response{Code: code, Backend: framework.ServiceOfCluster(a.Cluster), Node: a.Node, Local: a.Local, Detail: a.Error}, err
}

func (n *network) Slots(ip netip.Addr, every time.Duration) (*l2probe.Slots, error) {
	return l2probe.StartSlots(n.c.Client_, ip, every)
}

func (n *network) NodeOfMAC(mac string) string {
	for name, h := range n.c.Hosts {
		if strings.EqualFold(h.MAC.String(), mac) {
			return name
		}
	}
	return "?" + mac
}

func (n *network) Neighbour(ip netip.Addr) string {
	if mac := l2probe.Neighbour(n.c.Client_, ip); mac != "" {
		return n.NodeOfMAC(mac)
	}
	return ""
}

func (n *network) RouteVia(ip netip.Addr, node string) (func(), error) {
	h, ok := n.c.Hosts[node]
	if !ok {
		return nil, fmt.Errorf("no node %s", node)
	}
	dst := netip.PrefixFrom(ip, ip.BitLen()).String()
	via := h.IPv4.Addr().String()
	if ip.Is6() {
		via = h.IPv6.Addr().String()
	}
	if _, err := n.c.Client_.Run("ip", "route", "replace", dst, "via", via); err != nil {
		return nil, err
	}
	return func() { _, _ = n.c.Client_.Run("ip", "route", "del", dst) }, nil
}
