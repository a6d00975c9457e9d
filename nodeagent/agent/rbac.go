package agent

// What the agent's code reads and writes, for the RBAC controller-gen generates into
// config/rbac/nodeagent (and the chart binds to the agent's ServiceAccount). RBAC has no
// notion of "this node": it grants every agent the same rights, and the chart's
// admission policy (portico-node-agent-self) narrows the writes to the node named by
// the token's authentication.kubernetes.io/node-name claim.
//
// Watched through the manager's cache (list and watch; Get reads the cache):
// +kubebuilder:rbac:groups=portico.dev,resources=nodeproxyconfigs,verbs=list;watch
// +kubebuilder:rbac:groups="",resources=nodes,verbs=list;watch
// +kubebuilder:rbac:groups=discovery.k8s.io,resources=endpointslices,verbs=list;watch
// +kubebuilder:rbac:groups="",resources=services,verbs=list;watch
//
// The TLS Secrets the applied configs list, each by a watch of its own with the field
// selector metadata.name=<name> (nodeagent/secrets), as the kubelet's watch-based
// Secret manager does. RBAC cannot hold list and watch to one name (it ignores field
// selectors), so this grants every Secret; the chart's install test checks that the
// agent only ever asks by name.
// +kubebuilder:rbac:groups="",resources=secrets,verbs=list;watch
//
// The reporter reads and creates its NodeProxy directly and writes only its status:
// +kubebuilder:rbac:groups=portico.dev,resources=nodeproxies,verbs=get;create
// +kubebuilder:rbac:groups=portico.dev,resources=nodeproxies/status,verbs=update
//
// The heartbeat Lease portico-agent-<node>, in the install namespace only:
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;list;create;update,namespace=portico-system
