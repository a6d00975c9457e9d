package chart_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	// The bootstrap's xDS cluster names its HTTP/2 options by this type.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/portico-dev/portico/internal/chart"
)

// TestEnvoyBootstrap: the Envoy DaemonSet's bootstrap is a valid Envoy v3 Bootstrap
// (strict proto decoding and Envoy's own validation rules), its ADS cluster is the
// agent's socket on the shared host directory, and its admin interface is on loopback
// only, where the readiness probe asks.
func TestEnvoyBootstrap(t *testing.T) {
	r, err := chart.Render(context.Background(), chart.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cm := r.Find("ConfigMap", "portico-envoy")
	if cm == nil {
		t.Fatal("no Envoy bootstrap ConfigMap")
	}
	text, _, _ := unstructured.NestedString(cm.Object, "data", "envoy.yaml")
	js, err := yaml.YAMLToJSON([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	b := &bootstrapv3.Bootstrap{}
	if err := protojson.Unmarshal(js, b); err != nil {
		t.Fatalf("the bootstrap is not an Envoy v3 Bootstrap: %v", err)
	}
	if err := b.ValidateAll(); err != nil {
		t.Fatalf("Envoy would refuse the bootstrap: %v", err)
	}
	if a := b.GetAdmin().GetAddress().GetSocketAddress(); a.GetAddress() != "127.0.0.1" {
		t.Errorf("admin listens on %q, want loopback only", a.GetAddress())
	}
	if b.GetDynamicResources().GetAdsConfig() == nil || b.GetDynamicResources().GetLdsConfig().GetAds() == nil {
		t.Error("listeners do not come over ADS")
	}
	pipe := b.GetStaticResources().GetClusters()[0].GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetPipe().GetPath()
	agent := r.Find("DaemonSet", "portico-nodeagent")
	containers, _, _ := unstructured.NestedSlice(agent.Object, "spec", "template", "spec", "containers")
	args, _, _ := unstructured.NestedStringSlice(containers[0].(map[string]any), "args")
	if !slices.Contains(args, "--xds-socket="+pipe) {
		t.Errorf("Envoy dials %s; the agent serves %v", pipe, args)
	}
	envoy := r.Find("DaemonSet", "portico-envoy")
	ec, _, _ := unstructured.NestedSlice(envoy.Object, "spec", "template", "spec", "containers")
	host, _, _ := unstructured.NestedString(ec[0].(map[string]any), "readinessProbe", "httpGet", "host")
	path, _, _ := unstructured.NestedString(ec[0].(map[string]any), "readinessProbe", "httpGet", "path")
	if host != "127.0.0.1" || path != "/ready" {
		t.Errorf("readiness probe %s%s; want Envoy's /ready on loopback", host, path)
	}
	caps, _, _ := unstructured.NestedStringSlice(ec[0].(map[string]any), "securityContext", "capabilities", "add")
	if strings.Join(caps, ",") != "NET_ADMIN" {
		t.Errorf("Envoy capabilities %v; want NET_ADMIN only", caps)
	}
}
