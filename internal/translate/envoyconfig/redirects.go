package envoyconfig

import (
	"fmt"
	"net/netip"
	"slices"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/portico-dev/portico/apis/v1alpha1"
)

// redirectServices turns spec.services into redirects: every frontend address of
// the Service (its ClusterIPs, external IPs and load balancer ingress IPs) on the
// listed ports (all when none are listed) goes to the named listener, or the
// config's first listener. Only ports of the listener's protocol are redirected.
// A Service that does not exist yet is a warning, not an error: configs and
// Services are applied in any order, and its redirects appear once it exists.
// It also returns the listeners that are redirect targets (the agent binds those
// to proxy ports, so they claim no port of their own).
func redirectServices(in Input, d *decoded) ([]v1alpha1.Redirect, map[string]bool, []string, field.ErrorList) {
	var out []v1alpha1.Redirect
	targets := map[string]bool{}
	var warnings []string
	var errs field.ErrorList
	byName := map[string]*listenerv3.Listener{}
	for _, l := range d.listeners {
		byName[l.GetName()] = l
	}
	q := qualifier{namespace: in.Namespace, config: in.Name}
	for i, s := range in.Spec.Services {
		p := field.NewPath("spec", "services").Index(i)
		var l *listenerv3.Listener
		switch {
		case s.Listener != "":
			if l = byName[q.forced(s.Listener)]; l == nil {
				errs = append(errs, field.NotFound(p.Child("listener"), s.Listener))
				continue
			}
		case len(d.listeners) == 0:
			errs = append(errs, field.Required(p.Child("listener"), "the config defines no listener to redirect the Service to"))
			continue
		default:
			l = d.listeners[0]
		}
		targets[l.GetName()] = true
		ns := s.Namespace
		if ns == "" {
			ns = in.Namespace
		}
		if in.Kind == KindEnvoyConfig && ns != in.Namespace {
			continue // refused by collectBackends
		}
		svc := in.Services[types.NamespacedName{Namespace: ns, Name: s.Name}]
		if svc == nil {
			warnings = append(warnings, fmt.Sprintf("%s: Service %s/%s does not exist (yet): nothing is redirected for it until it does", p, ns, s.Name))
			continue
		}
		proto := listenerProtocol(l)
		for _, sp := range svc.Spec.Ports {
			if sp.Protocol == "" {
				sp.Protocol = corev1.ProtocolTCP // the apiserver's default
			}
			if sp.Protocol != proto || (len(s.Ports) > 0 && !slices.Contains(s.Ports, sp.Port)) {
				continue
			}
			for _, vip := range frontends(svc) {
				out = append(out, v1alpha1.Redirect{
					Name:     fmt.Sprintf("%s/%s:%d@%s", ns, s.Name, sp.Port, vip),
					VIP:      vip,
					Port:     sp.Port,
					Protocol: v1alpha1.Protocol(proto),
					Listener: l.GetName(),
				})
			}
		}
	}
	// Two entries naming the same Service (or Services sharing an address) would
	// claim one frontend twice, which the agent refuses: the first entry keeps it.
	seen := map[string]bool{}
	kept := out[:0]
	for _, r := range out {
		key := fmt.Sprintf("%s|%d|%s", r.VIP, r.Port, r.Protocol)
		if !seen[key] {
			seen[key] = true
			kept = append(kept, r)
		}
	}
	return kept, targets, warnings, errs
}

func listenerProtocol(l *listenerv3.Listener) corev1.Protocol {
	if l.GetAddress().GetSocketAddress().GetProtocol() == corev3.SocketAddress_UDP || l.GetUdpListenerConfig() != nil {
		return corev1.ProtocolUDP
	}
	return corev1.ProtocolTCP
}

// frontends are the addresses clients reach a Service on, normalised and deduplicated.
func frontends(svc *corev1.Service) []string {
	var raw []string
	raw = append(raw, svc.Spec.ClusterIPs...)
	if len(svc.Spec.ClusterIPs) == 0 {
		raw = append(raw, svc.Spec.ClusterIP)
	}
	raw = append(raw, svc.Spec.ExternalIPs...)
	for _, ing := range svc.Status.LoadBalancer.Ingress {
		raw = append(raw, ing.IP)
	}
	var out []string
	for _, s := range raw {
		a, err := netip.ParseAddr(s)
		if err != nil { // "None" (headless), "", or a hostname ingress
			continue
		}
		if v := a.Unmap().String(); !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}
