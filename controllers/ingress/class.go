package ingress

import (
	networkingv1 "k8s.io/api/networking/v1"
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
}

// classify reads the IngressClasses. name is the class this controller serves
// even before its IngressClass object exists (the chart or the controller
// creates it, in either order); if it exists with another controller it is not ours.
func classify(list []networkingv1.IngressClass, name string) classes {
	c := classes{byName: map[string]bool{name: true}, name: name}
	oursDefault, otherDefault := false, false
	for _, ic := range list {
		ours := ic.Spec.Controller == ControllerName
		c.byName[ic.Name] = ours
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
