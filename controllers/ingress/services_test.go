package ingress

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/ptr"
)

func TestDedicatedServiceName(t *testing.T) {
	if got := DedicatedServiceName("webpod-ingress"); got != "portico-ingress-webpod-ingress" {
		t.Errorf("got %q", got)
	}
	dotted, dashed := DedicatedServiceName("shop.example.com"), DedicatedServiceName("shop-example-com")
	long := DedicatedServiceName(strings.Repeat("x", 200))
	for _, n := range []string{dotted, dashed, long} {
		if errs := validation.IsDNS1035Label(n); len(errs) > 0 {
			t.Errorf("%q: %v", n, errs)
		}
	}
	if dotted == dashed {
		t.Errorf("shop.example.com and shop-example-com share the Service %q", dotted)
	}
}

func TestDedicatedServiceSpec(t *testing.T) {
	ing := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default",
		Labels: map[string]string{"team": "a", "lbipam.portico.dev/pool": "edge"},
		Annotations: map[string]string{
			"lbipam.portico.dev/ips":                   "192.168.10.250",
			"service.beta.kubernetes.io/some-provider": "x",
			"lbipam.portico.dev/ip-mode":               "VIP", // ours wins
			"ingress.portico.dev/service-type":         "NodePort",
			"ingress.portico.dev/insecure-node-port":   "30080",
			"ingress.portico.dev/secure-node-port":     "nope",
			"unrelated":                                "y",
		}}}
	spec, problems := dedicatedService(ing)
	if len(problems) != 1 || !strings.Contains(problems[0], "secure-node-port") {
		t.Errorf("problems = %v", problems)
	}
	svc := &corev1.Service{}
	if !spec.apply(svc) {
		t.Fatal("apply on an empty Service changed nothing")
	}
	if svc.Annotations["lbipam.portico.dev/ip-mode"] != "Proxy" || svc.Annotations["lbipam.portico.dev/ips"] != "192.168.10.250" ||
		svc.Annotations["service.beta.kubernetes.io/some-provider"] != "x" || svc.Annotations["unrelated"] != "" {
		t.Errorf("annotations %v", svc.Annotations)
	}
	if svc.Labels["lbipam.portico.dev/pool"] != "edge" || svc.Labels["team"] != "" || svc.Labels[LabelRole] != "dedicated" {
		t.Errorf("labels %v", svc.Labels)
	}
	if svc.Spec.Type != corev1.ServiceTypeNodePort || svc.Spec.LoadBalancerClass != nil || svc.Spec.Ports[0].NodePort != 30080 {
		t.Errorf("spec %+v", svc.Spec)
	}

	// The apiserver allocated the https node port; applying again keeps it and is a no-op.
	svc.Spec.Ports[1].NodePort = 31443
	if spec.apply(svc) {
		t.Error("second apply changed the Service")
	}
	if svc.Spec.Ports[1].NodePort != 31443 {
		t.Error("allocated node port lost")
	}

	// An annotation removed from the Ingress is removed from the Service; the
	// Service goes back to a LoadBalancer of LB-IPAM's class.
	delete(ing.Annotations, "lbipam.portico.dev/ips")
	delete(ing.Annotations, "ingress.portico.dev/service-type")
	delete(ing.Annotations, "ingress.portico.dev/insecure-node-port")
	delete(ing.Annotations, "ingress.portico.dev/secure-node-port")
	spec, _ = dedicatedService(ing)
	if !spec.apply(svc) {
		t.Fatal("no change")
	}
	if _, ok := svc.Annotations["lbipam.portico.dev/ips"]; ok {
		t.Error("stale copied annotation kept")
	}
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer || !ptr.Equal(svc.Spec.LoadBalancerClass, ptr.To("portico.dev/lbipam")) ||
		!ptr.Equal(svc.Spec.AllocateLoadBalancerNodePorts, ptr.To(false)) {
		t.Errorf("spec %+v", svc.Spec)
	}
}
