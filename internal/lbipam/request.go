// Package lbipam decides which addresses LoadBalancer Services get from which pools. It is
// pure bookkeeping with no client calls: the controller feeds it pools and Services from
// its cache and writes back what it decides, so every rule here is unit-tested without an
// apiserver.
package lbipam

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Annotations and labels of the LB-IPAM API.
const (
	// LoadBalancerClass is the class LB-IPAM serves besides Services with no class.
	LoadBalancerClass = "portico.dev/lbipam"

	AnnotationIPs                   = "lbipam.portico.dev/ips"
	AnnotationSharingKey            = "lbipam.portico.dev/sharing-key"
	AnnotationSharingCrossNamespace = "lbipam.portico.dev/sharing-cross-namespace"
	AnnotationIPMode                = "lbipam.portico.dev/ip-mode"

	// LabelServiceNamespace and LabelServiceName let pool selectors match a Service's
	// namespace and name as if they were labels.
	LabelServiceNamespace = "io.kubernetes.service.namespace"
	LabelServiceName      = "io.kubernetes.service.name"
)

// Served reports whether LB-IPAM handles svc: a LoadBalancer Service with no class (unless
// requireClass) or with LoadBalancerClass. Services of other classes are never touched.
func Served(svc *corev1.Service, requireClass bool) bool {
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer || svc.DeletionTimestamp != nil {
		return false
	}
	if svc.Spec.LoadBalancerClass == nil {
		return !requireClass
	}
	return *svc.Spec.LoadBalancerClass == LoadBalancerClass
}

// PortProto is one Service port as far as sharing is concerned.
type PortProto struct {
	Port     int32
	Protocol corev1.Protocol
}

// Request is what a Service asks of LB-IPAM, parsed from its spec and annotations.
type Request struct {
	Key     types.NamespacedName
	Created time.Time
	// Labels are the Service's labels plus the namespace and name pseudo-labels.
	Labels map[string]string
	// Families in the order of spec.ipFamilies; all are required unless PreferDualStack.
	Families        []corev1.IPFamily
	PreferDualStack bool
	// Requested addresses (annotation, or spec.loadBalancerIP), at most one per family.
	Requested []netip.Addr

	SharingKey        string
	SharingNamespaces []string // "*" for any
	Ports             []PortProto
	LocalTraffic      bool              // externalTrafficPolicy: Local
	Selector          map[string]string // compared for Local sharing
	ProxyMode         bool              // status ipMode Proxy instead of VIP
}

// NewRequest parses svc. An error describes an invalid request (reason InvalidRequest).
func NewRequest(svc *corev1.Service) (*Request, error) {
	r := &Request{
		Key:          types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name},
		Created:      svc.CreationTimestamp.Time,
		Labels:       map[string]string{},
		SharingKey:   strings.TrimSpace(svc.Annotations[AnnotationSharingKey]),
		LocalTraffic: svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal,
		Selector:     svc.Spec.Selector,
	}
	maps.Copy(r.Labels, svc.Labels)
	r.Labels[LabelServiceNamespace] = svc.Namespace
	r.Labels[LabelServiceName] = svc.Name

	switch mode := svc.Annotations[AnnotationIPMode]; mode {
	case "", "VIP":
	case "Proxy":
		r.ProxyMode = true
	default:
		return r, fmt.Errorf("annotation %s: %q is neither VIP nor Proxy", AnnotationIPMode, mode)
	}
	if ns := strings.TrimSpace(svc.Annotations[AnnotationSharingCrossNamespace]); ns != "" {
		for _, n := range strings.Split(ns, ",") {
			if n = strings.TrimSpace(n); n != "" {
				r.SharingNamespaces = append(r.SharingNamespaces, n)
			}
		}
	}
	for _, p := range svc.Spec.Ports {
		proto := p.Protocol
		if proto == "" {
			proto = corev1.ProtocolTCP
		}
		r.Ports = append(r.Ports, PortProto{Port: p.Port, Protocol: proto})
	}

	raw, source := svc.Annotations[AnnotationIPs], "annotation "+AnnotationIPs
	if strings.TrimSpace(raw) == "" {
		raw, source = svc.Spec.LoadBalancerIP, "spec.loadBalancerIP"
	}
	seen := map[int]bool{}
	for _, s := range strings.Split(raw, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" || a.Is4In6() {
			return r, fmt.Errorf("%s: %q is not an IP address", source, s)
		}
		if seen[a.BitLen()] {
			return r, fmt.Errorf("%s: more than one %s address requested", source, familyOf(a))
		}
		seen[a.BitLen()] = true
		r.Requested = append(r.Requested, a)
	}

	r.Families = svc.Spec.IPFamilies
	if len(r.Families) == 0 {
		// The apiserver fills ipFamilies; an object without them (e.g. built in a test) is
		// treated as single-stack in the family of what it requests, else IPv4.
		r.Families = []corev1.IPFamily{corev1.IPv4Protocol}
		if len(r.Requested) == 1 && r.Requested[0].Is6() {
			r.Families = []corev1.IPFamily{corev1.IPv6Protocol}
		}
	}
	r.PreferDualStack = svc.Spec.IPFamilyPolicy != nil && *svc.Spec.IPFamilyPolicy == corev1.IPFamilyPolicyPreferDualStack
	for _, a := range r.Requested {
		if !slices.Contains(r.Families, familyOf(a)) {
			return r, fmt.Errorf("%s: %s is %s but the Service's ipFamilies are %v", source, a, familyOf(a), r.Families)
		}
	}
	return r, nil
}

func familyOf(a netip.Addr) corev1.IPFamily {
	if a.Is4() {
		return corev1.IPv4Protocol
	}
	return corev1.IPv6Protocol
}

func (r *Request) requested(f corev1.IPFamily) (netip.Addr, bool) {
	for _, a := range r.Requested {
		if familyOf(a) == f {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// shareVeto says why r may not share an address with o, or "" if it may. The reasons are
// what a user needs to fix, so they are precise.
func shareVeto(r, o *Request) string {
	switch {
	case r.SharingKey == "" && o.SharingKey == "":
		return fmt.Sprintf("it is held by %s and neither Service sets %s", o.Key, AnnotationSharingKey)
	case r.SharingKey == "":
		return fmt.Sprintf("it is held by %s; set %s=%s to share it", o.Key, AnnotationSharingKey, o.SharingKey)
	case o.SharingKey != r.SharingKey:
		return fmt.Sprintf("it is held by %s with sharing key %q, not %q", o.Key, o.SharingKey, r.SharingKey)
	}
	if r.Key.Namespace != o.Key.Namespace {
		if !allows(r.SharingNamespaces, o.Key.Namespace) || !allows(o.SharingNamespaces, r.Key.Namespace) {
			return fmt.Sprintf("it is held by %s in another namespace; both Services need %s naming the other's namespace (or *)",
				o.Key, AnnotationSharingCrossNamespace)
		}
	}
	for _, p := range r.Ports {
		if slices.Contains(o.Ports, p) {
			return fmt.Sprintf("port %d/%s is also used by %s, which holds it", p.Port, p.Protocol, o.Key)
		}
	}
	if r.LocalTraffic != o.LocalTraffic {
		return fmt.Sprintf("externalTrafficPolicy differs from %s, which holds it", o.Key)
	}
	if r.LocalTraffic && !maps.Equal(r.Selector, o.Selector) {
		return fmt.Sprintf("externalTrafficPolicy is Local and the selector differs from %s, which holds it", o.Key)
	}
	return ""
}

func allows(list []string, ns string) bool {
	return slices.Contains(list, "*") || slices.Contains(list, ns)
}
