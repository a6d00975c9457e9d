package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	. "github.com/onsi/gomega"
	"golang.org/x/sys/unix"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/conditions"
	"github.com/portico-dev/portico/internal/standin"
	"github.com/portico-dev/portico/nodeagent/xds/xdstest"
)

var (
	vip4 = netip.MustParseAddrPort("10.252.1.10:80")
	vip6 = netip.MustParseAddrPort("[fd00:252:1::10]:80")
)

const (
	listenerJSON = `{"@type":"type.googleapis.com/envoy.config.listener.v3.Listener","name":"web",
 "address":{"socket_address":{"address":"0.0.0.0","port_value":80}},
 "filter_chains":[{"filters":[{"name":"envoy.filters.network.tcp_proxy","typed_config":{
  "@type":"type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy","stat_prefix":"web","cluster":"default/backend:80"}}]}]}`
	clusterJSON = `{"@type":"type.googleapis.com/envoy.config.cluster.v3.Cluster","name":"default/backend:80","type":"EDS",
 "connect_timeout":"5s","eds_cluster_config":{"eds_config":{"ads":{},"resource_api_version":"V3"}}}`
	// badClusterJSON decodes, but its connect timeout is negative: Envoy's validation refuses it.
	badClusterJSON = `{"@type":"type.googleapis.com/envoy.config.cluster.v3.Cluster","name":"default/other:80","type":"EDS",
 "connect_timeout":"-1s","eds_cluster_config":{"eds_config":{"ads":{},"resource_api_version":"V3"}}}`
)

func resource(s string) v1alpha1.EnvoyResource {
	var r v1alpha1.EnvoyResource
	if err := r.UnmarshalJSON([]byte(s)); err != nil {
		panic(err)
	}
	return r
}

func webConfig() *v1alpha1.NodeProxyConfig {
	return &v1alpha1.NodeProxyConfig{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: v1alpha1.NodeProxyConfigSpec{
			Redirects: []v1alpha1.Redirect{
				{Name: "web4", VIP: vip4.Addr().String(), Port: 80, Protocol: v1alpha1.ProtocolTCP, Listener: "web"},
				{Name: "web6", VIP: vip6.Addr().String(), Port: 80, Protocol: v1alpha1.ProtocolTCP, Listener: "web"},
			},
			Envoy: &v1alpha1.EnvoyResources{
				Resources:       []v1alpha1.EnvoyResource{resource(listenerJSON), resource(clusterJSON)},
				BackendServices: []v1alpha1.BackendService{{ServiceRef: v1alpha1.ServiceRef{Name: "backend", Namespace: "default"}, Ports: []string{"80"}}},
			},
		},
	}
}

func endpointSlice(addrs ...string) *discoveryv1.EndpointSlice {
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "backend-1", Namespace: "default", Labels: map[string]string{discoveryv1.LabelServiceName: "backend"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	for _, a := range addrs {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{a}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}})
	}
	return es
}

// TestAgentRedirectsReportsAndSurvivesRestart is the node agent's acceptance on a real
// kernel: a NodeProxyConfig's redirect delivers client connections for VIP:80 (IPv4 and
// IPv6) into the listener on the proxy port the agent allocated and served over xDS,
// with the VIP as the accepted socket's local address; EDS follows EndpointSlices; a bad
// config is rejected alone and reported on NodeProxy; kill -9 of the agent drops no
// connection and the datapath keeps serving; a NACK shows on NodeProxy; removing the
// redirect stops new connections.
func TestAgentRedirectsReportsAndSurvivesRestart(t *testing.T) {
	r := newRig(t)
	g := NewWithT(t)
	ctx := context.Background()
	k8s := r.env.Client

	g.Expect(k8s.Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "backend", Namespace: "default"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}})).To(Succeed())
	g.Expect(k8s.Create(ctx, endpointSlice("10.252.0.99"))).To(Succeed())
	g.Expect(k8s.Create(ctx, webConfig())).To(Succeed())
	r.startAgent()

	// Learn the proxy port as Envoy would: from the listener the agent serves.
	ads, err := xdstest.Dial(ctx, "unix://"+r.socket, "envoy-"+nodeName)
	g.Expect(err).NotTo(HaveOccurred())
	defer ads.Close()
	g.Expect(ads.Start()).To(Succeed())
	var port uint32
	var listener *listenerv3.Listener
	g.Eventually(func() bool {
		l, ok := ads.State(resourcev3.ListenerType).Resources["web"].(*listenerv3.Listener)
		if ok {
			listener, port = l, l.GetAddress().GetSocketAddress().GetPortValue()
		}
		return ok
	}).WithTimeout(20 * time.Second).Should(BeTrue())
	g.Expect(listener.GetTransparent().GetValue()).To(BeTrue(), "redirected listeners must be transparent")
	g.Expect(listener.GetEnableReusePort().GetValue()).To(BeFalse(), "bpf_sk_assign refuses SO_REUSEPORT sockets")
	t.Logf("agent allocated proxy port %d", port)

	// EDS: the ready endpoint, then a second one when the EndpointSlice changes.
	endpoints := func() []string {
		cla, _ := ads.State(resourcev3.EndpointType).Resources["default/backend:80"].(*endpointv3.ClusterLoadAssignment)
		out := xdstest.EndpointAddresses(cla)
		slices.Sort(out)
		return out
	}
	g.Eventually(endpoints).WithTimeout(10 * time.Second).Should(Equal([]string{"10.252.0.99:8080"}))
	es := &discoveryv1.EndpointSlice{}
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: "default", Name: "backend-1"}, es)).To(Succeed())
	es.Endpoints = endpointSlice("10.252.0.98", "10.252.0.99").Endpoints
	g.Expect(k8s.Update(ctx, es)).To(Succeed())
	g.Eventually(endpoints).WithTimeout(10 * time.Second).Should(Equal([]string{"10.252.0.98:8080", "10.252.0.99:8080"}))

	stand4, err := r.node.ListenTransparent(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port)))
	g.Expect(err).NotTo(HaveOccurred())
	stand6, err := r.node.ListenTransparent(netip.AddrPortFrom(netip.MustParseAddr("::1"), uint16(port)))
	g.Expect(err).NotTo(HaveOccurred())
	echo4, echo6 := serveEcho(t, stand4), serveEcho(t, stand6)

	connect := func(vip netip.AddrPort, e *standin.Listener) error {
		c, err := r.client.Dial(vip, time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		if err := roundTrip(c, "hello\n"); err != nil {
			return err
		}
		select {
		case a := <-e.Accepted:
			if a.Local != vip {
				return fmt.Errorf("accepted with local address %s, want %s", a.Local, vip)
			}
		case <-time.After(time.Second):
			return fmt.Errorf("the stand-in listener saw no connection")
		}
		return nil
	}
	g.Eventually(func() error { return connect(vip4, echo4) }).WithTimeout(20 * time.Second).Should(Succeed())
	g.Eventually(func() error { return connect(vip6, echo6) }).WithTimeout(10 * time.Second).Should(Succeed())

	// A bad config next to the good one is rejected alone, with the reason on NodeProxy.
	bad := &v1alpha1.NodeProxyConfig{ObjectMeta: metav1.ObjectMeta{Name: "bad"},
		Spec: v1alpha1.NodeProxyConfigSpec{Envoy: &v1alpha1.EnvoyResources{Resources: []v1alpha1.EnvoyResource{resource(badClusterJSON)}}}}
	g.Expect(k8s.Create(ctx, bad)).To(Succeed())
	np := &v1alpha1.NodeProxy{}
	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx, client.ObjectKey{Name: nodeName}, np)).To(Succeed())
		g.Expect(np.Status.Rejected).To(ContainElement(HaveField("Name", "bad")))
		g.Expect(np.Status.AppliedResourceVersion).NotTo(BeEmpty())
		dp := conditions.Get(np.Status.Conditions, v1alpha1.ConditionDatapathReady)
		g.Expect(dp).NotTo(BeNil())
		g.Expect(dp.Status).To(Equal(metav1.ConditionTrue), "DatapathReady: %s", dp.Message)
		g.Expect(np.Status.Counters.Redirects).To(BeEquivalentTo(2))
	}).WithTimeout(15 * time.Second).Should(Succeed())
	for _, rej := range np.Status.Rejected {
		t.Logf("NodeProxy rejects %s: %s: %s", rej.Name, rej.Reason, rej.Message)
	}
	g.Expect(connect(vip4, echo4)).To(Succeed(), "the good config must keep working")

	// kill -9: the established connection keeps exchanging data, and new connections
	// succeed while the agent is down and after it is back.
	held, err := r.client.Dial(vip4, time.Second)
	g.Expect(err).NotTo(HaveOccurred())
	defer held.Close()
	g.Expect(roundTrip(held, "before\n")).To(Succeed())
	<-echo4.Accepted
	r.stopAgent(unix.SIGKILL)
	g.Expect(roundTrip(held, "while down\n")).To(Succeed())
	g.Expect(connect(vip4, echo4)).To(Succeed())
	g.Expect(connect(vip6, echo6)).To(Succeed())
	r.startAgent()
	g.Expect(roundTrip(held, "after restart\n")).To(Succeed())
	ads2, err := xdstest.Dial(ctx, "unix://"+r.socket, "envoy-"+nodeName)
	g.Expect(err).NotTo(HaveOccurred())
	defer ads2.Close()
	g.Expect(ads2.Start()).To(Succeed())
	g.Eventually(func() uint32 {
		l, _ := ads2.State(resourcev3.ListenerType).Resources["web"].(*listenerv3.Listener)
		return l.GetAddress().GetSocketAddress().GetPortValue()
	}).WithTimeout(20*time.Second).Should(Equal(port), "the proxy port must survive a restart")
	g.Expect(connect(vip4, echo4)).To(Succeed())
	g.Expect(roundTrip(held, "still\n")).To(Succeed())

	// SIGTERM: a graceful stop releases the heartbeat at once and leaves the datapath
	// serving; after the restart the served xDS version is higher than before.
	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx, client.ObjectKey{Name: nodeName}, np)).To(Succeed())
		g.Expect(np.Status.XDSVersion).NotTo(BeEmpty())
	}).WithTimeout(10 * time.Second).Should(Succeed())
	versionBefore := np.Status.XDSVersion
	r.stopAgent(unix.SIGTERM)
	lease := &coordinationv1.Lease{}
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: "portico-system", Name: "portico-agent-" + nodeName}, lease)).To(Succeed())
	g.Expect(ptr.Deref(lease.Spec.HolderIdentity, "")).To(BeEmpty(), "SIGTERM must release the heartbeat")
	g.Expect(roundTrip(held, "after sigterm\n")).To(Succeed())
	g.Expect(connect(vip4, echo4)).To(Succeed())
	r.startAgent()
	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx, client.ObjectKey{Name: nodeName}, np)).To(Succeed())
		g.Expect(len(np.Status.XDSVersion) > len(versionBefore) ||
			(len(np.Status.XDSVersion) == len(versionBefore) && np.Status.XDSVersion > versionBefore)).To(BeTrue(),
			"xDS version went from %s to %s", versionBefore, np.Status.XDSVersion)
	}).WithTimeout(20 * time.Second).Should(Succeed())
	g.Expect(roundTrip(held, "after second restart\n")).To(Succeed())
	ads3, err := xdstest.Dial(ctx, "unix://"+r.socket, "envoy-"+nodeName)
	g.Expect(err).NotTo(HaveOccurred())
	defer ads3.Close()
	g.Expect(ads3.Start()).To(Succeed())
	g.Eventually(func() int { return len(ads3.State(resourcev3.ListenerType).Resources) }).WithTimeout(20 * time.Second).Should(Equal(1))

	// A NACK from the proxy shows up on NodeProxy with the proxy's own text. Removing the
	// redirects changes the listener, which the proxy is told to refuse.
	const nackText = "Error adding/updating listener(s) web: cannot bind '127.0.0.1:0': Address already in use"
	ads3.SetReject(func(typeURL string, _ *discoveryv3.DiscoveryResponse) string {
		if typeURL == resourcev3.ListenerType {
			return nackText
		}
		return ""
	})
	cfg := &v1alpha1.NodeProxyConfig{}
	g.Expect(k8s.Get(ctx, client.ObjectKey{Name: "web"}, cfg)).To(Succeed())
	cfg.Spec.Redirects = nil
	g.Expect(k8s.Update(ctx, cfg)).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx, client.ObjectKey{Name: nodeName}, np)).To(Succeed())
		var nacks []string
		for _, p := range np.Status.Proxies {
			nacks = append(nacks, p.LastNACK)
		}
		g.Expect(strings.Join(nacks, "|")).To(ContainSubstring(nackText))
	}).WithTimeout(15 * time.Second).Should(Succeed())

	// Without the redirect, new connections to the VIP fail; the held one is the
	// kernel's business now and is not asserted either way.
	g.Eventually(func() error {
		c, err := r.client.Dial(vip4, 500*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err
	}).WithTimeout(15 * time.Second).Should(HaveOccurred())
	g.Eventually(func() error {
		c, err := r.client.Dial(vip6, 500*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err
	}).WithTimeout(15 * time.Second).Should(HaveOccurred())
}
