package envoykit

// Builders the Gateway API producer added: TLS passthrough (tcp_proxy), CORS,
// retries, per-backend header changes and the cluster that answers for invalid
// backends. They follow the rest of the package: plain structs marshalled with
// encoding/json, decoded strictly by the agent.

// Type URLs of the extensions below.
const (
	TypeCORS       = "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"
	TypeCORSPolicy = "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy"
)

// CORSFilterName is the name of the HTTP CORS filter; a route's CORS policy is
// its typed_per_filter_config under this name.
const CORSFilterName = "envoy.filters.http.cors"

// CORSFilter is the HTTP filter that applies the CORS policies routes carry; it
// does nothing on routes without one.
func CORSFilter() NamedTyped {
	return NamedTyped{Name: CORSFilterName, TypedConfig: Typed{Type: TypeCORS}}
}

// CORSPolicy is envoy.extensions.filters.http.cors.v3.CorsPolicy.
type CORSPolicy struct {
	Type             string        `json:"@type"`
	AllowOrigins     []StringMatch `json:"allow_origin_string_match,omitempty"`
	AllowMethods     string        `json:"allow_methods,omitempty"`
	AllowHeaders     string        `json:"allow_headers,omitempty"`
	ExposeHeaders    string        `json:"expose_headers,omitempty"`
	MaxAge           string        `json:"max_age,omitempty"`
	AllowCredentials bool          `json:"allow_credentials,omitempty"`
}

// WebSocketUpgrade lets an HTTP connection manager pass WebSocket upgrades through.
var WebSocketUpgrade = []UpgradeConfig{{UpgradeType: "websocket"}}

// TCPProxy is the network filter of a TLS passthrough (or terminate) chain:
// the connection goes to one cluster, or is split by weight.
type TCPProxy struct {
	Type             string            `json:"@type"`
	StatPrefix       string            `json:"stat_prefix"`
	Cluster          string            `json:"cluster,omitempty"`
	WeightedClusters *WeightedClusters `json:"weighted_clusters,omitempty"`
}

// TCPProxyFilter forwards connections to cluster, or to clusters by weight when
// weighted is not nil.
func TCPProxyFilter(statPrefix, cluster string, weighted *WeightedClusters) NamedTyped {
	t := TCPProxy{Type: TypeTCPProxy, StatPrefix: statPrefix}
	if weighted != nil {
		t.WeightedClusters = weighted
	} else {
		t.Cluster = cluster
	}
	return NamedTyped{Name: "envoy.filters.network.tcp_proxy", TypedConfig: t}
}

// RetryPolicy is a route's retry policy.
type RetryPolicy struct {
	RetryOn              string        `json:"retry_on,omitempty"`
	NumRetries           *uint32       `json:"num_retries,omitempty"`
	PerTryTimeout        string        `json:"per_try_timeout,omitempty"`
	RetriableStatusCodes []uint32      `json:"retriable_status_codes,omitempty"`
	RetryBackOff         *RetryBackOff `json:"retry_back_off,omitempty"`
}

// RetryBackOff is the base interval between retries.
type RetryBackOff struct {
	BaseInterval string `json:"base_interval"`
}

// EDSClusterFor is an EDS cluster named name that asks for the endpoints of
// edsName: a cluster with settings of its own (HTTP/2 upstream) cannot share the
// plain cluster's name, but it serves the same endpoints.
func EDSClusterFor(name, edsName string) Cluster {
	c := EDSCluster(name)
	if name != edsName {
		c.EDSClusterConfig.ServiceName = edsName
	}
	return c
}

// StaticCluster is a cluster with fixed (here: no) endpoints.
type StaticCluster struct {
	Type           string `json:"@type"`
	Name           string `json:"name"`
	DiscoveryType  string `json:"type"`
	ConnectTimeout string `json:"connect_timeout"`
	LoadAssignment struct {
		ClusterName string `json:"cluster_name"`
	} `json:"load_assignment"`
}

// InvalidBackendCluster is the cluster a route's share of invalid backends goes
// to: it has no endpoints, so Envoy answers those requests with an error while
// the valid backends keep their own share.
const InvalidBackendCluster = "portico/invalid-backend"

// NoEndpointsCluster is a cluster without endpoints, named name.
func NoEndpointsCluster(name string) StaticCluster {
	c := StaticCluster{Type: TypeCluster, Name: name, DiscoveryType: "STATIC", ConnectTimeout: DefaultConnectTimeout}
	c.LoadAssignment.ClusterName = name
	return c
}
