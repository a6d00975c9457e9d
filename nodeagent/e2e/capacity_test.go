package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/conditions"
	"github.com/portico-dev/portico/nodeagent/xds/xdstest"
)

// TestRedirectMapFullRejectsOnlyTheNewest runs the agent with redirect maps of two
// entries per family. The web config (one IPv4, one IPv6 redirect) fits; a younger
// config asking for two more IPv4 frontends does not and is rejected alone with
// RedirectCapacity, while a third, asking for one, still fits: the datapath stays
// Ready, web keeps answering real TCP through the redirect, and the map holds
// exactly the three redirects that fit.
func TestRedirectMapFullRejectsOnlyTheNewest(t *testing.T) {
	r := newRig(t)
	g := NewWithT(t)
	ctx := context.Background()
	k8s := r.env.Client

	g.Expect(k8s.Create(ctx, webConfig())).To(Succeed())
	extra := func(name string, vips ...string) *v1alpha1.NodeProxyConfig {
		c := &v1alpha1.NodeProxyConfig{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.NodeProxyConfigSpec{
			Envoy: &v1alpha1.EnvoyResources{Resources: []v1alpha1.EnvoyResource{
				resource(fmt.Sprintf(`{"@type":"type.googleapis.com/envoy.config.listener.v3.Listener","name":%q,
 "address":{"socket_address":{"address":"0.0.0.0","port_value":80}},
 "filter_chains":[{"filters":[{"name":"envoy.filters.network.tcp_proxy","typed_config":{
  "@type":"type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy","stat_prefix":"x","cluster":"static"}}]}]}`, name)),
				resource(`{"@type":"type.googleapis.com/envoy.config.cluster.v3.Cluster","name":"static","type":"STATIC","connect_timeout":"1s"}`)}}}}
		for i, v := range vips {
			c.Spec.Redirects = append(c.Spec.Redirects, v1alpha1.Redirect{Name: fmt.Sprintf("r%d", i), VIP: v, Port: 80, Listener: name})
		}
		return c
	}
	// Creation times have second precision: make the order of age unambiguous.
	time.Sleep(1100 * time.Millisecond)
	g.Expect(k8s.Create(ctx, extra("too-many", "10.252.1.20", "10.252.1.21"))).To(Succeed())
	time.Sleep(1100 * time.Millisecond)
	g.Expect(k8s.Create(ctx, extra("fits", "10.252.1.30"))).To(Succeed())
	r.startAgent("--redirect-map-size", "2")

	np := &v1alpha1.NodeProxy{}
	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx, client.ObjectKey{Name: nodeName}, np)).To(Succeed())
		g.Expect(np.Status.Rejected).To(ConsistOf(And(HaveField("Name", "too-many"), HaveField("Reason", v1alpha1.ReasonRedirectCapacity))))
		g.Expect(np.Status.Counters.Redirects).To(BeEquivalentTo(3))
		dp := conditions.Get(np.Status.Conditions, v1alpha1.ConditionDatapathReady)
		g.Expect(dp).NotTo(BeNil())
		g.Expect(dp.Status).To(Equal(metav1.ConditionTrue), "DatapathReady: %s", dp.Message)
	}).WithTimeout(20 * time.Second).Should(Succeed())
	t.Logf("rejected: %s", np.Status.Rejected[0].Message)

	ads, err := xdstest.Dial(ctx, "unix://"+r.socket, "envoy-"+nodeName)
	g.Expect(err).NotTo(HaveOccurred())
	defer ads.Close()
	g.Expect(ads.Start()).To(Succeed())
	var port uint32
	g.Eventually(func() bool {
		l, ok := ads.State(resourcev3.ListenerType).Resources["web"].(*listenerv3.Listener)
		port = l.GetAddress().GetSocketAddress().GetPortValue()
		return ok
	}).WithTimeout(20 * time.Second).Should(BeTrue())
	ln, err := r.node.ListenTransparent(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port)))
	g.Expect(err).NotTo(HaveOccurred())
	serveEcho(t, ln)
	g.Eventually(func() error {
		c, err := r.client.Dial(vip4, time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		return roundTrip(c, "still here\n")
	}).WithTimeout(10 * time.Second).Should(Succeed())
}
