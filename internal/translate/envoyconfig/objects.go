package envoyconfig

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-dev/portico/apis/v1alpha1"
)

// Object is an EnvoyConfig or a ClusterEnvoyConfig: what the translation and the
// conflict checks read of either kind.
type Object struct {
	Kind string
	Meta client.Object
	Spec *v1alpha1.EnvoyConfigSpec
}

// Of returns the Object view of an EnvoyConfig or ClusterEnvoyConfig, or false.
func Of(o client.Object) (Object, bool) {
	switch c := o.(type) {
	case *v1alpha1.EnvoyConfig:
		return Object{Kind: KindEnvoyConfig, Meta: c, Spec: &c.Spec}, true
	case *v1alpha1.ClusterEnvoyConfig:
		return Object{Kind: KindClusterEnvoyConfig, Meta: c, Spec: &c.Spec}, true
	}
	return Object{}, false
}

// ServiceKeys are the Services spec.services names, namespaces defaulted.
func (o Object) ServiceKeys() []types.NamespacedName {
	out := make([]types.NamespacedName, 0, len(o.Spec.Services))
	for _, s := range o.Spec.Services {
		ns := s.Namespace
		if ns == "" {
			ns = o.Meta.GetNamespace()
		}
		out = append(out, types.NamespacedName{Namespace: ns, Name: s.Name})
	}
	return out
}

// Input is the translation input of the object with the Services found by get.
func (o Object) Input(get func(types.NamespacedName) *corev1.Service) Input {
	in := Input{Kind: o.Kind, Namespace: o.Meta.GetNamespace(), Name: o.Meta.GetName(), Spec: o.Spec,
		Services: map[types.NamespacedName]*corev1.Service{}}
	for _, k := range o.ServiceKeys() {
		if svc := get(k); svc != nil {
			in.Services[k] = svc
		}
	}
	return in
}

// Claimant is the object with the ports its translation claims.
func (o Object) Claimant(ports []PortClaim) Claimant {
	return Claimant{Kind: o.Kind, Namespace: o.Meta.GetNamespace(), Name: o.Meta.GetName(),
		Created: o.Meta.GetCreationTimestamp().Time, NodeSelector: o.Spec.NodeSelector, Ports: ports}
}
