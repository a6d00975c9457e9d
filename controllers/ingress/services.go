package ingress

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/utils/ptr"

	"github.com/portico-dev/portico/internal/lbipam"
	"github.com/portico-dev/portico/internal/svcname"
	translate "github.com/portico-dev/portico/internal/translate/ingress"
)

// Labels on the Services this controller makes: how it finds them again to
// update or delete them, and how a user lists them.
const (
	LabelManagedBy = "app.kubernetes.io/managed-by"
	ManagedBy      = "portico-ingress-controller"
	// LabelRole is "shared" or "dedicated".
	LabelRole = "ingress.portico.dev/role"
)

// copiedPrefixes are the annotation and label prefixes copied from a dedicated
// Ingress to its Service: LB-IPAM's requests (a fixed address, a sharing key) and
// the cloud-provider load-balancer settings users already put on Ingresses.
var copiedPrefixes = []string{"lbipam.portico.dev/", "service.beta.kubernetes.io/"}

// DedicatedServiceName is the Service of a dedicated Ingress:
// portico-ingress-<name>. Service names are DNS-1035 labels (63 characters, no
// dots) while Ingress names are DNS subdomains, so a name that does not fit is
// cut, its dots replaced, and a hash of the whole name appended.
func DedicatedServiceName(ingressName string) string {
	return svcname.For("portico-ingress-", ingressName)
}

// serviceSpec is what this controller decides about one of its Services; the
// rest of the object (clusterIP, allocated node ports, status) is the apiserver's.
type serviceSpec struct {
	labels      map[string]string
	annotations map[string]string
	svcType     corev1.ServiceType
	nodePorts   map[int32]int32 // service port → fixed node port
}

// sharedService is the desired shared Service.
func sharedService() serviceSpec {
	return serviceSpec{
		labels:      map[string]string{LabelManagedBy: ManagedBy, LabelRole: string(translate.ModeShared)},
		annotations: map[string]string{lbipam.AnnotationIPMode: "Proxy"},
		svcType:     corev1.ServiceTypeLoadBalancer,
	}
}

// dedicatedService is the desired Service of a dedicated Ingress, or why the
// Ingress's annotations cannot be honoured (the Service is then made with defaults).
func dedicatedService(ing *networkingv1.Ingress) (serviceSpec, []string) {
	s := serviceSpec{
		labels:      map[string]string{},
		annotations: map[string]string{},
		svcType:     corev1.ServiceTypeLoadBalancer,
		nodePorts:   map[int32]int32{},
	}
	for k, v := range ing.Labels {
		if hasCopiedPrefix(k) {
			s.labels[k] = v
		}
	}
	for k, v := range ing.Annotations {
		if hasCopiedPrefix(k) {
			s.annotations[k] = v
		}
	}
	// Set after copying: the VIP must be handled by the node agent, never by
	// kube-proxy, whatever the Ingress says.
	s.labels[LabelManagedBy], s.labels[LabelRole] = ManagedBy, string(translate.ModeDedicated)
	s.annotations[lbipam.AnnotationIPMode] = "Proxy"

	var problems []string
	switch t := ing.Annotations[translate.AnnotationServiceType]; t {
	case "", string(corev1.ServiceTypeLoadBalancer):
	case string(corev1.ServiceTypeNodePort):
		s.svcType = corev1.ServiceTypeNodePort
	default:
		problems = append(problems, fmt.Sprintf("annotation %s: %q is neither LoadBalancer nor NodePort; using LoadBalancer", translate.AnnotationServiceType, t))
	}
	for ann, port := range map[string]int32{translate.AnnotationInsecureNodePort: translate.HTTPPort, translate.AnnotationSecureNodePort: translate.HTTPSPort} {
		v, ok := ing.Annotations[ann]
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil || n < 1 || n > 65535 {
			problems = append(problems, fmt.Sprintf("annotation %s: %q is not a port number; the node port is allocated", ann, v))
			continue
		}
		s.nodePorts[port] = int32(n)
	}
	return s, problems
}

func hasCopiedPrefix(k string) bool {
	for _, p := range copiedPrefixes {
		if strings.HasPrefix(k, p) {
			return true
		}
	}
	return false
}

// apply makes svc match s and reports whether anything changed. Copied keys
// the Ingress no longer has are removed; anything else on the Service is left as is.
func (s serviceSpec) apply(svc *corev1.Service) bool {
	before := svc.DeepCopy()
	if svc.Labels == nil {
		svc.Labels = map[string]string{}
	}
	if svc.Annotations == nil {
		svc.Annotations = map[string]string{}
	}
	maps.DeleteFunc(svc.Labels, func(k, _ string) bool { _, keep := s.labels[k]; return hasCopiedPrefix(k) && !keep })
	maps.DeleteFunc(svc.Annotations, func(k, _ string) bool { _, keep := s.annotations[k]; return hasCopiedPrefix(k) && !keep })
	maps.Copy(svc.Labels, s.labels)
	maps.Copy(svc.Annotations, s.annotations)

	svc.Spec.Type = s.svcType
	// No selector: the Service has no endpoints of its own. Its addresses are
	// redirected to Envoy on the nodes (ipMode Proxy keeps kube-proxy out).
	svc.Spec.Selector = nil
	if s.svcType == corev1.ServiceTypeLoadBalancer {
		// Only LB-IPAM can give the addresses the node agent serves.
		if svc.Spec.LoadBalancerClass == nil {
			svc.Spec.LoadBalancerClass = ptr.To(lbipam.LoadBalancerClass)
		}
		if len(s.nodePorts) == 0 {
			svc.Spec.AllocateLoadBalancerNodePorts = ptr.To(false)
		} else {
			svc.Spec.AllocateLoadBalancerNodePorts = nil
		}
	} else {
		svc.Spec.LoadBalancerClass, svc.Spec.AllocateLoadBalancerNodePorts = nil, nil
	}
	ports := []corev1.ServicePort{
		{Name: "http", Port: translate.HTTPPort, Protocol: corev1.ProtocolTCP},
		{Name: "https", Port: translate.HTTPSPort, Protocol: corev1.ProtocolTCP},
	}
	for i := range ports {
		// Keep a node port the apiserver allocated, or every update would ask for a new one.
		for _, old := range svc.Spec.Ports {
			if old.Port == ports[i].Port {
				ports[i].NodePort, ports[i].TargetPort = old.NodePort, old.TargetPort
			}
		}
		if np, ok := s.nodePorts[ports[i].Port]; ok {
			ports[i].NodePort = np
		}
	}
	svc.Spec.Ports = ports
	return !equalService(before, svc)
}

func equalService(a, b *corev1.Service) bool {
	return maps.Equal(a.Labels, b.Labels) && maps.Equal(a.Annotations, b.Annotations) &&
		a.Spec.Type == b.Spec.Type && ptr.Equal(a.Spec.LoadBalancerClass, b.Spec.LoadBalancerClass) &&
		ptr.Equal(a.Spec.AllocateLoadBalancerNodePorts, b.Spec.AllocateLoadBalancerNodePorts) &&
		len(a.Spec.Selector) == len(b.Spec.Selector) && slices.Equal(a.Spec.Ports, b.Spec.Ports)
}

// addresses are the IPs in a Service's status.
func addresses(svc *corev1.Service) []string {
	if svc == nil {
		return nil
	}
	var out []string
	for _, in := range svc.Status.LoadBalancer.Ingress {
		if in.IP != "" {
			out = append(out, in.IP)
		}
	}
	return out
}

// ingressStatus is the Ingress status copied from the Service that serves it.
func ingressStatus(svc *corev1.Service) []networkingv1.IngressLoadBalancerIngress {
	if svc == nil {
		return nil
	}
	var out []networkingv1.IngressLoadBalancerIngress
	for _, in := range svc.Status.LoadBalancer.Ingress {
		out = append(out, networkingv1.IngressLoadBalancerIngress{IP: in.IP, Hostname: in.Hostname})
	}
	return out
}
