package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// L2AnnouncementPolicySpec selects Services whose addresses are announced with ARP (IPv4)
// and NDP (IPv6), the nodes that may announce them and the interfaces they answer on.
//
// +kubebuilder:validation:XValidation:rule="self.loadBalancerIPs || self.externalIPs",message="at least one of loadBalancerIPs or externalIPs must be true"
type L2AnnouncementPolicySpec struct {
	// NodeSelector selects the nodes that may announce. Empty or absent selects every node
	// running the Portico agent.
	// +optional
	NodeSelector *metav1.LabelSelector `json:"nodeSelector,omitempty"`

	// ServiceSelector selects the Services to announce, with io.kubernetes.service.namespace
	// and io.kubernetes.service.name matching a Service's namespace and name.
	// Empty or absent selects every Service.
	// +optional
	ServiceSelector *metav1.LabelSelector `json:"serviceSelector,omitempty"`

	// Interfaces are regular expressions (RE2) of the node interfaces to answer on.
	// Empty means every interface of the node except loopback.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=256
	// +listType=atomic
	Interfaces []string `json:"interfaces,omitempty"`

	// LoadBalancerIPs announces the addresses in status.loadBalancer.ingress.
	// +optional
	LoadBalancerIPs bool `json:"loadBalancerIPs,omitempty"`

	// ExternalIPs announces the addresses in spec.externalIPs that lie inside a
	// LoadBalancerIPPool or inside ExternalIPCIDRs: any Service's user can set
	// externalIPs, and without this limit could make nodes answer for the router's
	// address. Others get the Service condition L2Announced=False, reason NotAllowed.
	// +optional
	ExternalIPs bool `json:"externalIPs,omitempty"`

	// ExternalIPCIDRs are further ranges (beside the pools) whose spec.externalIPs
	// addresses this policy announces.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=64
	// +kubebuilder:validation:items:XValidation:rule="isCIDR(self)",message="must be a CIDR such as 192.168.10.0/24 or 2001:db8::/64"
	// +listType=atomic
	ExternalIPCIDRs []string `json:"externalIPCIDRs,omitempty"`
}

// L2AnnouncementPolicyStatus is the observed state of a policy.
type L2AnnouncementPolicyStatus struct {
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Ready (False with reason Invalid for a bad selector or regex).
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// SelectedServices is the number of Services the policy selects that have an address to announce.
	// +optional
	SelectedServices int32 `json:"selectedServices"`

	// AnnouncedIPs is the number of addresses assigned to a node under this policy.
	// +optional
	AnnouncedIPs int32 `json:"announcedIPs"`

	// EligibleNodes is the number of selected nodes with a live agent heartbeat.
	// +optional
	EligibleNodes int32 `json:"eligibleNodes"`
}

// L2AnnouncementPolicy makes one node answer ARP/NDP for each selected Service address.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName={l2policy,l2policies},categories=portico
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Services",type=integer,JSONPath=`.status.selectedServices`
// +kubebuilder:printcolumn:name="Announced",type=integer,JSONPath=`.status.announcedIPs`
// +kubebuilder:printcolumn:name="Nodes",type=integer,JSONPath=`.status.eligibleNodes`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type L2AnnouncementPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec L2AnnouncementPolicySpec `json:"spec"`
	// +optional
	Status L2AnnouncementPolicyStatus `json:"status,omitempty"`
}

// L2AnnouncementPolicyList is a list of L2AnnouncementPolicy.
//
// +kubebuilder:object:root=true
type L2AnnouncementPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []L2AnnouncementPolicy `json:"items"`
}

func init() {
	SchemeBuilder.Register(&L2AnnouncementPolicy{}, &L2AnnouncementPolicyList{})
}
