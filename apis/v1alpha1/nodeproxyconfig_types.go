package v1alpha1

import (
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Labels every producer puts on the NodeProxyConfigs it owns, so that
// `kubectl get npc -l portico.dev/producer=ingress` answers "what did the ingress controller ask for".
const (
	LabelProducer        = "portico.dev/producer"
	LabelSourceKind      = "portico.dev/source-kind"
	LabelSourceNamespace = "portico.dev/source-namespace"
	LabelSourceName      = "portico.dev/source-name"
)

// ProducerL2 is the producer of announcements: NodeProxyConfigs labelled with it carry
// announcements only, and only they may carry announcements (enforced by the chart's
// admission policy and again by the node agent).
const ProducerL2 = "l2"

// Protocol of a redirect.
// +kubebuilder:validation:Enum=TCP;UDP
type Protocol string

const (
	ProtocolTCP Protocol = "TCP"
	ProtocolUDP Protocol = "UDP"
)

// Redirect hands traffic for VIP:Port arriving at a node to the local Envoy listener
// Listener. The agent allocates the listener's proxy port on each node.
type Redirect struct {
	// Name identifies the redirect within its config (for status and conflicts).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// VIP is the destination address, IPv4 or IPv6.
	// +kubebuilder:validation:MaxLength=45
	// +kubebuilder:validation:XValidation:rule="isIP(self)",message="must be an IPv4 or IPv6 address"
	VIP string `json:"vip"`
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port"`
	// +kubebuilder:default=TCP
	// +optional
	Protocol Protocol `json:"protocol,omitempty"`
	// Listener is the name of an Envoy listener in the same config's resources.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Listener string `json:"listener"`
}

// Announcement asks the node to answer ARP (IPv4) or NDP (IPv6) for IP on the interfaces
// matching any of Interfaces.
type Announcement struct {
	// +kubebuilder:validation:MaxLength=45
	// +kubebuilder:validation:XValidation:rule="isIP(self)",message="must be an IPv4 or IPv6 address"
	IP string `json:"ip"`
	// Interfaces are RE2 regular expressions of interface names; empty means every
	// non-loopback interface.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=256
	// +listType=atomic
	Interfaces []string `json:"interfaces,omitempty"`
	// Service is the Service the address belongs to, for status and events.
	Service ServiceRef `json:"service"`
}

// EnvoyResources are the Envoy resources of one config and the Services whose endpoints
// the agent serves over EDS. Endpoints are not written here: they change most often, and
// the agent watches the EndpointSlices of exactly these Services.
type EnvoyResources struct {
	// Resources are Envoy v3 resources; the agent rejects a config whose resources do not decode.
	// +optional
	// +kubebuilder:validation:MaxItems=4096
	// +listType=atomic
	Resources []EnvoyResource `json:"resources,omitempty"`
	// +optional
	// +kubebuilder:validation:MaxItems=4096
	// +listType=atomic
	BackendServices []BackendService `json:"backendServices,omitempty"`
	// Secrets are the TLS Secrets ("<namespace>/<name>") served to Envoy over SDS under the
	// same name. Only Secrets listed here are ever read by the agent.
	// +optional
	// +kubebuilder:validation:MaxItems=4096
	// +listType=set
	Secrets []string `json:"secrets,omitempty"`
}

// FragmentRoute is one Envoy route (envoy.config.route.v3.Route, proto3 JSON) with its
// precedence key.
type FragmentRoute struct {
	// Precedence orders routes of the same virtual host across all fragments: ascending,
	// compared byte-wise. Producers encode their ordering rules (match kind, path length,
	// creation time, namespace/name) into it with fixed-width numbers, so the agent only sorts.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	Precedence string `json:"precedence"`
	// Route is the Envoy route.
	Route apiextensionsv1.JSON `json:"route"`
}

// RouteFragment is the part of a virtual host that one source contributes to a shared
// route table (shared-mode Ingresses, routes attached to a Gateway listener).
type RouteFragment struct {
	// RouteTable is the name of the RouteConfiguration the fragment belongs to.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	RouteTable string `json:"routeTable"`
	// Host is the virtual host's domain ("*" for any, "*.example.com" for a wildcard).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Host string `json:"host"`
	// +kubebuilder:validation:MaxItems=4096
	// +listType=atomic
	Routes []FragmentRoute `json:"routes"`
}

// FilterChainFragment is the filter chains one source contributes to a listener that
// another config defines (the shared HTTPS listener: each Ingress brings the SNI chains
// of its own certificates). The agent appends them to the listener, so a change to one
// source's TLS is one small write to that source's config, and the shared config stays
// the same size whatever the number of hosts.
type FilterChainFragment struct {
	// Listener is the name of an Envoy listener defined by a config applied on the same node.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Listener string `json:"listener"`
	// FilterChains are envoy.config.listener.v3.FilterChain messages (proto3 JSON). Each
	// must have a name, unique on the listener; two chains with the same match (e.g. one
	// SNI host claimed twice) are a conflict that the older config wins.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=256
	// +listType=atomic
	FilterChains []apiextensionsv1.JSON `json:"filterChains"`
}

// NodeProxyConfigSpec is the desired state one source object asks of the nodes it selects.
//
// A config with announcements must select exactly one node (nodeSelector: matchLabels
// with only kubernetes.io/hostname): an address answered from several nodes is split
// brain on the link.
//
// +kubebuilder:validation:XValidation:rule="!has(self.announcements) || size(self.announcements) == 0 || (has(self.nodeSelector) && has(self.nodeSelector.matchLabels) && size(self.nodeSelector.matchLabels) == 1 && 'kubernetes.io/hostname' in self.nodeSelector.matchLabels && size(self.nodeSelector.matchLabels['kubernetes.io/hostname']) > 0 && (!has(self.nodeSelector.matchExpressions) || size(self.nodeSelector.matchExpressions) == 0))",message="announcements require a nodeSelector that selects one node: matchLabels with only a non-empty kubernetes.io/hostname",fieldPath=".nodeSelector"
type NodeProxyConfigSpec struct {
	// NodeSelector selects the nodes that apply this config. Empty or absent selects every
	// node running the agent.
	// +optional
	NodeSelector *metav1.LabelSelector `json:"nodeSelector,omitempty"`
	// +optional
	// +kubebuilder:validation:MaxItems=4096
	// +listType=atomic
	Redirects []Redirect `json:"redirects,omitempty"`
	// +optional
	// +kubebuilder:validation:MaxItems=65536
	// +listType=atomic
	Announcements []Announcement `json:"announcements,omitempty"`
	// +optional
	Envoy *EnvoyResources `json:"envoy,omitempty"`
	// +optional
	// +kubebuilder:validation:MaxItems=4096
	// +listType=atomic
	RouteFragments []RouteFragment `json:"routeFragments,omitempty"`
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +listType=atomic
	FilterChainFragments []FilterChainFragment `json:"filterChainFragments,omitempty"`
}

// NodeProxyConfigStatus is written by the config's producer from the nodes' NodeProxy reports.
type NodeProxyConfigStatus struct {
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions: Programmed (applied on every selected node; the message names the nodes
	// that lag or failed and why).
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// SelectedNodes is the number of nodes the selector matches.
	// +optional
	SelectedNodes int32 `json:"selectedNodes"`
	// ProgrammedNodes is the number of selected nodes that applied the current generation.
	// +optional
	ProgrammedNodes int32 `json:"programmedNodes"`
}

// NodeProxyConfig is the desired datapath and proxy state that one source object (an
// Ingress, a Gateway, an EnvoyConfig, an L2 assignment) asks of a set of nodes.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName={npc,npcs},categories=portico
// +kubebuilder:printcolumn:name="Producer",type=string,JSONPath=`.metadata.labels.portico\.dev/producer`
// +kubebuilder:printcolumn:name="Programmed",type=string,JSONPath=`.status.conditions[?(@.type=="Programmed")].status`
// +kubebuilder:printcolumn:name="Nodes",type=string,JSONPath=`.status.programmedNodes`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type NodeProxyConfig struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec NodeProxyConfigSpec `json:"spec"`
	// +optional
	Status NodeProxyConfigStatus `json:"status,omitempty"`
}

// NodeProxyConfigList is a list of NodeProxyConfig.
//
// +kubebuilder:object:root=true
type NodeProxyConfigList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []NodeProxyConfig `json:"items"`
}

func init() {
	SchemeBuilder.Register(&NodeProxyConfig{}, &NodeProxyConfigList{})
}
