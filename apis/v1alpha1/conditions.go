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
