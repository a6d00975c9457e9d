package ingress

import (
	"fmt"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/types"
)

// ControllerName is the spec.controller of Portico's IngressClasses.
const ControllerName = "portico.dev/ingress-controller"

// AnnotationIngressClass is the deprecated way of naming a class, still common in
// charts written before networking.k8s.io/v1.
const AnnotationIngressClass = "kubernetes.io/ingress.class"

// classes is what the IngressClasses say about which Ingresses are ours.
type classes struct {
	byName map[string]bool // class name → whether it is ours
	// defaultOurs: an Ingress naming no class is ours. That holds when one of our
	// classes is the default and no other controller's class is: with two defaults
	// the apiserver's admission picks one on create, and an Ingress that still has
	// no class is better left to its owner than claimed by guess.
	defaultOurs bool
	name        string
	// defaultCert is the Secret our class names in spec.parameters (apiGroup "",
	// kind Secret, scope Namespace): the shared HTTPS listener's default certificate.
	defaultCert *types.NamespacedName
	// paramsProblem says why our class's parameters are not used.
	paramsProblem string
	class         *networkingv1.IngressClass
}

// classify reads the IngressClasses. name is the class this controller serves
// even before its IngressClass object exists (the chart or the controller
// creates it, in either order); if it exists with another controller it is not ours.
func classify(list []networkingv1.IngressClass, name string) classes {
	c := classes{byName: map[string]bool{name: true}, name: name}
	oursDefault, otherDefault := false, false
	for i, ic := range list {
		ours := ic.Spec.Controller == ControllerName
		c.byName[ic.Name] = ours
		if ours && ic.Name == name {
			c.class = &list[i]
			c.defaultCert, c.paramsProblem = defaultCertificate(ic.Spec.Parameters)
		}
		if ic.Annotations[networkingv1.AnnotationIsDefaultIngressClass] == "true" {
			if ours {
				oursDefault = true
			} else {
				otherDefault = true
			}
		}
	}
	c.defaultOurs = oursDefault && !otherDefault
	return c
}

// ours reports whether this controller serves ing: spec.ingressClassName first,
// then the legacy annotation, then the default class.
func (c classes) ours(ing *networkingv1.Ingress) bool {
	if ing.Spec.IngressClassName != nil {
		return c.byName[*ing.Spec.IngressClassName]
	}
	if v, ok := ing.Annotations[AnnotationIngressClass]; ok {
		return c.byName[v]
	}
	return c.defaultOurs
}

// defaultCertificate reads the default certificate from IngressClass parameters.
// A Secret is named directly (no parameters CRD to install for one field): the
// operator who owns the class owns that Secret, usually in the install namespace.
func defaultCertificate(p *networkingv1.IngressClassParametersReference) (*types.NamespacedName, string) {
	switch {
	case p == nil:
		return nil, ""
	case (p.APIGroup != nil && *p.APIGroup != "") || p.Kind != "Secret":
		return nil, fmt.Sprintf("spec.parameters: kind %q is not supported (name a Secret: apiGroup \"\", kind Secret, scope Namespace)", p.Kind)
	case p.Scope == nil || *p.Scope != networkingv1.IngressClassParametersReferenceScopeNamespace || p.Namespace == nil || *p.Namespace == "":
		return nil, "spec.parameters: a Secret parameter needs scope Namespace and a namespace"
	}
	return &types.NamespacedName{Namespace: *p.Namespace, Name: p.Name}, ""
}
