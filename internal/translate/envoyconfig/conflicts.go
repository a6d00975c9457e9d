package envoyconfig

import (
	"cmp"
	"fmt"
	"net/netip"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// PortClaim is an address a listener binds on every node its config selects. Two
// configs binding the same port on one node make Envoy refuse the second listener
// (and with it the LDS update of that node), so the second config is refused.
// Listeners that are redirect targets claim nothing: the agent binds them to a
// proxy port of its own choosing.
type PortClaim struct {
	// Index is the listener's index in spec.resources.
	Index    int
	Listener string
	Addr     netip.Addr
	Port     uint32
	UDP      bool
}

func (c PortClaim) String() string {
	proto := "TCP"
	if c.UDP {
		proto = "UDP"
	}
	return fmt.Sprintf("%s/%s", netip.AddrPortFrom(c.Addr, uint16(c.Port)), proto)
}

// overlaps: the same port and protocol, and the same address or a wildcard on
// either side (a wildcard of either family, since an IPv6 wildcard listener also
// takes IPv4 unless it is v6-only).
func (c PortClaim) overlaps(o PortClaim) bool {
	return c.Port == o.Port && c.UDP == o.UDP && (c.Addr == o.Addr || c.Addr.IsUnspecified() || o.Addr.IsUnspecified())
}

func portClaims(d *decoded, targets map[string]bool) []PortClaim {
	var out []PortClaim
	for _, l := range d.listeners {
		if targets[l.GetName()] {
			continue
		}
		addrs := []*corev3.Address{l.GetAddress()}
		for _, a := range l.GetAdditionalAddresses() {
			addrs = append(addrs, a.GetAddress())
		}
		for _, a := range addrs {
			sa := a.GetSocketAddress()
			ip, err := netip.ParseAddr(sa.GetAddress())
			if sa == nil || sa.GetPortValue() == 0 || err != nil {
				continue // no port of its own, or a named/pipe address nobody else can take
			}
			out = append(out, PortClaim{Index: d.index["Listener/"+l.GetName()], Listener: l.GetName(),
				Addr: ip.Unmap(), Port: sa.GetPortValue(), UDP: sa.GetProtocol() == corev3.SocketAddress_UDP})
		}
	}
	return out
}

// Claimant is a config as conflict checks see it.
type Claimant struct {
	// Kind, Namespace and Name identify the config ("EnvoyConfig default/x").
	Kind, Namespace, Name string
	Created               time.Time
	NodeSelector          *metav1.LabelSelector
	Ports                 []PortClaim
}

func (c Claimant) String() string {
	if c.Namespace == "" {
		return c.Kind + " " + c.Name
	}
	return c.Kind + " " + c.Namespace + "/" + c.Name
}

// Older orders configs by age (creation time, then kind, namespace and name), the
// order in which conflicts are decided: the older config keeps what it claims.
func Older(a, b Claimant) bool {
	return cmp.Or(a.Created.Compare(b.Created), cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name)) < 0
}

// Conflicts returns an error for every port self claims that one of others already
// claims on a node both select. Nodes are the labels of the current nodes; two
// selectors overlap when either selects every node (the nodes of tomorrow included)
// or some node matches both.
func Conflicts(self Claimant, others []Claimant, nodes []map[string]string) field.ErrorList {
	if len(self.Ports) == 0 {
		return nil
	}
	var errs field.ErrorList
	for _, o := range others {
		if o.Kind == self.Kind && o.Namespace == self.Namespace && o.Name == self.Name {
			continue
		}
		for _, mine := range self.Ports {
			for _, theirs := range o.Ports {
				if !mine.overlaps(theirs) || !selectorsOverlap(self.NodeSelector, o.NodeSelector, nodes) {
					continue
				}
				errs = append(errs, field.Invalid(resourcesPath.Index(mine.Index), "Listener "+mine.Listener,
					fmt.Sprintf("binds %s, which listener %q of %s already binds on the nodes both select", mine, theirs.Listener, o)))
			}
		}
	}
	return errs
}

func selectorsOverlap(a, b *metav1.LabelSelector, nodes []map[string]string) bool {
	if selectsAll(a) || selectsAll(b) {
		return true
	}
	sa, errA := metav1.LabelSelectorAsSelector(a)
	sb, errB := metav1.LabelSelectorAsSelector(b)
	if errA != nil || errB != nil {
		return false // a selector that does not parse selects no node
	}
	for _, n := range nodes {
		if sa.Matches(labels.Set(n)) && sb.Matches(labels.Set(n)) {
			return true
		}
	}
	return false
}

func selectsAll(s *metav1.LabelSelector) bool {
	return s == nil || (len(s.MatchLabels) == 0 && len(s.MatchExpressions) == 0)
}
