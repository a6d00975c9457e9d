package envoyconfig

import (
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/portico-dev/portico/internal/envoykit"
)

// qualifier rewrites the names of one config's resources the way Cilium does, so
// that configs written for CiliumEnvoyConfig mean the same here and no two configs
// can collide on a name they did not mean to share:
//   - listener, route configuration and virtual host names (and the RDS names that
//     point at route configurations) always become "<ns>/<config>/<name>", unless
//     their first "/"-separated part already is the config's namespace;
//   - cluster and secret names (and every reference to them) become
//     "<ns>/<config>/<name>" only when they contain no "/": "default/helloworld" is a
//     name meant to be shared (an EDS backend, a Kubernetes Secret) and stays as written.
//
// A cluster-scoped config has namespace "", so its names become "/<config>/<name>".
// Empty names stay empty: qualifying them would turn an invalid resource into a valid one.
//
// It also fills in what Cilium fills in, because Cilium's examples rely on it: the
// ADS config source of RDS, EDS and SDS references that have none.
type qualifier struct {
	namespace, config string
}

// forced qualifies a listener, route configuration or virtual host name.
func (q qualifier) forced(name string) string {
	if name == "" {
		return name
	}
	if i := strings.IndexByte(name, '/'); i >= 0 && i == len(q.namespace) && strings.HasPrefix(name, q.namespace) {
		return name
	}
	return q.namespace + "/" + q.config + "/" + name
}

// shared qualifies a cluster or secret name, or a reference to one.
func (q qualifier) shared(name string) string {
	if name == "" || strings.Contains(name, "/") {
		return name
	}
	return q.namespace + "/" + q.config + "/" + name
}

// ads is the config source of every reference the agent serves: its one ADS stream.
func ads() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
}

func (q qualifier) listener(l *listenerv3.Listener) {
	l.Name = q.forced(l.GetName())
	chains := l.GetFilterChains()
	if l.GetDefaultFilterChain() != nil {
		chains = append(chains[:len(chains):len(chains)], l.GetDefaultFilterChain())
	}
	for _, fc := range chains {
		q.transportSocket(fc.GetTransportSocket(), &tlsv3.DownstreamTlsContext{})
		for _, f := range fc.GetFilters() {
			q.networkFilter(f)
		}
	}
	// A listener that names no address gets a placeholder: the agent binds the
	// targets of redirects to their proxy port, and one nothing redirects to
	// receives nothing on an ephemeral loopback port (Cilium allocates a proxy
	// port for every such listener; here only redirect targets need one).
	if l.GetAddress() == nil && l.GetInternalListener() == nil && l.GetApiListener() == nil {
		l.Address = &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address:       envoykit.PlaceholderAddress,
			PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 0},
		}}}
	}
}

// networkFilter qualifies the references inside the filters that have any: the HTTP
// connection manager (RDS name, inline route table) and the TCP proxy (clusters).
func (q qualifier) networkFilter(f *listenerv3.Filter) {
	tc := f.GetTypedConfig()
	if tc == nil {
		return
	}
	switch {
	case tc.MessageIs(&hcmv3.HttpConnectionManager{}):
		hcm := &hcmv3.HttpConnectionManager{}
		if tc.UnmarshalTo(hcm) != nil {
			return // validation reports it
		}
		if rds := hcm.GetRds(); rds != nil {
			rds.RouteConfigName = q.forced(rds.GetRouteConfigName())
			if rds.ConfigSource == nil {
				rds.ConfigSource = ads()
			}
		}
		if rc := hcm.GetRouteConfig(); rc != nil {
			q.routeConfiguration(rc)
		}
		repack(tc, hcm)
	case tc.MessageIs(&tcpv3.TcpProxy{}):
		tp := &tcpv3.TcpProxy{}
		if tc.UnmarshalTo(tp) != nil {
			return
		}
		if c, ok := tp.GetClusterSpecifier().(*tcpv3.TcpProxy_Cluster); ok {
			c.Cluster = q.shared(c.Cluster)
		}
		for _, wc := range tp.GetWeightedClusters().GetClusters() {
			wc.Name = q.shared(wc.GetName())
		}
		repack(tc, tp)
	}
}

// repack replaces the contents of a with m. Deterministic, so that the same
// config always gives the same bytes.
func repack(a *anypb.Any, m proto.Message) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err == nil {
		a.Value = b
	}
}

func (q qualifier) routeConfiguration(rc *routev3.RouteConfiguration) {
	rc.Name = q.forced(rc.GetName())
	for _, vh := range rc.GetVirtualHosts() {
		vh.Name = q.forced(vh.GetName())
		for _, r := range vh.GetRoutes() {
			a := r.GetRoute()
			if a == nil {
				continue
			}
			if c, ok := a.GetClusterSpecifier().(*routev3.RouteAction_Cluster); ok {
				c.Cluster = q.shared(c.Cluster)
			}
			for _, wc := range a.GetWeightedClusters().GetClusters() {
				wc.Name = q.shared(wc.GetName())
			}
			for _, m := range a.GetRequestMirrorPolicies() {
				m.Cluster = q.shared(m.GetCluster())
			}
		}
	}
}

func (q qualifier) cluster(c *clusterv3.Cluster) {
	c.Name = q.shared(c.GetName())
	if c.GetType() == clusterv3.Cluster_EDS {
		if c.EdsClusterConfig == nil {
			c.EdsClusterConfig = &clusterv3.Cluster_EdsClusterConfig{}
		}
		if c.EdsClusterConfig.EdsConfig == nil {
			c.EdsClusterConfig.EdsConfig = ads()
		}
	}
	if la := c.GetLoadAssignment(); la != nil {
		la.ClusterName = q.shared(la.GetClusterName())
	}
	q.transportSocket(c.GetTransportSocket(), &tlsv3.UpstreamTlsContext{})
	for _, m := range c.GetTransportSocketMatches() {
		q.transportSocket(m.GetTransportSocket(), &tlsv3.UpstreamTlsContext{})
	}
}

func (q qualifier) secret(s *tlsv3.Secret) { s.Name = q.shared(s.GetName()) }

// tlsContext is what DownstreamTlsContext and UpstreamTlsContext share.
type tlsContext interface {
	proto.Message
	GetCommonTlsContext() *tlsv3.CommonTlsContext
}

// transportSocket qualifies the SDS names of a TLS transport socket and gives the
// ones without a config source ADS.
func (q qualifier) transportSocket(ts *corev3.TransportSocket, into tlsContext) {
	a := ts.GetTypedConfig()
	if a == nil || !a.MessageIs(into) || a.UnmarshalTo(into) != nil {
		return
	}
	ctx := into.GetCommonTlsContext()
	fix := func(sc *tlsv3.SdsSecretConfig) {
		if sc == nil {
			return
		}
		sc.Name = q.shared(sc.GetName())
		if sc.SdsConfig == nil {
			sc.SdsConfig = ads()
		}
	}
	for _, sc := range ctx.GetTlsCertificateSdsSecretConfigs() {
		fix(sc)
	}
	fix(ctx.GetValidationContextSdsSecretConfig())
	fix(ctx.GetCombinedValidationContext().GetValidationContextSdsSecretConfig())
	if d, ok := into.(*tlsv3.DownstreamTlsContext); ok {
		fix(d.GetSessionTicketKeysSdsSecretConfig())
	}
	repack(a, into)
}
