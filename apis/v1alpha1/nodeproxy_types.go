package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// MaxReportedRejections bounds NodeProxy.status.rejected so the object stays small
// whatever the number of configs; RejectedCount carries the full number.
const MaxReportedRejections = 64

// MaxReportedInterfaces bounds NodeProxy.status.interfaces (a busy node has one veth per pod).
const MaxReportedInterfaces = 256

// RejectedConfig is a NodeProxyConfig (or one part of it) that a node did not apply.
type RejectedConfig struct {
	// Name of the NodeProxyConfig.
	Name string `json:"name"`
	// Generation that was rejected.
	Generation int64 `json:"generation"`
	// Reason is a CamelCase machine-readable reason (Conflict, InvalidResource, NACKed...).
	Reason ConditionReason `json:"reason"`
	// Message says what is wrong; for an Envoy NACK it is Envoy's own error text.
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message"`
}

// NodeProxyCounters summarise what the node applied.
type NodeProxyCounters struct {
	// SelectedConfigs is the number of NodeProxyConfigs selecting this node.
	SelectedConfigs int32 `json:"selectedConfigs"`
	// Redirects is the number of VIP:port entries in the node's redirect map.
	Redirects int32 `json:"redirects"`
	// AnnouncedIPs is the number of addresses the node answers ARP/NDP for.
	AnnouncedIPs int32 `json:"announcedIPs"`
	// Listeners, Clusters and Endpoints count the resources in the served xDS snapshot.
	Listeners int32 `json:"listeners"`
	Clusters  int32 `json:"clusters"`
	Endpoints int32 `json:"endpoints"`
	// FragmentsNotHere counts route tables and filter-chain fragments the node left
	// out because no config applied on it defines their listener (a route attached
	// to Gateways that run on other nodes). They are not rejections.
	// +optional
	FragmentsNotHere int32 `json:"fragmentsNotHere,omitempty"`
}

// ProxyStatus is what a connected Envoy acknowledged.
type ProxyStatus struct {
	// ID is the Envoy node id.
	ID string `json:"id"`
	// AckedVersion is the last snapshot version the proxy ACKed.
	// +optional
	AckedVersion string `json:"ackedVersion,omitempty"`
	// LastNACK is Envoy's error text for the last version it rejected, if any after the last ACK.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	LastNACK string `json:"lastNACK,omitempty"`
}

// NodeProxyStatus is the observed state of one node's agent.
type NodeProxyStatus struct {
	// Conditions: Ready, DatapathReady, ProxyConnected.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// AppliedResourceVersion is a watermark: every NodeProxyConfig selecting this node with
	// a resourceVersion at or below it is applied, except those listed in Rejected.
	// Successes are a watermark and not a list so the object stays small with 10,000 configs.
	// +optional
	AppliedResourceVersion string `json:"appliedResourceVersion,omitempty"`

	// ProgrammedResourceVersion is the same kind of watermark for what the node's proxies
	// have also acknowledged: every config at or below it is served, programmed in the
	// datapath and ACKed by every connected proxy, or listed in Rejected. It moves up to
	// AppliedResourceVersion whenever every connected proxy is in sync with no NACK, and
	// stays where it was otherwise (no proxy connected, a proxy still applying, or one
	// that NACKed), so producers can tell "served" from "in effect".
	// +optional
	ProgrammedResourceVersion string `json:"programmedResourceVersion,omitempty"`

	// XDSVersion is the snapshot version currently served to the node's proxies.
	// +optional
	XDSVersion string `json:"xdsVersion,omitempty"`

	// Counters summarise what the node applied.
	// +optional
	Counters NodeProxyCounters `json:"counters"`

	// Rejected lists configs the node did not apply, oldest first, at most MaxReportedRejections.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +listType=map
	// +listMapKey=name
	Rejected []RejectedConfig `json:"rejected,omitempty"`

	// RejectedCount is the number of rejected configs, including those not listed.
	// +optional
	RejectedCount int32 `json:"rejectedCount"`

	// Proxies are the Envoy instances connected to the node's xDS server.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	// +listType=map
	// +listMapKey=id
	Proxies []ProxyStatus `json:"proxies,omitempty"`

	// Interfaces are the node's interfaces the agent can answer ARP/NDP on (up, not
	// loopback, with an Ethernet address), sorted, at most MaxReportedInterfaces. The L2
	// controller assigns an address to this node only under a policy whose interface
	// regexes match one of them; empty when the agent's L2 responder is disabled.
	// +optional
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MaxLength=15
	// +listType=set
	Interfaces []string `json:"interfaces,omitempty"`

	// LastUpdateTime is when the agent last wrote this status.
	// +optional
	LastUpdateTime *metav1.Time `json:"lastUpdateTime,omitempty"`
}

// NodeProxy is the observed state of one node (its name is the node's name), written only
// by that node's agent: what it was asked to do, what it applied, and what failed.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName={np,nps},categories=portico
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Datapath",type=string,JSONPath=`.status.conditions[?(@.type=="DatapathReady")].status`
// +kubebuilder:printcolumn:name="Proxy",type=string,JSONPath=`.status.conditions[?(@.type=="ProxyConnected")].status`
// +kubebuilder:printcolumn:name="Configs",type=integer,JSONPath=`.status.counters.selectedConfigs`
// +kubebuilder:printcolumn:name="Rejected",type=integer,JSONPath=`.status.rejectedCount`
// +kubebuilder:printcolumn:name="Redirects",type=integer,JSONPath=`.status.counters.redirects`
// +kubebuilder:printcolumn:name="Announced",type=integer,JSONPath=`.status.counters.announcedIPs`
// +kubebuilder:printcolumn:name="xDS",type=string,JSONPath=`.status.xdsVersion`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type NodeProxy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +optional
	Status NodeProxyStatus `json:"status,omitempty"`
}

// NodeProxyList is a list of NodeProxy.
//
// +kubebuilder:object:root=true
type NodeProxyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []NodeProxy `json:"items"`
}

func init() {
	SchemeBuilder.Register(&NodeProxy{}, &NodeProxyList{})
}
