// Package v1alpha1 holds Portico's API: the user-facing kinds (LoadBalancerIPPool,
// L2AnnouncementPolicy, EnvoyConfig, ClusterEnvoyConfig) and the intermediate kinds that
// controllers and node agents exchange (NodeProxyConfig, NodeProxy).
//
// +kubebuilder:object:generate=true
// +groupName=portico.dev
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of every kind in this package.
	GroupVersion = schema.GroupVersion{Group: "portico.dev", Version: "v1alpha1"}

	// SchemeBuilder registers the kinds of this package with a runtime.Scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the kinds of this package to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
