package ingress

import (
	"encoding/json"
)

// The Envoy resources are written as proto3 JSON from plain structs rather than
// marshalled from the go-control-plane protos: encoding/json of a struct is
// deterministic and several times faster than protojson, and identical backends
// must give byte-identical clusters in every Ingress's config so that the agent
// merges them. The render contract test decodes every generated resource strictly
// with the Envoy protos, so a misspelt field cannot slip through.

const (
	typeListener = "type.googleapis.com/envoy.config.listener.v3.Listener"
	typeCluster  = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	typeHCM      = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
	typeRouter   = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
	typeTLSInsp  = "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"
	typeDownTLS  = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
)

type typed struct {
	Type string `json:"@type"`
}

type adsSource struct {
	ADS                struct{} `json:"ads"`
	ResourceAPIVersion string   `json:"resource_api_version"`
}

var ads = adsSource{ResourceAPIVersion: "V3"}

type clusterJSON struct {
	Type             string `json:"@type"`
	Name             string `json:"name"`
	DiscoveryType    string `json:"type"`
	ConnectTimeout   string `json:"connect_timeout"`
	EDSClusterConfig struct {
		EDSConfig adsSource `json:"eds_config"`
	} `json:"eds_cluster_config"`
}

func cluster(name string) clusterJSON {
	c := clusterJSON{Type: typeCluster, Name: name, DiscoveryType: "EDS", ConnectTimeout: "5s"}
	c.EDSClusterConfig.EDSConfig = ads
	return c
}

type listenerJSON struct {
	Type            string            `json:"@type"`
	Name            string            `json:"name"`
	Address         addressJSON       `json:"address"`
	EnableReusePort bool              `json:"enable_reuse_port"`
	Transparent     bool              `json:"transparent"`
	ListenerFilters []namedTyped      `json:"listener_filters,omitempty"`
	FilterChains    []filterChainJSON `json:"filter_chains"`
}

type addressJSON struct {
	SocketAddress struct {
		Address   string `json:"address"`
		PortValue uint32 `json:"port_value"`
	} `json:"socket_address"`
}

type namedTyped struct {
	Name        string `json:"name"`
	TypedConfig any    `json:"typed_config"`
}

type filterChainJSON struct {
	FilterChainMatch *struct {
		ServerNames []string `json:"server_names"`
	} `json:"filter_chain_match,omitempty"`
	TransportSocket *namedTyped  `json:"transport_socket,omitempty"`
	Filters         []namedTyped `json:"filters"`
}

type hcmJSON struct {
	Type       string `json:"@type"`
	StatPrefix string `json:"stat_prefix"`
	RDS        struct {
		RouteConfigName string    `json:"route_config_name"`
		ConfigSource    adsSource `json:"config_source"`
	} `json:"rds"`
	// UseRemoteAddress appends the client's address (the real one: the datapath
	// hands the connection over unchanged) to x-forwarded-for and trusts no
	// x-forwarded-for the client sent.
	UseRemoteAddress bool `json:"use_remote_address"`
	// StripAnyHostPort lets "Host: example.com:80" find the example.com virtual host.
	StripAnyHostPort bool         `json:"strip_any_host_port"`
	HTTPFilters      []namedTyped `json:"http_filters"`
}

func hcm(statPrefix, table string) namedTyped {
	h := hcmJSON{Type: typeHCM, StatPrefix: statPrefix, UseRemoteAddress: true, StripAnyHostPort: true,
		HTTPFilters: []namedTyped{{Name: "envoy.filters.http.router", TypedConfig: typed{Type: typeRouter}}}}
	h.RDS.RouteConfigName, h.RDS.ConfigSource = table, ads
	return namedTyped{Name: "envoy.filters.network.http_connection_manager", TypedConfig: h}
}

type downstreamTLSJSON struct {
	Type             string `json:"@type"`
	CommonTLSContext struct {
		TLSCertificateSDSSecretConfigs []sdsSecret `json:"tls_certificate_sds_secret_configs"`
		ALPNProtocols                  []string    `json:"alpn_protocols"`
	} `json:"common_tls_context"`
}

type sdsSecret struct {
	Name      string    `json:"name"`
	SDSConfig adsSource `json:"sds_config"`
}

func downstreamTLS(secret string) *namedTyped {
	t := downstreamTLSJSON{Type: typeDownTLS}
	t.CommonTLSContext.TLSCertificateSDSSecretConfigs = []sdsSecret{{Name: secret, SDSConfig: ads}}
	t.CommonTLSContext.ALPNProtocols = []string{"h2", "http/1.1"}
	return &namedTyped{Name: "envoy.transport_sockets.tls", TypedConfig: t}
}

type routeJSON struct {
	Name           string          `json:"name,omitempty"`
	Match          matchJSON       `json:"match"`
	Route          *routeAction    `json:"route,omitempty"`
	Redirect       *redirectAction `json:"redirect,omitempty"`
	DirectResponse *directResponse `json:"direct_response,omitempty"`
}

type matchJSON struct {
	Prefix              string        `json:"prefix,omitempty"`
	Path                string        `json:"path,omitempty"`
	PathSeparatedPrefix string        `json:"path_separated_prefix,omitempty"`
	SafeRegex           *regexJSON    `json:"safe_regex,omitempty"`
	Headers             []headerMatch `json:"headers,omitempty"`
}

type regexJSON struct {
	Regex string `json:"regex"`
}

type headerMatch struct {
	Name        string `json:"name"`
	StringMatch struct {
		SafeRegex regexJSON `json:"safe_regex"`
	} `json:"string_match"`
}

type routeAction struct {
	Cluster string `json:"cluster"`
}

type redirectAction struct {
	HTTPSRedirect bool `json:"https_redirect"`
}

type directResponse struct {
	Status uint32 `json:"status"`
}

// mustJSON marshals values built from the structs above, which cannot fail.
func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
