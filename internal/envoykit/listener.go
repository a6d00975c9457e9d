package envoykit

// PlaceholderAddress is where a generated listener binds until the agent
// rebinds it: the agent replaces the address of every redirected listener with
// its proxy port on loopback. A listener nothing redirects to yet still has to
// exist (the route tables attached to it are only valid while it does), and an
// ephemeral loopback port receives nothing.
const PlaceholderAddress = "127.0.0.1"

// Listener is an Envoy listener (envoy.config.listener.v3.Listener).
type Listener struct {
	Type            string        `json:"@type"`
	Name            string        `json:"name"`
	Address         Address       `json:"address"`
	EnableReusePort bool          `json:"enable_reuse_port"`
	Transparent     bool          `json:"transparent"`
	ListenerFilters []NamedTyped  `json:"listener_filters,omitempty"`
	FilterChains    []FilterChain `json:"filter_chains"`
}

// Address is a socket address.
type Address struct {
	SocketAddress struct {
		Address   string `json:"address"`
		PortValue uint32 `json:"port_value"`
	} `json:"socket_address"`
}

// FilterChain is a listener filter chain. Name is required on chains that are
// contributed to a listener of another config (filter-chain fragments).
type FilterChain struct {
	Name             string            `json:"name,omitempty"`
	FilterChainMatch *FilterChainMatch `json:"filter_chain_match,omitempty"`
	TransportSocket  *NamedTyped       `json:"transport_socket,omitempty"`
	Filters          []NamedTyped      `json:"filters"`
}

// FilterChainMatch selects a chain by SNI (and, for TLS passthrough, by transport).
type FilterChainMatch struct {
	ServerNames       []string `json:"server_names"`
	TransportProtocol string   `json:"transport_protocol,omitempty"`
}

// NewListener is a generated listener: no SO_REUSEPORT (bpf_sk_assign refuses
// reuseport sockets) and transparent, as the datapath needs (design §4). The agent
// sets both again when it binds the proxy port, but the config says what it means.
func NewListener(name string) Listener {
	l := Listener{Type: TypeListener, Name: name, EnableReusePort: false, Transparent: true}
	l.Address.SocketAddress.Address = PlaceholderAddress
	return l
}

// TLSInspector is the listener filter that reads SNI (and ALPN) before a chain is chosen.
func TLSInspector() NamedTyped {
	return NamedTyped{Name: "envoy.filters.listener.tls_inspector", TypedConfig: Typed{Type: TypeTLSInspect}}
}

// HCM is the HTTP connection manager filter serving the route table table over RDS.
type HCM struct {
	Type       string `json:"@type"`
	StatPrefix string `json:"stat_prefix"`
	RDS        struct {
		RouteConfigName string       `json:"route_config_name"`
		ConfigSource    ConfigSource `json:"config_source"`
	} `json:"rds"`
	// UseRemoteAddress appends the client's address (the real one: the datapath
	// hands the connection over unchanged) to x-forwarded-for and trusts no
	// x-forwarded-for the client sent.
	UseRemoteAddress bool `json:"use_remote_address"`
	// StripAnyHostPort lets "Host: example.com:80" find the example.com virtual host.
	StripAnyHostPort bool         `json:"strip_any_host_port"`
	HTTPFilters      []NamedTyped `json:"http_filters"`
	// UpgradeConfigs lists the protocol upgrades passed through (websocket).
	UpgradeConfigs []UpgradeConfig `json:"upgrade_configs,omitempty"`
}

// HCMFilter is the network filter of an HTTP listener chain whose routes come
// from table, with the router as its only HTTP filter.
func HCMFilter(statPrefix, table string) NamedTyped {
	h := NewHCM(statPrefix, table)
	return NamedTyped{Name: "envoy.filters.network.http_connection_manager", TypedConfig: h}
}

// NewHCM is HCMFilter's config, for producers that add HTTP filters before the router.
func NewHCM(statPrefix, table string) HCM {
	h := HCM{Type: TypeHCM, StatPrefix: statPrefix, UseRemoteAddress: true, StripAnyHostPort: true,
		HTTPFilters: []NamedTyped{{Name: "envoy.filters.http.router", TypedConfig: Typed{Type: TypeRouter}}}}
	h.RDS.RouteConfigName, h.RDS.ConfigSource = table, ADS
	return h
}

// DownstreamTLS is the transport socket terminating TLS with the certificates of
// the listed Secrets ("<namespace>/<name>"), fetched over SDS from the agent,
// which serves exactly the Secrets a config lists in spec.envoy.secrets.
func DownstreamTLS(alpn []string, secrets ...string) *NamedTyped {
	type sds struct {
		Name      string       `json:"name"`
		SDSConfig ConfigSource `json:"sds_config"`
	}
	var t struct {
		Type             string `json:"@type"`
		CommonTLSContext struct {
			TLSCertificateSDSSecretConfigs []sds    `json:"tls_certificate_sds_secret_configs"`
			ALPNProtocols                  []string `json:"alpn_protocols,omitempty"`
		} `json:"common_tls_context"`
	}
	t.Type = TypeDownTLS
	for _, s := range secrets {
		t.CommonTLSContext.TLSCertificateSDSSecretConfigs = append(t.CommonTLSContext.TLSCertificateSDSSecretConfigs, sds{Name: s, SDSConfig: ADS})
	}
	t.CommonTLSContext.ALPNProtocols = alpn
	return &NamedTyped{Name: "envoy.transport_sockets.tls", TypedConfig: t}
}

// HTTPALPN is what an HTTPS listener offers: HTTP/2, then HTTP/1.1.
var HTTPALPN = []string{"h2", "http/1.1"}
