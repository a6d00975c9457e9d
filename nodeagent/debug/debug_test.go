package debug

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/portico-dev/portico/nodeagent/xds"
)

func inline(s string) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: s}}
}

// served has a private key in an SDS Secret and one inline in a listener's
// transport socket (inside an Any), where a producer's raw Envoy config may put it.
func served(t *testing.T) xds.Served {
	tlsCtx, err := anypb.New(&tlsv3.DownstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
		TlsCertificates: []*tlsv3.TlsCertificate{{CertificateChain: inline("CHAIN-IN-LISTENER"), PrivateKey: inline("KEY-IN-LISTENER")}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return xds.Served{
		Version:  "7",
		Versions: map[string]string{"listeners": "7", "clusters": "5", "routes": "5", "secrets": "6"},
		Listeners: []*listenerv3.Listener{
			{Name: "b-listener"},
			{Name: "a-listener", FilterChains: []*listenerv3.FilterChain{{TransportSocket: &corev3.TransportSocket{
				Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: tlsCtx}}}}},
		},
		Clusters: []*clusterv3.Cluster{{Name: "default/web:80"}},
		Secrets: []*tlsv3.Secret{{Name: "default/shop-tls", Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
			CertificateChain: inline("CHAIN-IN-SECRET"), PrivateKey: inline("KEY-IN-SECRET"),
			Password: inline("PASSWORD")}}}},
	}
}

// Private keys and passwords never leave the agent, wherever they are; the rest
// (certificate chains, names, versions) is shown as served, and what the xDS
// server serves is not touched.
func TestConfigDumpRedactsKeys(t *testing.T) {
	s := served(t)
	dump, err := ConfigDump(s)
	if err != nil {
		t.Fatal(err)
	}
	out, err := protojson.Marshal(dump)
	if err != nil {
		t.Fatal(err)
	}
	text := string(out)
	for _, leaked := range []string{"KEY-IN-LISTENER", "KEY-IN-SECRET", "PASSWORD"} {
		if strings.Contains(text, leaked) {
			t.Errorf("the dump shows %s:\n%s", leaked, text)
		}
	}
	for _, kept := range []string{"CHAIN-IN-LISTENER", "CHAIN-IN-SECRET", `"inlineString":"[redacted]"`, "default/web:80", `"versionInfo":"6"`} {
		if !strings.Contains(text, kept) {
			t.Errorf("the dump lacks %s:\n%s", kept, text)
		}
	}
	if strings.Index(text, "a-listener") > strings.Index(text, "b-listener") {
		t.Errorf("listeners not sorted by name:\n%s", text)
	}
	if got := s.Secrets[0].GetTlsCertificate().GetPrivateKey().GetInlineString(); got != "KEY-IN-SECRET" {
		t.Errorf("redaction changed the served Secret: private key now %q", got)
	}
	var inner tlsv3.DownstreamTlsContext
	if err := s.Listeners[1].FilterChains[0].GetTransportSocket().GetTypedConfig().UnmarshalTo(&inner); err != nil {
		t.Fatal(err)
	}
	if got := inner.GetCommonTlsContext().GetTlsCertificates()[0].GetPrivateKey().GetInlineString(); got != "KEY-IN-LISTENER" {
		t.Errorf("redaction changed the served listener: private key now %q", got)
	}
}

type fixed xds.Served

func (f fixed) Served() xds.Served { return xds.Served(f) }

func TestHandlerServesConfigDump(t *testing.T) {
	srv := httptest.NewServer(Handler(fixed(served(t))))
	defer srv.Close()
	resp, err := http.Get(srv.URL + ConfigDumpPath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, content type %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	if !strings.Contains(string(body), "type.googleapis.com/envoy.admin.v3.ListenersConfigDump") || strings.Contains(string(body), "KEY-IN") {
		t.Fatalf("unexpected dump:\n%s", body)
	}
	if resp, err := http.Post(srv.URL+ConfigDumpPath, "text/plain", nil); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %v %v, want 405", resp.StatusCode, err)
	}
}
