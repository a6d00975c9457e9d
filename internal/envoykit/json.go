package envoykit

import (
	"encoding/json"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"

	"github.com/portico-dev/portico/apis/v1alpha1"
)

// The Envoy resources producers write are proto3 JSON made from the plain structs
// of this package rather than marshalled from the go-control-plane protos:
// encoding/json of a struct is deterministic and several times faster than
// protojson, and identical backends must give byte-identical clusters in every
// config so that the agent merges them. Every producer's render contract test
// decodes what it writes strictly with the Envoy protos (the agent does the
// same), so a misspelt field cannot slip through.

// Type URLs of the resources and extensions producers write.
const (
	TypeListener    = "type.googleapis.com/envoy.config.listener.v3.Listener"
	TypeRoute       = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
	TypeCluster     = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	TypeHCM         = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
	TypeTCPProxy    = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
	TypeRouter      = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
	TypeTLSInspect  = "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"
	TypeDownTLS     = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
	TypeUpTLS       = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
	TypeHTTPOptions = "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
)

// Typed is an extension config with nothing but its type.
type Typed struct {
	Type string `json:"@type"`
}

// ConfigSource is an xDS config source; producers only ever use ADS.
type ConfigSource struct {
	ADS                struct{} `json:"ads"`
	ResourceAPIVersion string   `json:"resource_api_version"`
}

// ADS is the config source of every RDS, EDS and SDS reference: the agent serves
// them all on the one ADS stream of its node's Envoy.
var ADS = ConfigSource{ResourceAPIVersion: "V3"}

// NamedTyped is a named extension (filter, transport socket) with its config.
type NamedTyped struct {
	Name        string `json:"name"`
	TypedConfig any    `json:"typed_config"`
}

// MustJSON marshals values built from this package's structs, which cannot fail.
func MustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// Resource wraps an Envoy resource for NodeProxyConfig.spec.envoy.resources.
func Resource(typeURL string, v any) v1alpha1.EnvoyResource {
	return v1alpha1.EnvoyResource{TypeURL: typeURL, Raw: MustJSON(v)}
}

// Raw wraps a value as the raw JSON of a route or filter chain fragment.
func Raw(v any) apiextensionsv1.JSON { return apiextensionsv1.JSON{Raw: MustJSON(v)} }
