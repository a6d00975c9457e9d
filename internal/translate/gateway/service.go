package gateway

import (
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/portico-dev/portico/internal/gatewayparams"
	"github.com/portico-dev/portico/internal/lbipam"
	"github.com/portico-dev/portico/internal/svcname"
)

// Labels on the Services made for Gateways: how the controller finds them
// again, and how a user lists them. gatewayparams refuses them in a class's labels.
const (
	LabelManagedBy = "app.kubernetes.io/managed-by"
	ManagedBy      = "portico-gateway-controller"
	// LabelGateway is the name of the Gateway a Service belongs to (in its namespace).
	LabelGateway = "gateway.networking.k8s.io/gateway-name"
)

// AnnotationPropagated lists the label and annotation keys a Gateway's
// Service has from its class's parameters and the Gateway's infrastructure
// ("label:<key>" or "annotation:<key>", sorted, comma-separated).
const AnnotationPropagated = "gateway.portico.dev/propagated-keys"

func propagated(svc *corev1.Service) string {
	keys := make([]string, 0, len(svc.Labels)+len(svc.Annotations))
	for k := range svc.Labels {
		keys = append(keys, "label:"+k)
	}
	for k := range svc.Annotations {
		keys = append(keys, "annotation:"+k)
	}
	slices.Sort(keys)
	return strings.Join(keys, ",")
}

// Propagated returns the label and annotation keys AnnotationPropagated lists.
func Propagated(svc *corev1.Service) (labels, annotations []string) {
	raw := svc.Annotations[AnnotationPropagated]
	if raw == "" {
		return nil, nil
	}
	for _, k := range strings.Split(raw, ",") {
		if l, ok := strings.CutPrefix(k, "label:"); ok {
			labels = append(labels, l)
		} else if a, ok := strings.CutPrefix(k, "annotation:"); ok {
			annotations = append(annotations, a)
		}
	}
	return labels, annotations
}

// ServiceName is the Service of a Gateway: portico-gateway-<name>, made to
// fit a DNS-1035 label by the rule every producer shares (internal/svcname).
func ServiceName(gateway string) string { return svcname.For("portico-gateway-", gateway) }

// GatewayService is the Service a Gateway asks for: one port per listener
// port, its spec.addresses as LB-IPAM's requested addresses, the type, traffic
// policy, load balancer class, labels and annotations of its class's
// parameters (nil: the defaults), then its own infrastructure labels and
// annotations (the more specific object wins), then the controller's own.
func GatewayService(gw *gatewayv1.Gateway, p *gatewayparams.Parameters) *corev1.Service {
	if p == nil {
		p = gatewayparams.Default()
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: gw.Namespace, Name: ServiceName(gw.Name),
		Labels: map[string]string{}, Annotations: map[string]string{}}}
	for k, v := range p.Labels {
		svc.Labels[k] = v
	}
	for k, v := range p.Annotations {
		svc.Annotations[k] = v
	}
	if inf := gw.Spec.Infrastructure; inf != nil {
		for k, v := range inf.Labels {
			svc.Labels[string(k)] = string(v)
		}
		for k, v := range inf.Annotations {
			svc.Annotations[string(k)] = string(v)
		}
	}
	// Remembered on the Service, so that a key the class or the Gateway drops
	// later is removed while keys others put on the Service stay.
	if keys := propagated(svc); keys != "" {
		svc.Annotations[AnnotationPropagated] = keys
	}
	svc.Labels[LabelManagedBy], svc.Labels[LabelGateway] = ManagedBy, gw.Name
	svc.Spec.Type = p.ServiceType
	if p.ServiceType == corev1.ServiceTypeLoadBalancer {
		// The node agents serve the addresses; kube-proxy must leave them alone.
		svc.Annotations[lbipam.AnnotationIPMode] = "Proxy"
		var ips []string
		for _, a := range gw.Spec.Addresses {
			if (a.Type == nil || *a.Type == gatewayv1.IPAddressType) && a.Value != "" {
				ips = append(ips, a.Value)
			}
		}
		if len(ips) > 0 {
			svc.Annotations[lbipam.AnnotationIPs] = strings.Join(ips, ",")
		}
		svc.Spec.LoadBalancerClass = ptr.To(p.LoadBalancerClass)
		svc.Spec.AllocateLoadBalancerNodePorts = ptr.To(false)
		svc.Spec.ExternalTrafficPolicy = p.ExternalTrafficPolicy
	}
	seen := map[int32]bool{}
	for _, l := range gw.Spec.Listeners {
		if seen[l.Port] || (l.Protocol != gatewayv1.HTTPProtocolType && l.Protocol != gatewayv1.HTTPSProtocolType && l.Protocol != gatewayv1.TLSProtocolType) {
			continue
		}
		seen[l.Port] = true
		svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{Name: "port-" + strconv.Itoa(int(l.Port)), Port: l.Port, Protocol: corev1.ProtocolTCP})
	}
	slices.SortFunc(svc.Spec.Ports, func(a, b corev1.ServicePort) int { return int(a.Port - b.Port) })
	if len(svc.Spec.Ports) == 0 {
		// A Service needs a port; one no listener uses still gets the Gateway an address.
		svc.Spec.Ports = []corev1.ServicePort{{Name: "none", Port: 9, Protocol: corev1.ProtocolTCP}}
	}
	return svc
}

// ServiceAddresses are a Gateway Service's addresses: those in its
// status.loadBalancer (type LoadBalancer), or its cluster IPs (ClusterIP).
func ServiceAddresses(svc *corev1.Service) []string {
	if svc == nil {
		return nil
	}
	var out []string
	if svc.Spec.Type == corev1.ServiceTypeClusterIP {
		for _, ip := range svc.Spec.ClusterIPs {
			if ip != "" && ip != corev1.ClusterIPNone {
				out = append(out, ip)
			}
		}
		return out
	}
	for _, in := range svc.Status.LoadBalancer.Ingress {
		if in.IP != "" {
			out = append(out, in.IP)
		}
	}
	return out
}
