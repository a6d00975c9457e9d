package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// EnvoyConfigSpec is raw Envoy configuration applied by the node agents: listeners,
// routes, clusters and secrets, with Service traffic redirected into the listeners.
type EnvoyConfigSpec struct {
	// Services whose traffic is redirected into a listener of this config.
	// +optional
	// +kubebuilder:validation:MaxItems=128
	// +listType=atomic
	Services []ServiceListener `json:"services,omitempty"`

	// BackendServices whose endpoints are served over EDS, without redirecting their traffic.
	// +optional
	// +kubebuilder:validation:MaxItems=256
	// +listType=atomic
	BackendServices []ConfigBackendService `json:"backendServices,omitempty"`

	// Resources are Envoy v3 resources (Listener, RouteConfiguration, Cluster,
	// ClusterLoadAssignment, Secret) in proto3 JSON form with "@type".
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=256
	// +listType=atomic
	Resources []EnvoyResource `json:"resources"`

	// NodeSelector limits the config to matching nodes. Empty or absent selects every node.
	// +optional
	NodeSelector *metav1.LabelSelector `json:"nodeSelector,omitempty"`
}

// ConfigBackendService is a backend Service of an EnvoyConfig. Besides ports it accepts
// Cilium's spelling of the same list, number, so that a CiliumEnvoyConfig keeps working
// with only its apiVersion and kind changed; the two lists are merged.
type ConfigBackendService struct {
	BackendService `json:",inline"`

	// Number is CiliumEnvoyConfig's name for ports (port numbers as strings); merged with ports.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=15
	// +listType=set
	Number []string `json:"number,omitempty"`
}

// EnvoyConfigStatus is the observed state of an EnvoyConfig or ClusterEnvoyConfig.
type EnvoyConfigStatus struct {
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Accepted (the resources decode and validate), Programmed (every selected
	// node applied them; the message quotes Envoy's error text for a NACK).
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// EnvoyConfig is namespaced raw Envoy configuration; Services without a namespace are in
// the EnvoyConfig's namespace.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName={pec},categories=portico
// +kubebuilder:printcolumn:name="Accepted",type=string,JSONPath=`.status.conditions[?(@.type=="Accepted")].status`
// +kubebuilder:printcolumn:name="Programmed",type=string,JSONPath=`.status.conditions[?(@.type=="Programmed")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type EnvoyConfig struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec EnvoyConfigSpec `json:"spec"`
	// +optional
	Status EnvoyConfigStatus `json:"status,omitempty"`
}

// EnvoyConfigList is a list of EnvoyConfig.
//
// +kubebuilder:object:root=true
type EnvoyConfigList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []EnvoyConfig `json:"items"`
}

// ClusterEnvoyConfig is cluster-scoped raw Envoy configuration; every Service reference
// names its namespace.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName={pcec},categories=portico
// +kubebuilder:validation:XValidation:rule="!has(self.spec.services) || self.spec.services.all(s, has(s.namespace) && size(s.namespace) > 0)",message="spec.services[].namespace is required in a ClusterEnvoyConfig"
// +kubebuilder:validation:XValidation:rule="!has(self.spec.backendServices) || self.spec.backendServices.all(s, has(s.namespace) && size(s.namespace) > 0)",message="spec.backendServices[].namespace is required in a ClusterEnvoyConfig"
// +kubebuilder:printcolumn:name="Accepted",type=string,JSONPath=`.status.conditions[?(@.type=="Accepted")].status`
// +kubebuilder:printcolumn:name="Programmed",type=string,JSONPath=`.status.conditions[?(@.type=="Programmed")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ClusterEnvoyConfig struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec EnvoyConfigSpec `json:"spec"`
	// +optional
	Status EnvoyConfigStatus `json:"status,omitempty"`
}

// ClusterEnvoyConfigList is a list of ClusterEnvoyConfig.
//
// +kubebuilder:object:root=true
type ClusterEnvoyConfigList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterEnvoyConfig `json:"items"`
}

func init() {
	SchemeBuilder.Register(&EnvoyConfig{}, &EnvoyConfigList{}, &ClusterEnvoyConfig{}, &ClusterEnvoyConfigList{})
}
