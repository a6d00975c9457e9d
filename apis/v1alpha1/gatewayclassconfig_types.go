package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// GatewayClassConfigSpec is what a GatewayClass's parametersRef asks of the
// Gateways of that class: how their Service looks and which nodes serve them.
type GatewayClassConfigSpec struct {
	// Service shapes the Service made for each Gateway of the class.
	// +optional
	Service *GatewayServiceConfig `json:"service,omitempty"`

	// NodeSelector selects the nodes that serve the class's Gateways: it becomes the
	// nodeSelector of each Gateway's NodeProxyConfigs (its listeners and its routes).
	// Absent selects every node running the Portico agent.
	// +optional
	NodeSelector *metav1.LabelSelector `json:"nodeSelector,omitempty"`
}

// GatewayServiceConfig is the part of a Gateway's Service a class may set. The
// controller keeps the rest (ports, its own labels, requested addresses).
//
// +kubebuilder:validation:XValidation:rule="!has(self.loadBalancerClass) || !has(self.type) || self.type == 'LoadBalancer'",message="loadBalancerClass needs type LoadBalancer"
// +kubebuilder:validation:XValidation:rule="!has(self.externalTrafficPolicy) || !has(self.type) || self.type == 'LoadBalancer'",message="externalTrafficPolicy needs type LoadBalancer"
type GatewayServiceConfig struct {
	// Type is LoadBalancer (the default: an address from LB-IPAM or from the load
	// balancer of loadBalancerClass) or ClusterIP (the Gateway's address is the
	// Service's cluster IP, redirected by the node agents like any other; no
	// external address).
	// +optional
	// +kubebuilder:validation:Enum=LoadBalancer;ClusterIP
	Type corev1.ServiceType `json:"type,omitempty"`

	// ExternalTrafficPolicy of the Service (Cluster or Local). A Gateway Service has
	// no endpoints (the node agents take its traffic), so with Local neither L2
	// announcements nor load balancers that follow the health-check node port send
	// it anywhere: the webhook warns.
	// +optional
	// +kubebuilder:validation:Enum=Cluster;Local
	ExternalTrafficPolicy corev1.ServiceExternalTrafficPolicy `json:"externalTrafficPolicy,omitempty"`

	// LoadBalancerClass of the Service; absent is Portico's LB-IPAM
	// (portico.dev/lbipam). A change replaces the Service (the class is immutable). Another class hands the address out elsewhere; its
	// load balancer must report ipMode Proxy (or run without kube-proxy) for the
	// node agents to receive the traffic.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	LoadBalancerClass *string `json:"loadBalancerClass,omitempty"`

	// Annotations added to the Service. Portico's own (portico.dev/...) stay the controller's.
	// +optional
	// +kubebuilder:validation:MaxProperties=64
	Annotations map[string]string `json:"annotations,omitempty"`

	// Labels added to the Service. The controller's own (managed-by, gateway-name) stay its own.
	// +optional
	// +kubebuilder:validation:MaxProperties=64
	Labels map[string]string `json:"labels,omitempty"`
}

// GatewayClassConfig holds the parameters of the GatewayClasses that name it in
// spec.parametersRef (group portico.dev, kind GatewayClassConfig). A change
// applies to every Gateway of those classes; an invalid one makes them
// Accepted=False, reason InvalidParameters, with the field.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=gwcc,categories=portico
// +kubebuilder:printcolumn:name="Service type",type=string,JSONPath=`.spec.service.type`
// +kubebuilder:printcolumn:name="LB class",type=string,JSONPath=`.spec.service.loadBalancerClass`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type GatewayClassConfig struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +optional
	Spec GatewayClassConfigSpec `json:"spec,omitempty"`
}

// GatewayClassConfigList is a list of GatewayClassConfigs.
//
// +kubebuilder:object:root=true
type GatewayClassConfigList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []GatewayClassConfig `json:"items"`
}

func init() {
	SchemeBuilder.Register(&GatewayClassConfig{}, &GatewayClassConfigList{})
}
