package v1alpha1

// ConditionType is the type of a status condition set by a Portico component.
// Types and reasons are constants so that tooling and tests can match them exactly.
type ConditionType string

// ConditionReason is the machine-readable reason of a status condition.
type ConditionReason string

// Condition types.
const (
	// ConditionReady says a pool or policy is valid and in use.
	ConditionReady ConditionType = "Ready"
	// ConditionConflicting says a pool overlaps an older pool; its ranges serve no new allocations.
	ConditionConflicting ConditionType = "Conflicting"
	// ConditionAccepted says an object was parsed and validated by its controller.
	ConditionAccepted ConditionType = "Accepted"
	// ConditionProgrammed says the desired state was applied on every selected node.
	ConditionProgrammed ConditionType = "Programmed"
	// ConditionDatapathReady says a node's eBPF programs, maps and routing rules are in place.
	ConditionDatapathReady ConditionType = "DatapathReady"
	// ConditionProxyConnected says a node's Envoy is connected to the agent's xDS server.
	ConditionProxyConnected ConditionType = "ProxyConnected"
	// ConditionIPAMRequestSatisfied (on Services) says whether LB-IPAM assigned the requested addresses.
	ConditionIPAMRequestSatisfied ConditionType = "IPAMRequestSatisfied"
	// ConditionL2Announced (on Services) names the node that answers ARP/NDP for the Service's IPs.
	ConditionL2Announced ConditionType = "L2Announced"
)

// Reasons shared by several kinds.
const (
	ReasonValid           ConditionReason = "Valid"
	ReasonInvalid         ConditionReason = "Invalid"
	ReasonNoConflict      ConditionReason = "NoConflict"
	ReasonOverlap         ConditionReason = "Overlap"
	ReasonDisabled        ConditionReason = "Disabled"
	ReasonProgrammed      ConditionReason = "Programmed"
	ReasonPending         ConditionReason = "Pending"
	ReasonRejected        ConditionReason = "Rejected"
	ReasonNoNodesSelected ConditionReason = "NoNodesSelected"
	ReasonAttached        ConditionReason = "Attached"
	ReasonFailed          ConditionReason = "Failed"
	ReasonConnected       ConditionReason = "Connected"
	ReasonNotConnected    ConditionReason = "NotConnected"
	ReasonNACKed          ConditionReason = "NACKed"
)

// Reasons of the IPAMRequestSatisfied condition on Services.
const (
	ReasonSatisfied            ConditionReason = "Satisfied"
	ReasonNoPool               ConditionReason = "NoPool"
	ReasonPoolSelectorMismatch ConditionReason = "PoolSelectorMismatch"
	ReasonAlreadyAllocated     ConditionReason = "AlreadyAllocated"
	ReasonIncompatibleSharing  ConditionReason = "IncompatibleSharing"
	ReasonOutOfIPs             ConditionReason = "OutOfIPs"
	ReasonInvalidRequest       ConditionReason = "InvalidRequest"
	ReasonIPRemovedFromPool    ConditionReason = "IPRemovedFromPool"
)

// Reasons of the L2Announced condition on Services.
const (
	ReasonAnnounced        ConditionReason = "Announced"
	ReasonNoEligibleNode   ConditionReason = "NoEligibleNode"
	ReasonNotSelected      ConditionReason = "NotSelected"
	ReasonNoAnnounceableIP ConditionReason = "NoAnnounceableIP"
	// ReasonNotAllowed: an address of spec.externalIPs lies outside every
	// LoadBalancerIPPool and the policy's externalIPCIDRs, so it is not announced.
	ReasonNotAllowed ConditionReason = "NotAllowed"
)

// Reasons of NodeProxy.status.rejected: why a node did not apply a NodeProxyConfig (or
// part of it). The node agent and its render step are the only writers; producers,
// kubectl-portico and the verdict on source objects read them.
const (
	// ReasonInvalidResource: an Envoy resource does not decode, has an unsupported @type,
	// fails Envoy's validation, or references what nothing serves (an EDS name no
	// backendService gives); or a backend Service or Secret reference is malformed.
	ReasonInvalidResource ConditionReason = "InvalidResource"
	// ReasonInvalidRedirect: a redirect is malformed or targets a listener its config does not define.
	ReasonInvalidRedirect ConditionReason = "InvalidRedirect"
	// ReasonInvalidRoute: a route fragment does not decode or fails validation.
	ReasonInvalidRoute ConditionReason = "InvalidRoute"
	// ReasonInvalidAnnouncement: an announcement's IP or interface pattern is malformed.
	ReasonInvalidAnnouncement ConditionReason = "InvalidAnnouncement"
	// ReasonConflict: an older config already claims a VIP:port or a resource name.
	ReasonConflict ConditionReason = "Conflict"
	// ReasonRedirectCapacity: the node's redirect map is full with older configs' redirects.
	ReasonRedirectCapacity ConditionReason = "RedirectCapacity"
	// ReasonInvalidFilterChain: a contributed filter chain does not decode, fails
	// validation, or references a route table or Secret that no applied config provides.
	ReasonInvalidFilterChain ConditionReason = "InvalidFilterChain"
	// ReasonListenerNotFound: filter chains are contributed to a listener that no
	// applied config defines.
	ReasonListenerNotFound ConditionReason = "ListenerNotFound"
	// ReasonSecretNotFound: a Secret the config lists does not exist; what presents it is not served.
	ReasonSecretNotFound ConditionReason = "SecretNotFound"
	// ReasonInvalidSecret: a Secret the config lists holds neither a valid key pair
	// (tls.crt, tls.key) nor a CA bundle (ca.crt), or lacks the part referenced.
	ReasonInvalidSecret ConditionReason = "InvalidSecret"
	// ReasonProxyPortsExhausted: the config's redirected listeners could not get a proxy
	// port; retried on every sync.
	ReasonProxyPortsExhausted ConditionReason = "ProxyPortsExhausted"
	// ReasonInvalidSelector: spec.nodeSelector does not parse, so the node cannot tell
	// whether it is selected.
	ReasonInvalidSelector ConditionReason = "InvalidSelector"
	// ReasonForbiddenVIP: a redirect targets an address of the node itself or the
	// apiserver's ClusterIP (admission may be off; the agent refuses it anyway).
	ReasonForbiddenVIP ConditionReason = "ForbiddenVIP"
)
