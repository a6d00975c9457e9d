package ingress

import (
	"fmt"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/types"
)

// ReasonHostConflict: a host on the shared listener belongs to another namespace.
const ReasonHostConflict Reason = "HostConflict"

// hostOwners decides which namespace each host of the shared listener belongs
// to: the namespace of the oldest Ingress that claims it. Without it, any
// namespace could add a path to another namespace's host (a longer prefix wins
// in Envoy, so a newcomer could take /login of someone else's site) or take its
// certificate. Ingresses of the owning namespace still merge their paths, as
// users of a shared load balancer expect; AllowCrossNamespaceHosts restores
// merging across namespaces for clusters that trust all their tenants.
type hostOwners struct {
	byHost     map[string]types.NamespacedName
	allowCross bool
}

func newHostOwners(allowCross bool) *hostOwners {
	return &hostOwners{byHost: map[string]types.NamespacedName{}, allowCross: allowCross}
}

// claim records ing's hosts (callers go oldest first) and returns those it may
// not serve, with the Ingress that owns each.
func (h *hostOwners) claim(ing *networkingv1.Ingress) map[string]types.NamespacedName {
	var denied map[string]types.NamespacedName
	for _, host := range claimedHosts(ing) {
		owner, held := h.byHost[host]
		switch {
		case !held:
			h.byHost[host] = types.NamespacedName{Namespace: ing.Namespace, Name: ing.Name}
		case owner.Namespace != ing.Namespace && !h.allowCross:
			if denied == nil {
				denied = map[string]types.NamespacedName{}
			}
			denied[host] = owner
		}
	}
	return denied
}

// claimedHosts are the hosts an Ingress serves something on: its rules' hosts
// ("*" for a rule without one), its TLS hosts, and "*" for a default backend.
func claimedHosts(ing *networkingv1.Ingress) []string {
	var out []string
	add := func(h string) {
		for _, have := range out {
			if have == h {
				return
			}
		}
		out = append(out, h)
	}
	for _, r := range ing.Spec.Rules {
		add(hostOf(r.Host))
	}
	for _, t := range ing.Spec.TLS {
		for _, h := range t.Hosts {
			add(strings.ToLower(h))
		}
	}
	if ing.Spec.DefaultBackend != nil {
		add("*")
	}
	return out
}

func hostConflict(field, host string, owner types.NamespacedName) Problem {
	what := "host " + host
	if host == "*" {
		what = "the catch-all host (rules without a host, the default backend)"
	}
	return Problem{ReasonHostConflict, field, fmt.Sprintf(
		"%s on the shared load balancer belongs to namespace %s (Ingress %s claimed it first): not served; use another host, the dedicated mode, or ask the operator for --allow-cross-namespace-hosts",
		what, owner.Namespace, owner)}
}
