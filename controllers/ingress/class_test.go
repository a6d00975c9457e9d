package ingress

import (
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func class(name, controller string, isDefault bool) networkingv1.IngressClass {
	ic := networkingv1.IngressClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: networkingv1.IngressClassSpec{Controller: controller}}
	if isDefault {
		ic.Annotations = map[string]string{networkingv1.AnnotationIsDefaultIngressClass: "true"}
	}
	return ic
}

func ing(className *string, annotation string) *networkingv1.Ingress {
	i := &networkingv1.Ingress{Spec: networkingv1.IngressSpec{IngressClassName: className}}
	if annotation != "" {
		i.Annotations = map[string]string{AnnotationIngressClass: annotation}
	}
	return i
}

func TestClasses(t *testing.T) {
	portico := class("portico", ControllerName, false)
	porticoDefault := class("portico", ControllerName, true)
	nginx := class("nginx", "k8s.io/ingress-nginx", false)
	nginxDefault := class("nginx", "k8s.io/ingress-nginx", true)
	extra := class("portico-internal", ControllerName, false)
	for _, c := range []struct {
		name    string
		classes []networkingv1.IngressClass
		ing     *networkingv1.Ingress
		want    bool
	}{
		{"by name", []networkingv1.IngressClass{portico, nginx}, ing(ptr.To("portico"), ""), true},
		{"other class", []networkingv1.IngressClass{portico, nginx}, ing(ptr.To("nginx"), ""), false},
		{"unknown class", []networkingv1.IngressClass{portico}, ing(ptr.To("traefik"), ""), false},
		{"second class of ours", []networkingv1.IngressClass{portico, extra}, ing(ptr.To("portico-internal"), ""), true},
		{"our name before the class exists", nil, ing(ptr.To("portico"), ""), true},
		{"our name taken by another controller", []networkingv1.IngressClass{class("portico", "example.com/other", false)}, ing(ptr.To("portico"), ""), false},
		{"legacy annotation", []networkingv1.IngressClass{portico}, ing(nil, "portico"), true},
		{"legacy annotation of another class", []networkingv1.IngressClass{portico, nginx}, ing(nil, "nginx"), false},
		{"spec wins over annotation", []networkingv1.IngressClass{portico, nginx}, ing(ptr.To("nginx"), "portico"), false},
		{"no class, we are default", []networkingv1.IngressClass{porticoDefault, nginx}, ing(nil, ""), true},
		{"no class, no default", []networkingv1.IngressClass{portico, nginx}, ing(nil, ""), false},
		{"no class, other default", []networkingv1.IngressClass{portico, nginxDefault}, ing(nil, ""), false},
		{"no class, two defaults", []networkingv1.IngressClass{porticoDefault, nginxDefault}, ing(nil, ""), false},
	} {
		if got := classify(c.classes, "portico").ours(c.ing); got != c.want {
			t.Errorf("%s: ours = %v, want %v", c.name, got, c.want)
		}
	}
}
