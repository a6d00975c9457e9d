package v1alpha1

import (
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
)

// EnvoyResource is one Envoy v3 resource in its proto3 JSON form, with an "@type" such as
// type.googleapis.com/envoy.config.listener.v3.Listener. It is kept as JSON so that any
// Envoy field can be used; the validating webhook decodes it with the Envoy protos.
//
// +kubebuilder:validation:XValidation:rule="'@type' in self",message="every Envoy resource needs an @type, such as type.googleapis.com/envoy.config.cluster.v3.Cluster"
// +kubebuilder:validation:XValidation:rule="!('@type' in self) || (type(self['@type']) == string && self['@type'].startsWith('type.googleapis.com/envoy.'))",message="@type must name an Envoy v3 type, such as type.googleapis.com/envoy.config.listener.v3.Listener"
// +kubebuilder:validation:MaxProperties=64
type EnvoyResource map[string]apiextensionsv1.JSON

// ServiceRef names a Service. An empty namespace means the namespace of the referring
// object (for cluster-scoped objects it is required).
type ServiceRef struct {
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name"`
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Namespace string `json:"namespace,omitempty"`
}

// ServiceListener redirects the traffic of a Service's frontends (ClusterIP, LoadBalancer
// and external IPs) into an Envoy listener of the same config.
type ServiceListener struct {
	ServiceRef `json:",inline"`

	// Listener is the name of the Envoy listener that receives the traffic. Empty means the
	// config's only listener.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Listener string `json:"listener,omitempty"`

	// Ports limits the redirect to these Service ports. Empty means every port.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:Minimum=1
	// +kubebuilder:validation:items:Maximum=65535
	// +listType=set
	Ports []int32 `json:"ports,omitempty"`
}

// BackendService is a Service whose ready endpoints are served to Envoy over EDS, as the
// ClusterLoadAssignment "<namespace>/<name>:<port>" (and "<namespace>/<name>" for every port).
type BackendService struct {
	ServiceRef `json:",inline"`

	// Ports limits the endpoints to these ports, by number or name. Empty means every port.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=15
	// +listType=set
	Ports []string `json:"ports,omitempty"`
}
