package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/conditions"
	"github.com/portico-dev/portico/nodeagent/xds/xdstest"
)

const (
	listenerJSON = `{"@type":"type.googleapis.com/envoy.config.listener.v3.Listener","name":"web",
 "address":{"socketAddress":{"address":"0.0.0.0","portValue":80}},
 "filterChains":[{"filters":[{"name":"envoy.filters.network.tcp_proxy","typedConfig":{
   "@type":"type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy","statPrefix":"web","cluster":"backend"}}]}]}`
	clusterJSON = `{"@type":"type.googleapis.com/envoy.config.cluster.v3.Cluster","name":"backend","type":"EDS",
 "connectTimeout":"1s","edsClusterConfig":{"edsConfig":{"ads":{},"resourceApiVersion":"V3"},"serviceName":"default/backend:http"}}`
)

func envoyResource(t *testing.T, raw string) v1alpha1.EnvoyResource {
	t.Helper()
	var r v1alpha1.EnvoyResource
	if err := r.UnmarshalJSON([]byte(raw)); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestAgentAppliesAndReports runs the agent without its datapath against a real
// apiserver and an Envoy-like ADS client.
func TestAgentAppliesAndReports(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := env.Client
	const nodeName = "agent-node"

	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName, Labels: map[string]string{"pool": "edge"}}}
	create(t, node)
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "backend", Namespace: "default"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
	}
	create(t, svc)
	create(t, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "backend-1", Namespace: "default", Labels: map[string]string{discoveryv1.LabelServiceName: "backend"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080)}},
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{"10.1.0.1"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}},
			{Addresses: []string{"10.1.0.2"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false)}},
		},
	})

	good := &v1alpha1.NodeProxyConfig{
		ObjectMeta: metav1.ObjectMeta{Name: "good"},
		Spec: v1alpha1.NodeProxyConfigSpec{
			NodeSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"pool": "edge"}},
			Redirects:    []v1alpha1.Redirect{{Name: "web", VIP: "192.0.2.10", Port: 80, Protocol: v1alpha1.ProtocolTCP, Listener: "web"}},
			Envoy: &v1alpha1.EnvoyResources{
				Resources:       []v1alpha1.EnvoyResource{envoyResource(t, listenerJSON), envoyResource(t, clusterJSON)},
				BackendServices: []v1alpha1.BackendService{{ServiceRef: v1alpha1.ServiceRef{Namespace: "default", Name: "backend"}, Ports: []string{"http"}}},
			},
		},
	}
	create(t, good)
	// Not for this node: must be ignored entirely.
	create(t, &v1alpha1.NodeProxyConfig{
		ObjectMeta: metav1.ObjectMeta{Name: "elsewhere"},
		Spec: v1alpha1.NodeProxyConfigSpec{
			NodeSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"pool": "core"}},
			Redirects:    []v1alpha1.Redirect{{Name: "x", VIP: "192.0.2.99", Port: 80, Listener: "nope"}},
		},
	})

	dir := t.TempDir()
	ads := runAgent(t, ctx, nodeName, Config{StateDir: dir, ReportInterval: 200 * time.Millisecond}, true)
	var err error
	err = ads.WaitFor(ctx, func(cl *xdstest.Client) bool {
		eds := cl.State(resourcev3.EndpointType).Resources["default/backend:http"]
		cla, ok := eds.(*endpointv3.ClusterLoadAssignment)
		return len(cl.State(resourcev3.ListenerType).Resources) == 1 &&
			len(cl.State(resourcev3.ClusterType).Resources) == 1 &&
			ok && len(cla.GetEndpoints()) == 1 && len(cla.GetEndpoints()[0].GetLbEndpoints()) == 1
	})
	must(t, err)
	l := ads.State(resourcev3.ListenerType).Resources["web"]
	if l == nil {
		t.Fatal("listener web not served")
	}

	// The port survives in the state file (stable across restarts).
	ports, err := LoadPorts(filepath.Join(dir, PortStateFile), DefaultProxyPortMin, DefaultProxyPortMax, 0)
	must(t, err)
	if got := ports.Assigned()["web"]; got != DefaultProxyPortMin {
		t.Fatalf("listener web has port %d, want %d", got, DefaultProxyPortMin)
	}

	// A second config claiming the same VIP:port is rejected and reported.
	bad := good.DeepCopy()
	// Named to sort after "good": creation times have second precision, and a tie is
	// settled by name, so "good" must stay the older one.
	bad.ObjectMeta = metav1.ObjectMeta{Name: "zz-bad"}
	bad.Spec.Envoy = &v1alpha1.EnvoyResources{Resources: []v1alpha1.EnvoyResource{
		envoyResource(t, strings.Replace(listenerJSON, `"name":"web"`, `"name":"other"`, 1))}}
	bad.Spec.Redirects[0].Listener = "other"
	create(t, bad)

	np := &v1alpha1.NodeProxy{}
	eventually(t, 20*time.Second, "NodeProxy reports good applied and bad rejected", func() bool {
		if err := c.Get(ctx, client.ObjectKey{Name: nodeName}, np); err != nil {
			return false
		}
		st := np.Status
		return len(st.Rejected) == 1 && st.Rejected[0].Name == "zz-bad" && st.RejectedCount == 1 &&
			st.Counters.SelectedConfigs == 2 && st.Counters.Redirects == 1 && st.Counters.Endpoints == 1 &&
			st.AppliedResourceVersion != "" && len(st.Proxies) == 1
	})
	st := np.Status
	if st.Rejected[0].Reason != v1alpha1.ReasonConflict || st.Rejected[0].Message == "" {
		t.Fatalf("rejection without reason: %+v", st.Rejected[0])
	}
	if cmpRV(st.AppliedResourceVersion, bad.ResourceVersion) < 0 {
		t.Fatalf("watermark %s below the last handled config %s", st.AppliedResourceVersion, bad.ResourceVersion)
	}
	if !conditions.IsTrue(st.Conditions, np.Generation, v1alpha1.ConditionProxyConnected) {
		t.Fatalf("ProxyConnected not true: %+v", st.Conditions)
	}
	if c := conditions.Get(st.Conditions, v1alpha1.ConditionDatapathReady); c == nil || c.Reason != string(v1alpha1.ReasonDisabled) {
		t.Fatalf("DatapathReady should say Disabled: %+v", c)
	}
	t.Logf("NodeProxy status: watermark=%s xds=%s rejected=%+v counters=%+v", st.AppliedResourceVersion, st.XDSVersion, st.Rejected, st.Counters)

	lease := &coordinationv1.Lease{}
	must(t, c.Get(ctx, client.ObjectKey{Namespace: testNamespace, Name: LeaseName(nodeName)}, lease))
	if lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity != nodeName {
		t.Fatalf("lease not held by the node: %+v", lease.Spec)
	}

	// Relabelling the node deselects "good": its listener disappears from xDS.
	patch := client.MergeFrom(node.DeepCopy())
	node.Labels["pool"] = "core"
	must(t, c.Patch(ctx, node, patch))
	must(t, ads.WaitFor(ctx, func(cl *xdstest.Client) bool {
		return len(cl.State(resourcev3.ListenerType).Resources) == 0
	}))
}

// TestAgentServesEveryVersion changes one config the way producers do (rewriting the
// whole object) and checks that each version is what the agent serves and reports:
// the agent keeps parsed configs between syncs, and must never answer from a stale one.
// A config rejected for a bad route is applied once fixed, and a later change to a
// route reaches Envoy.
func TestAgentServesEveryVersion(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := env.Client
	const nodeName = "versions-node"
	create(t, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName, Labels: map[string]string{"versions": "yes"}}})
	route := func(prefix string) v1alpha1.FragmentRoute {
		return v1alpha1.FragmentRoute{Precedence: "1", Route: apiextensionsv1.JSON{
			Raw: []byte(`{"match":{"prefix":"` + prefix + `"},"route":{"cluster":"bench-backend"}}`)}}
	}
	npc := &v1alpha1.NodeProxyConfig{
		ObjectMeta: metav1.ObjectMeta{Name: "versions"},
		Spec: v1alpha1.NodeProxyConfigSpec{
			NodeSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"versions": "yes"}},
			Envoy: &v1alpha1.EnvoyResources{Resources: []v1alpha1.EnvoyResource{
				envoyResource(t, benchListenerJSON), envoyResource(t, benchClusterJSON)},
				BackendServices: []v1alpha1.BackendService{benchBackend}},
			RouteFragments: []v1alpha1.RouteFragment{{RouteTable: "bench-routes", Host: "*", Routes: []v1alpha1.FragmentRoute{
				route("/a"),
				// An unknown field: Envoy would drop it silently, the agent rejects the config.
				{Precedence: "2", Route: apiextensionsv1.JSON{Raw: []byte(`{"match":{"prefx":"/"},"route":{"cluster":"bench-backend"}}`)}},
			}}},
		},
	}
	create(t, npc)
	ads := runAgent(t, ctx, nodeName, Config{DisableL2: true}, true)

	np := &v1alpha1.NodeProxy{}
	reported := func(rejected bool) func() bool {
		return func() bool {
			if err := c.Get(ctx, client.ObjectKey{Name: nodeName}, np); err != nil {
				return false
			}
			st := np.Status
			if st.AppliedResourceVersion == "" || cmpRV(st.AppliedResourceVersion, npc.ResourceVersion) < 0 {
				return false
			}
			if rejected {
				return len(st.Rejected) == 1 && st.Rejected[0].Name == "versions" && st.Rejected[0].Reason == v1alpha1.ReasonInvalidRoute
			}
			return st.RejectedCount == 0
		}
	}
	eventually(t, 20*time.Second, "the config with a bad route is reported rejected", reported(true))
	if n := len(ads.State(resourcev3.ListenerType).Resources); n != 0 {
		t.Fatalf("a rejected config's listener is served (%d listeners)", n)
	}

	served := func(prefixes ...string) func(*xdstest.Client) bool {
		return func(cl *xdstest.Client) bool {
			rc, _ := cl.State(resourcev3.RouteType).Resources["bench-routes"].(*routev3.RouteConfiguration)
			if len(rc.GetVirtualHosts()) != 1 || len(rc.GetVirtualHosts()[0].GetRoutes()) != len(prefixes) {
				return false
			}
			for i, r := range rc.GetVirtualHosts()[0].GetRoutes() {
				if r.GetMatch().GetPrefix() != prefixes[i] {
					return false
				}
			}
			return true
		}
	}
	for _, prefixes := range [][]string{{"/a", "/fixed"}, {"/a", "/changed"}, {"/b", "/changed"}} {
		npc.Spec.RouteFragments[0].Routes = []v1alpha1.FragmentRoute{route(prefixes[0]), route(prefixes[1])}
		npc.Spec.RouteFragments[0].Routes[1].Precedence = "2"
		must(t, c.Update(ctx, npc))
		must(t, ads.WaitFor(ctx, served(prefixes...)))
		eventually(t, 20*time.Second, "version "+npc.ResourceVersion+" is reported applied", reported(false))
	}
}

// shortDir is a temporary directory with a path short enough for a Unix socket (108 bytes).
func shortDir(t testing.TB) string {
	d, err := os.MkdirTemp("", "pa-")
	must(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(d) })
	return d
}

// create creates obj and deletes it when the test ends, so the test can rerun (-count)
// against the shared control plane.
func create(t *testing.T, obj client.Object) {
	t.Helper()
	must(t, env.Client.Create(context.Background(), obj))
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), obj) })
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
