package xdsres

import (
	"github.com/portico-dev/portico/internal/xdsres/fixture"
	"slices"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
)

func sdsRef(name string) *tlsv3.SdsSecretConfig {
	return &tlsv3.SdsSecretConfig{Name: name, SdsConfig: fixture.ADS()}
}

func tlsSecret(name string) *tlsv3.Secret {
	inline := func(s string) *corev3.DataSource {
		return &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: s}}
	}
	return &tlsv3.Secret{Name: name, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
		CertificateChain: inline("cert"),
		PrivateKey:       inline("key"),
	}}}
}

func TestValidateReportsEachBadResource(t *testing.T) {
	good := baseConfig(t, 2, "a")

	tlsListener := fixture.HTTPListener(t, "https", "routes", 15443)
	tlsListener.FilterChains[0].TransportSocket = &corev3.TransportSocket{
		Name: "envoy.transport_sockets.tls",
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: fixture.MustAny(t, &tlsv3.DownstreamTlsContext{
			CommonTlsContext: &tlsv3.CommonTlsContext{TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sdsRef("cert")}},
		})},
	}
	upstreamTLS := fixture.EDSCluster("tls-upstream")
	upstreamTLS.TransportSocket = &corev3.TransportSocket{
		Name: "envoy.transport_sockets.tls",
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: fixture.MustAny(t, &tlsv3.UpstreamTlsContext{
			CommonTlsContext: &tlsv3.CommonTlsContext{ValidationContextType: &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{
				ValidationContextSdsSecretConfig: sdsRef("missing-ca"),
			}},
		})},
	}
	// protoc-gen-validate stops at Any: this is caught only by the deep walk.
	badHCM := fixture.HTTPListener(t, "bad-hcm", "routes", 15002)
	hcm := &hcmv3.HttpConnectionManager{}
	if err := badHCM.FilterChains[0].Filters[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
		t.Fatal(err)
	}
	hcm.StatPrefix = ""
	badHCM.FilterChains[0].Filters[0].ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: fixture.MustAny(t, hcm)}

	r := Resources{
		Listeners: append(slices.Clone(good.Listeners), tlsListener, badHCM, fixture.HTTPListener(t, "dangling", "missing", 15003)),
		Routes:    append(slices.Clone(good.Routes), fixture.RouteConfig("unreferenced", "backend", 1, "u"), nil),
		Clusters:  append(slices.Clone(good.Clusters), upstreamTLS, fixture.EDSCluster("backend"), &clusterv3.Cluster{}),
		Secrets:   []*tlsv3.Secret{tlsSecret("cert"), tlsSecret("unused")},
	}
	type key struct{ kind, name, contains string }
	want := []key{
		{KindCluster, "#3", "name is empty"},
		{KindCluster, "backend", "duplicate name"},
		{KindCluster, "tls-upstream", `missing Secret "missing-ca"`},
		{KindListener, "bad-hcm", "StatPrefix"},
		{KindListener, "dangling", `missing RouteConfiguration "missing"`},
		{KindRouteConfiguration, "#2", "nil resource"},
		{KindRouteConfiguration, "unreferenced", "not referenced"},
		{KindSecret, "unused", "not referenced"},
	}
	errs := Validate(r)
	if len(errs) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%v", len(errs), len(want), (&InvalidResourcesError{Errors: errs}).Error())
	}
	for i, w := range want {
		e := errs[i]
		if e.Kind != w.kind || e.Name != w.name || !strings.Contains(e.Message, w.contains) || e.TypeURL != kindTypeURL[w.kind] {
			t.Errorf("error %d = %+v, want %s %q containing %q", i, e, w.kind, w.name, w.contains)
		}
		t.Logf("%v", e)
	}

	// The agent drops what was named and serves the rest.
	keep, pruned := Prune(r)
	if len(pruned) != len(errs) {
		t.Errorf("Prune reported %d errors, Validate %d", len(pruned), len(errs))
	}
	names := func(kind string) []string {
		var out []string
		switch kind {
		case KindListener:
			for _, l := range keep.Listeners {
				out = append(out, l.GetName())
			}
		case KindCluster:
			for _, c := range keep.Clusters {
				out = append(out, c.GetName())
			}
		case KindRouteConfiguration:
			for _, rc := range keep.Routes {
				out = append(out, rc.GetName())
			}
		case KindSecret:
			for _, s := range keep.Secrets {
				out = append(out, s.GetName())
			}
		}
		return out
	}
	for kind, want := range map[string][]string{
		KindListener:           {"http", "https"},
		KindCluster:            {"backend"},
		KindRouteConfiguration: {"routes"},
		KindSecret:             {"cert"},
	} {
		if got := names(kind); !slices.Equal(got, want) {
			t.Errorf("kept %s %v, want %v", kind, got, want)
		}
	}
	if errs := Validate(keep); len(errs) > 0 {
		t.Fatalf("what Prune keeps does not validate: %v", errs)
	}
}

func TestValidateAcceptsGeneratedConfig(t *testing.T) {
	if errs := Validate(baseConfig(t, 1000, "a")); len(errs) != 0 {
		t.Fatal(errs)
	}
	if errs := Validate(Resources{}); len(errs) != 0 {
		t.Fatal(errs)
	}
	var nilListener *listenerv3.Listener
	errs := Validate(Resources{Listeners: []*listenerv3.Listener{nilListener}, Routes: []*routev3.RouteConfiguration{}})
	if len(errs) != 1 || errs[0].Message != "nil resource" {
		t.Fatalf("typed nil listener: %v", errs)
	}
}

func TestPruneFollowsCascades(t *testing.T) {
	// The only listener referencing "routes" is invalid, so once it is
	// dropped "routes" is unreferenced and must go too.
	l := fixture.HTTPListener(t, "http", "routes", 15001)
	l.Address = nil
	r := Resources{
		Listeners: []*listenerv3.Listener{l},
		Routes:    []*routev3.RouteConfiguration{fixture.RouteConfig("routes", "backend", 1, "a")},
		Clusters:  []*clusterv3.Cluster{fixture.EDSCluster("backend")},
	}
	keep, errs := Prune(r)
	if len(keep.Listeners) != 0 || len(keep.Routes) != 0 || len(keep.Clusters) != 1 {
		t.Errorf("kept %+v", keep)
	}
	if len(errs) != 2 || errs[0].Kind != KindListener || errs[1].Kind != KindRouteConfiguration {
		t.Errorf("errors = %v", errs)
	}
}

// baseConfig is fixture.Base as Resources.
func baseConfig(t testing.TB, routes int, tag string) Resources {
	var r Resources
	r.Listeners, r.Routes, r.Clusters = fixture.Base(t, routes, tag)
	return r
}
