// Package l2assign decides which node announces (answers ARP/NDP for) each Service
// address, with no client calls: the L2 controller gathers Services, nodes, heartbeats
// and policies from its cache, calls Assign, and writes what changed. The webhook uses
// the same ParsePolicy, so admission and the controller never disagree on validity.
package l2assign

import (
	"fmt"
	"net/netip"
	"regexp"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/ipam"
	"github.com/portico-dev/portico/internal/l2iface"
)

// Pseudo-labels a serviceSelector can use to match a Service's namespace and name (the
// same ones LoadBalancerIPPool selectors use).
const (
	LabelServiceNamespace = "io.kubernetes.service.namespace"
	LabelServiceName      = "io.kubernetes.service.name"
)

// LabelExcludeFromLB is the well-known node label that keeps a node out of external load
// balancers; its presence (any value) makes a node ineligible, as for cloud providers.
const LabelExcludeFromLB = "node.kubernetes.io/exclude-from-external-load-balancers"

// Policy is a parsed L2AnnouncementPolicy.
type Policy struct {
	Name            string
	Generation      int64
	Interfaces      []string
	LoadBalancerIPs bool
	ExternalIPs     bool
	// Errors lists every problem with its field path; an invalid policy announces nothing.
	Errors field.ErrorList

	nodes    labels.Selector
	services labels.Selector
	ifaces   []*regexp.Regexp
	// externalCIDRs allow spec.externalIPs addresses beside the pools.
	externalCIDRs []netip.Prefix
}

// ParsePolicy validates a policy in one pass and reports every problem with its field path.
func ParsePolicy(p *v1alpha1.L2AnnouncementPolicy) *Policy {
	out := &Policy{
		Name: p.Name, Generation: p.Generation, Interfaces: p.Spec.Interfaces,
		LoadBalancerIPs: p.Spec.LoadBalancerIPs, ExternalIPs: p.Spec.ExternalIPs,
	}
	spec := field.NewPath("spec")
	var errs field.ErrorList
	out.nodes, errs = selector(p.Spec.NodeSelector, spec.Child("nodeSelector"))
	out.Errors = append(out.Errors, errs...)
	out.services, errs = selector(p.Spec.ServiceSelector, spec.Child("serviceSelector"))
	out.Errors = append(out.Errors, errs...)
	for i, re := range p.Spec.Interfaces {
		c, err := regexp.Compile(re)
		if err != nil {
			out.Errors = append(out.Errors, field.Invalid(spec.Child("interfaces").Index(i), re,
				fmt.Sprintf("not a valid RE2 regular expression: %v", err)))
			continue
		}
		out.ifaces = append(out.ifaces, c)
	}
	for i, c := range p.Spec.ExternalIPCIDRs {
		pfx, err := netip.ParsePrefix(c)
		if err != nil {
			out.Errors = append(out.Errors, field.Invalid(spec.Child("externalIPCIDRs").Index(i), c,
				"must be a CIDR such as 192.168.10.0/24 or 2001:db8::/64"))
			continue
		}
		out.externalCIDRs = append(out.externalCIDRs, pfx.Masked())
	}
	if !p.Spec.LoadBalancerIPs && !p.Spec.ExternalIPs {
		// The schema refuses this too; repeated so a policy that slipped past it says why it does nothing.
		out.Errors = append(out.Errors, field.Required(spec, "at least one of loadBalancerIPs or externalIPs must be true"))
	}
	return out
}

// selector converts a label selector; nil or empty selects everything. The detailed
// validation names the exact field (matchExpressions[0].operator), which
// LabelSelectorAsSelector alone would not.
func selector(s *metav1.LabelSelector, path *field.Path) (labels.Selector, field.ErrorList) {
	if s == nil {
		return labels.Everything(), nil
	}
	errs := metav1validation.ValidateLabelSelector(s, metav1validation.LabelSelectorValidationOptions{}, path)
	sel, err := metav1.LabelSelectorAsSelector(s)
	if err != nil && len(errs) == 0 {
		errs = append(errs, field.Invalid(path, s, err.Error()))
	}
	if len(errs) > 0 {
		return labels.Nothing(), errs
	}
	return sel, nil
}

// Valid reports whether the policy has no errors.
func (p *Policy) Valid() bool { return len(p.Errors) == 0 }

// SelectsService reports whether the policy selects a Service with these labels (as given
// by ServiceLabels).
func (p *Policy) SelectsService(svcLabels map[string]string) bool {
	return p.Valid() && p.services.Matches(labels.Set(svcLabels))
}

// SelectsNode reports whether the policy's nodeSelector matches a node's labels.
func (p *Policy) SelectsNode(nodeLabels map[string]string) bool {
	return p.Valid() && p.nodes.Matches(labels.Set(nodeLabels))
}

// MatchesInterfaces reports whether the policy can be answered on a node with these
// interfaces (as its agent reported them, per-pod and tunnel interfaces left out):
// some name must pass l2iface.Match, the function the agent's responder uses too. A
// node that reported none can answer nothing.
func (p *Policy) MatchesInterfaces(names []string) bool {
	for _, n := range names {
		if l2iface.Match(p.ifaces, nil, n) {
			return true
		}
	}
	return false
}

// AllowsExternalIP reports whether the policy may announce ip, an address of a
// Service's spec.externalIPs: only inside a pool (pools) or the policy's
// externalIPCIDRs. Any namespace user can write externalIPs; without this, a Service
// could make nodes answer ARP for the router's address (design §8).
func (p *Policy) AllowsExternalIP(ip netip.Addr, pools []ipam.Range) bool {
	ip = ip.Unmap()
	for _, r := range pools {
		if r.Contains(ip) {
			return true
		}
	}
	for _, c := range p.externalCIDRs {
		if c.Contains(ip) {
			return true
		}
	}
	return false
}

// ServiceLabels returns a Service's labels plus the namespace and name pseudo-labels.
func ServiceLabels(namespace, name string, l map[string]string) map[string]string {
	out := make(map[string]string, len(l)+2)
	for k, v := range l {
		out[k] = v
	}
	out[LabelServiceNamespace] = namespace
	out[LabelServiceName] = name
	return out
}
