// Package inspect answers the question a user ends with when traffic does not
// flow: "where do I look?". It follows one source object (an Ingress, a Service,
// a NodeProxyConfig; later a Gateway, an HTTPRoute, an EnvoyConfig) down its
// chain — the NodeProxyConfigs made from it, what each node did with them (in
// effect, rejected with the agent's reason or Envoy's own NACK text, pending and
// why), the redirects and announcements they ask for, the Service addresses and
// the node that answers ARP/NDP for each — and lists what is wrong in one place.
// It also summarises every node's agent in one line.
//
// It is pure: cmd/kubectl-portico reads the objects, this package decides and
// renders. The per-node answers come from internal/verdict, the same function the
// producers write NodeProxyConfig status with, so the plugin and the PROGRAMMED
// column never disagree on what "programmed" means. The types below are the
// plugin's `-o json|yaml` output: fields are added, never renamed or removed.
package inspect

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Object names a Kubernetes object.
type Object struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
}

func (o Object) String() string {
	if o.Namespace == "" {
		return o.Kind + " " + o.Name
	}
	return o.Kind + " " + o.Namespace + "/" + o.Name
}

// State is where one config stands on one node.
type State string

const (
	// StateProgrammed: served, in the datapath, acknowledged by the node's proxy.
	StateProgrammed State = "Programmed"
	// StateRejected: the agent refused the config (or part of it), or the proxy NACKed it.
	StateRejected State = "Rejected"
	// StatePending: not in effect yet; the message says why.
	StatePending State = "Pending"
)

// Condition is a condition as its writer set it.
type Condition struct {
	Status  metav1.ConditionStatus `json:"status"`
	Reason  string                 `json:"reason,omitempty"`
	Message string                 `json:"message,omitempty"`
	// Current: written for the object's current generation.
	Current bool `json:"current"`
}

// NodeState is one config on one node.
type NodeState struct {
	Node    string `json:"node"`
	State   State  `json:"state"`
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
}

// Redirect is a VIP:port a config hands to an Envoy listener.
type Redirect struct {
	Name     string `json:"name"`
	VIP      string `json:"vip"`
	Port     int32  `json:"port"`
	Protocol string `json:"protocol"`
	Listener string `json:"listener"`
}

// Announcement is an address a config asks its node to answer ARP/NDP for.
type Announcement struct {
	IP         string   `json:"ip"`
	Service    string   `json:"service"`
	Interfaces []string `json:"interfaces,omitempty"`
}

// Config is one NodeProxyConfig of the chain.
type Config struct {
	Name       string `json:"name"`
	Producer   string `json:"producer,omitempty"`
	Generation int64  `json:"generation"`
	// Programmed is the producer's condition from the config's status; nil when the
	// producer writes none.
	Programmed *Condition `json:"programmed,omitempty"`
	// SelectedNodes counts the nodes running the agent that the config selects.
	SelectedNodes int `json:"selectedNodes"`
	// Nodes is the config's state on each selected node, by node name.
	Nodes         []NodeState    `json:"nodes"`
	Redirects     []Redirect     `json:"redirects,omitempty"`
	Announcements []Announcement `json:"announcements,omitempty"`
}

// Address is one address of a load balancer Service and who answers for it.
type Address struct {
	IP      string `json:"ip"`
	Service Object `json:"service"`
	// AnnouncedBy is the node the L2 controller assigned the address to, from its
	// l2 NodeProxyConfig ("" when no node announces it).
	AnnouncedBy string `json:"announcedBy,omitempty"`
	// Config is that NodeProxyConfig; State its state on AnnouncedBy.
	Config string `json:"config,omitempty"`
	State  State  `json:"state,omitempty"`
	// L2Announced is the Service's condition, the L2 controller's own account.
	L2Announced *Condition `json:"l2Announced,omitempty"`
}

// Status is the answer of `kubectl portico status KIND/NAME`.
type Status struct {
	Source Object `json:"source"`
	// LoadBalancers are the Services whose addresses reach the source.
	LoadBalancers []Object `json:"loadBalancers,omitempty"`
	// Published are the addresses the source itself shows (an Ingress's
	// status.loadBalancer), nil for kinds that show none.
	Published []string  `json:"published,omitempty"`
	Configs   []Config  `json:"configs"`
	Addresses []Address `json:"addresses"`
	// OK: everything is in effect on every selected node and every address is
	// announced. Problems says otherwise, one line each.
	OK       bool     `json:"ok"`
	Problems []string `json:"problems,omitempty"`
}

// Heartbeat is an agent's heartbeat Lease.
type Heartbeat struct {
	Lease     string            `json:"lease"`
	Holder    string            `json:"holder,omitempty"`
	RenewTime *metav1.MicroTime `json:"renewTime,omitempty"`
	// AgeSeconds is how long ago it was renewed, when the plugin looked.
	AgeSeconds      float64 `json:"ageSeconds"`
	DurationSeconds int32   `json:"durationSeconds"`
	// State is "live", "expired" (not renewed within its duration) or "released"
	// (the agent stopped and let go of it).
	State string `json:"state"`
}

// Node is one line of `kubectl portico nodes`.
type Node struct {
	Name string `json:"name"`
	// Agent: the node has a NodeProxy, so an agent ran there; the fields below are
	// its report.
	Agent     bool       `json:"agent"`
	Ready     *Condition `json:"ready,omitempty"`
	Datapath  *Condition `json:"datapath,omitempty"`
	Proxy     *Condition `json:"proxy,omitempty"`
	Heartbeat *Heartbeat `json:"heartbeat,omitempty"`
	// LastReport is when the agent last wrote its NodeProxy (it writes on change
	// only, so an old one is not a sign of trouble by itself).
	LastReport       *metav1.Time `json:"lastReport,omitempty"`
	LastReportAgeSec float64      `json:"lastReportAgeSeconds,omitempty"`
	// Proxies are the proxies the agent's xDS server knows, with what they ACKed.
	Proxies []ProxyState `json:"proxies,omitempty"`
	// AckedVersion is the newest xDS version a proxy acknowledged; XDSVersion the one served.
	AckedVersion    string   `json:"ackedVersion,omitempty"`
	XDSVersion      string   `json:"xdsVersion,omitempty"`
	Configs         int32    `json:"configs"`
	Redirects       int32    `json:"redirects"`
	AnnouncedIPs    int32    `json:"announcedIPs"`
	Rejected        int32    `json:"rejected"`
	RejectedConfigs []string `json:"rejectedConfigs,omitempty"`
	Problems        []string `json:"problems,omitempty"`
}

// ProxyState is one proxy connected (or recently connected) to a node's agent.
type ProxyState struct {
	ID           string `json:"id"`
	AckedVersion string `json:"ackedVersion,omitempty"`
	LastNACK     string `json:"lastNACK,omitempty"`
}

// Nodes is the answer of `kubectl portico nodes`.
type Nodes struct {
	Nodes []Node `json:"nodes"`
	OK    bool   `json:"ok"`
}
