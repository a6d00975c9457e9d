package envoykit

// Cluster is an Envoy cluster (envoy.config.cluster.v3.Cluster).
type Cluster struct {
	Type             string `json:"@type"`
	Name             string `json:"name"`
	DiscoveryType    string `json:"type"`
	ConnectTimeout   string `json:"connect_timeout"`
	EDSClusterConfig struct {
		EDSConfig   ConfigSource `json:"eds_config"`
		ServiceName string       `json:"service_name,omitempty"`
	} `json:"eds_cluster_config"`
	// TypedExtensionProtocolOptions selects the upstream protocol (h2c for gRPC).
	TypedExtensionProtocolOptions map[string]any `json:"typed_extension_protocol_options,omitempty"`
}

// DefaultConnectTimeout is the connect timeout of generated clusters.
const DefaultConnectTimeout = "5s"

// EDSCluster is the cluster of one backend Service port whose endpoints the agent
// serves over EDS under the cluster's own name (EDSName): every producer routing
// to the same port of the same Service writes the same bytes, and the agent serves
// the cluster once.
func EDSCluster(name string) Cluster {
	c := Cluster{Type: TypeCluster, Name: name, DiscoveryType: "EDS", ConnectTimeout: DefaultConnectTimeout}
	c.EDSClusterConfig.EDSConfig = ADS
	return c
}

// HTTP2Upstream makes c speak HTTP/2 without TLS to its endpoints (h2c), as
// gRPC backends and appProtocol kubernetes.io/h2c ask.
func HTTP2Upstream(c *Cluster) {
	c.TypedExtensionProtocolOptions = map[string]any{
		"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": map[string]any{
			"@type":                TypeHTTPOptions,
			"explicit_http_config": map[string]any{"http2_protocol_options": map[string]any{}},
		},
	}
}
