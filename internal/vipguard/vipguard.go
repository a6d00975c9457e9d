// Package vipguard decides which addresses a NodeProxyConfig redirect must never take:
// a node's own addresses (Node status.addresses) and the apiserver's ClusterIPs
// (Service default/kubernetes). A redirect hands every connection to VIP:port arriving
// at a node to the local Envoy, so a redirect of a node address captures the node's own
// traffic (kubelet, SSH), and one of the apiserver's ClusterIP cuts pods off from the
// control plane. The NodeProxyConfig webhook checks against every node, the node agent
// against its own (admission can be off, and a node can gain an address later): both
// call this package, so both refuse with the same words.
package vipguard

import (
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/portico-dev/portico/apis/v1alpha1"
)

// APIServerService is the Service whose ClusterIPs reach the apiserver from pods.
var APIServerService = types.NamespacedName{Namespace: metav1.NamespaceDefault, Name: "kubernetes"}

// Forbidden maps each address no redirect may take to what it is. Build it with New.
type Forbidden struct {
	owners map[netip.Addr]owner
	// only, when set, limits what is recorded to these addresses (the VIPs of the config
	// being checked): the webhook adds every node on each admission, and a map of a few
	// VIPs costs far less than one of every node address.
	only map[netip.Addr]bool
}

// New returns an empty set that records only the addresses in only (nil: all).
func New(only map[netip.Addr]bool) *Forbidden {
	return &Forbidden{owners: map[netip.Addr]owner{}, only: only}
}

// Len is the number of forbidden addresses recorded.
func (f *Forbidden) Len() int { return len(f.owners) }

func (f *Forbidden) add(ip netip.Addr, o owner) {
	ip = ip.Unmap()
	if f.only == nil || f.only[ip] {
		f.owners[ip] = o
	}
}

// owner is what a forbidden address belongs to; the message is written only for a
// refusal (the webhook builds the set from every node on each admission).
type owner struct {
	node     string
	nodeType corev1.NodeAddressType
	service  *corev1.Service
}

func (o owner) String() string {
	if o.service != nil {
		return fmt.Sprintf("the ClusterIP of Service %s/%s (the apiserver)", o.service.Namespace, o.service.Name)
	}
	return fmt.Sprintf("an address of node %s (%s)", o.node, o.nodeType)
}

// AddNode forbids the node's IP addresses (InternalIP, ExternalIP; names are skipped).
func (f *Forbidden) AddNode(n *corev1.Node) {
	for _, a := range n.Status.Addresses {
		if ip, err := netip.ParseAddr(a.Address); err == nil {
			f.add(ip, owner{node: n.Name, nodeType: a.Type})
		}
	}
}

// AddAPIServer forbids the ClusterIPs of svc, the Service default/kubernetes.
func (f *Forbidden) AddAPIServer(svc *corev1.Service) {
	ips := svc.Spec.ClusterIPs
	if len(ips) == 0 && svc.Spec.ClusterIP != "" {
		ips = []string{svc.Spec.ClusterIP}
	}
	for _, s := range ips {
		if ip, err := netip.ParseAddr(s); err == nil {
			f.add(ip, owner{service: svc})
		}
	}
}

// Check refuses every redirect whose VIP is forbidden, naming spec.redirects[i].vip.
// Redirects for which keep returns true are not checked (nil checks all): the webhook
// passes the VIPs the object already had, so a node that gains an address later does
// not block every unrelated update of a config (the agents still refuse it).
func (f *Forbidden) Check(redirects []v1alpha1.Redirect, keep func(netip.Addr) bool) field.ErrorList {
	if len(f.owners) == 0 {
		return nil
	}
	var errs field.ErrorList
	path := field.NewPath("spec", "redirects")
	for i, r := range redirects {
		vip, err := netip.ParseAddr(r.VIP)
		if err != nil {
			continue // the schema refuses it
		}
		vip = vip.Unmap()
		what, bad := f.owners[vip]
		if !bad || (keep != nil && keep(vip)) {
			continue
		}
		errs = append(errs, field.Invalid(path.Index(i).Child("vip"), r.VIP,
			"is "+what.String()+": its traffic arriving at the node would be handed to the proxy"))
	}
	return errs
}

// VIPs returns the set of parsed VIPs of redirects (for Check's keep).
func VIPs(redirects []v1alpha1.Redirect) map[netip.Addr]bool {
	out := make(map[netip.Addr]bool, len(redirects))
	for _, r := range redirects {
		if vip, err := netip.ParseAddr(r.VIP); err == nil {
			out[vip.Unmap()] = true
		}
	}
	return out
}

// TrimNode is a cache transform keeping of a Node only what AddNode reads, so that a
// process checking against every node holds a few bytes per node, not its image list.
func TrimNode(obj any) (any, error) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return obj, nil
	}
	return &corev1.Node{
		TypeMeta:   n.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{Name: n.Name, UID: n.UID, ResourceVersion: n.ResourceVersion},
		Status:     corev1.NodeStatus{Addresses: n.Status.Addresses},
	}, nil
}
