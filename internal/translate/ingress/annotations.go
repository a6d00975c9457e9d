package ingress

import (
	"fmt"

	networkingv1 "k8s.io/api/networking/v1"
)

// Annotations an Ingress may carry. The names follow Cilium's ingress.cilium.io/*
// ones so that users moving from Cilium find them where they expect.
const (
	// AnnotationLoadBalancerMode is "shared" (the Ingress is served by the shared
	// Service portico-ingress in the install namespace) or "dedicated" (its own
	// Service portico-ingress-<name> in the Ingress's namespace).
	AnnotationLoadBalancerMode = "ingress.portico.dev/loadbalancer-mode"
	// AnnotationForceHTTPS "true" answers plain HTTP requests for hosts the Ingress
	// serves over TLS with a redirect to https.
	AnnotationForceHTTPS = "ingress.portico.dev/force-https"
	// AnnotationServiceType is LoadBalancer (default) or NodePort, for a dedicated Service.
	AnnotationServiceType = "ingress.portico.dev/service-type"
	// AnnotationInsecureNodePort and AnnotationSecureNodePort fix the node ports of
	// a dedicated Service's http (80) and https (443) ports.
	AnnotationInsecureNodePort = "ingress.portico.dev/insecure-node-port"
	AnnotationSecureNodePort   = "ingress.portico.dev/secure-node-port"
)

// Mode says which Service, and so which addresses and listeners, serve an Ingress.
type Mode string

const (
	ModeShared    Mode = "shared"
	ModeDedicated Mode = "dedicated"
)

// ParseMode reads a mode as written in the flag or the annotation.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case ModeShared, ModeDedicated:
		return m, nil
	}
	return "", fmt.Errorf("%q is neither %q nor %q", s, ModeShared, ModeDedicated)
}

// ModeOf is the mode ing asks for. An unreadable annotation falls back to def
// with a problem, rather than taking the Ingress off the air.
func ModeOf(ing *networkingv1.Ingress, def Mode) (Mode, *Problem) {
	v, ok := ing.Annotations[AnnotationLoadBalancerMode]
	if !ok {
		return def, nil
	}
	m, err := ParseMode(v)
	if err != nil {
		return def, &Problem{Reason: ReasonInvalidAnnotation, Field: "metadata.annotations[" + AnnotationLoadBalancerMode + "]",
			Message: fmt.Sprintf("%v; using the default mode %q", err, def)}
	}
	return m, nil
}

func forceHTTPS(ing *networkingv1.Ingress) bool {
	return ing.Annotations[AnnotationForceHTTPS] == "true"
}
