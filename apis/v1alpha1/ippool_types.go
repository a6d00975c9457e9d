package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// IPBlock is one range of a pool: either a CIDR, or a start and an optional stop address
// (a start alone is a single address). IPv4 and IPv6 are both allowed; a range is of one family.
// A block must not touch the unspecified, loopback, link-local or multicast addresses
// (the rules below; a start-stop range spanning one with both ends outside it is refused
// by the webhook and the controller, since CEL cannot compare addresses).
//
// +kubebuilder:validation:XValidation:rule="has(self.cidr) != has(self.start)",message="exactly one of cidr or start must be set"
// +kubebuilder:validation:XValidation:rule="!has(self.stop) || has(self.start)",message="stop requires start"
// +kubebuilder:validation:XValidation:rule="!has(self.start) || !has(self.stop) || !isIP(self.start) || !isIP(self.stop) || ip(self.start).family() == ip(self.stop).family()",message="start and stop must be of the same IP family"
type IPBlock struct {
	// CIDR is a prefix such as 192.168.10.0/24 or 2001:db8::/64.
	// +optional
	// +kubebuilder:validation:MaxLength=49
	// +kubebuilder:validation:XValidation:rule="isCIDR(self)",message="must be a CIDR such as 192.168.10.0/24 or 2001:db8::/64"
	// +kubebuilder:validation:XValidation:rule="!isCIDR(self) || cidr(self).prefixLength() != 0",message="must not be 0.0.0.0/0 or ::/0 (the whole address space)"
	// +kubebuilder:validation:XValidation:rule="!isCIDR(self) || cidr(self).prefixLength() == 0 || !(cidr(self).containsIP('0.0.0.0') || cidr(self).containsIP('::'))",message="must not contain the unspecified address (0.0.0.0 or ::)"
	// +kubebuilder:validation:XValidation:rule="!isCIDR(self) || cidr(self).prefixLength() == 0 || !(cidr(self).containsIP('127.0.0.0') || cidr('127.0.0.0/8').containsIP(cidr(self).ip()) || cidr(self).containsIP('::1') || cidr('::1/128').containsIP(cidr(self).ip()))",message="must not contain loopback addresses (127.0.0.0/8, ::1)"
	// +kubebuilder:validation:XValidation:rule="!isCIDR(self) || cidr(self).prefixLength() == 0 || !(cidr(self).containsIP('169.254.0.0') || cidr('169.254.0.0/16').containsIP(cidr(self).ip()) || cidr(self).containsIP('fe80::') || cidr('fe80::/10').containsIP(cidr(self).ip()))",message="must not contain link-local addresses (169.254.0.0/16, fe80::/10)"
	// +kubebuilder:validation:XValidation:rule="!isCIDR(self) || cidr(self).prefixLength() == 0 || !(cidr(self).containsIP('224.0.0.0') || cidr('224.0.0.0/4').containsIP(cidr(self).ip()) || cidr(self).containsIP('ff00::') || cidr('ff00::/8').containsIP(cidr(self).ip()))",message="must not contain multicast addresses (224.0.0.0/4, ff00::/8)"
	CIDR string `json:"cidr,omitempty"`

	// Start is the first address of the range.
	// +optional
	// +kubebuilder:validation:MaxLength=45
	// +kubebuilder:validation:XValidation:rule="isIP(self)",message="must be an IPv4 or IPv6 address"
	// +kubebuilder:validation:XValidation:rule="!isIP(self) || !ip(self).isUnspecified()",message="must not be the unspecified address (0.0.0.0 or ::)"
	// +kubebuilder:validation:XValidation:rule="!isIP(self) || !ip(self).isLoopback()",message="must not be a loopback address (127.0.0.0/8, ::1)"
	// +kubebuilder:validation:XValidation:rule="!isIP(self) || !ip(self).isLinkLocalUnicast()",message="must not be a link-local address (169.254.0.0/16, fe80::/10)"
	// +kubebuilder:validation:XValidation:rule="!isIP(self) || !(cidr('224.0.0.0/4').containsIP(self) || cidr('ff00::/8').containsIP(self))",message="must not be a multicast address (224.0.0.0/4, ff00::/8)"
	Start string `json:"start,omitempty"`

	// Stop is the last address of the range, included. Defaults to Start.
	// +optional
	// +kubebuilder:validation:MaxLength=45
	// +kubebuilder:validation:XValidation:rule="isIP(self)",message="must be an IPv4 or IPv6 address"
	// +kubebuilder:validation:XValidation:rule="!isIP(self) || !ip(self).isUnspecified()",message="must not be the unspecified address (0.0.0.0 or ::)"
	// +kubebuilder:validation:XValidation:rule="!isIP(self) || !ip(self).isLoopback()",message="must not be a loopback address (127.0.0.0/8, ::1)"
	// +kubebuilder:validation:XValidation:rule="!isIP(self) || !ip(self).isLinkLocalUnicast()",message="must not be a link-local address (169.254.0.0/16, fe80::/10)"
	// +kubebuilder:validation:XValidation:rule="!isIP(self) || !(cidr('224.0.0.0/4').containsIP(self) || cidr('ff00::/8').containsIP(self))",message="must not be a multicast address (224.0.0.0/4, ff00::/8)"
	Stop string `json:"stop,omitempty"`
}

// LoadBalancerIPPoolSpec defines which addresses a pool hands out and to which Services.
type LoadBalancerIPPoolSpec struct {
	// Blocks are the address ranges of the pool.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=1024
	// +listType=atomic
	Blocks []IPBlock `json:"blocks"`

	// ServiceSelector limits the pool to matching Services. The labels
	// io.kubernetes.service.namespace and io.kubernetes.service.name match a Service's
	// namespace and name. Empty or absent selects every Service.
	// +optional
	ServiceSelector *metav1.LabelSelector `json:"serviceSelector,omitempty"`

	// Disabled keeps the addresses already allocated from this pool but makes no new allocations.
	// +optional
	// +kubebuilder:default=false
	Disabled bool `json:"disabled,omitempty"`

	// AllowFirstLastIPs allows the network and broadcast addresses of IPv4 CIDR blocks
	// (they are excluded by default because many networks cannot route them).
	// +optional
	// +kubebuilder:default=false
	AllowFirstLastIPs bool `json:"allowFirstLastIPs,omitempty"`
}

// IPFamilyCounts counts a pool's addresses of one family. Counts above 2^63-1
// (an IPv6 block larger than /65) are reported as 9223372036854775807.
type IPFamilyCounts struct {
	// Total is the number of usable addresses in the pool's blocks.
	Total int64 `json:"total"`
	// Used is the number of addresses allocated to Services.
	Used int64 `json:"used"`
	// Available is Total minus Used, or 0 while the pool is disabled or conflicting.
	Available int64 `json:"available"`
}

// LoadBalancerIPPoolStatus is the observed state of a pool.
type LoadBalancerIPPoolStatus struct {
	// ObservedGeneration is the generation the counts and conditions were computed from.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Ready, Conflicting.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// IPv4 counts the pool's IPv4 addresses; absent when the pool has none.
	// +optional
	IPv4 *IPFamilyCounts `json:"ipv4,omitempty"`

	// IPv6 counts the pool's IPv6 addresses; absent when the pool has none.
	// +optional
	IPv6 *IPFamilyCounts `json:"ipv6,omitempty"`

	// Available is the sum of Available over both families (the IPS AVAILABLE column).
	// +optional
	Available int64 `json:"available,omitempty"`
}

// LoadBalancerIPPool is a set of addresses that LB-IPAM hands to LoadBalancer Services.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName={ippool,ippools,lbippool},categories=portico
// +kubebuilder:printcolumn:name="Disabled",type=boolean,JSONPath=`.spec.disabled`
// +kubebuilder:printcolumn:name="Conflicting",type=string,JSONPath=`.status.conditions[?(@.type=="Conflicting")].status`
// +kubebuilder:printcolumn:name="IPs Available",type=integer,JSONPath=`.status.available`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type LoadBalancerIPPool struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec LoadBalancerIPPoolSpec `json:"spec"`
	// +optional
	Status LoadBalancerIPPoolStatus `json:"status,omitempty"`
}

// LoadBalancerIPPoolList is a list of LoadBalancerIPPool.
//
// +kubebuilder:object:root=true
type LoadBalancerIPPoolList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []LoadBalancerIPPool `json:"items"`
}

func init() {
	SchemeBuilder.Register(&LoadBalancerIPPool{}, &LoadBalancerIPPoolList{})
}
