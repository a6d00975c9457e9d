package e2e

import (
	"context"
	"net/netip"
	"slices"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-dev/portico/apis/v1alpha1"
	ingressctl "github.com/portico-dev/portico/controllers/ingress"
	"github.com/portico-dev/portico/internal/testcerts"
	"github.com/portico-dev/portico/nodeagent/xds/xdstest"
)

// webpodIngress is S4's dedicated Ingress.
func webpodIngress() *networkingv1.Ingress {
	ing := ingress("webpod-ingress", pathTo{path: "/", service: "webpod", port: 80})
	ing.Annotations = map[string]string{"ingress.portico.dev/loadbalancer-mode": "dedicated"}
	return ing
}

// shopIngress is HTTPS on the shared listener with a certificate from a Secret.
func shopIngress() *networkingv1.Ingress {
	ing := ingress("shop", pathTo{path: "/", service: "productpage", port: 9080})
	ing.Spec.Rules[0].Host = "shop.example.com"
	ing.Spec.TLS = []networkingv1.IngressTLS{{Hosts: []string{"shop.example.com"}, SecretName: "shop-tls"}}
	return ing
}

func ensureS4(ctx context.Context) {
	GinkgoHelper()
	ensureS3(ctx)
	ensureBackends(ctx, 80, "webpod")
	ensure(ctx, ingress("basic-ingress2", pathTo{path: "/", service: "webpod", port: 80}))
	ensure(ctx, webpodIngress())
	data, err := testcerts.Generate("shop.example.com")
	Expect(err).NotTo(HaveOccurred())
	ensure(ctx, &corev1.Secret{ObjectMeta: objectMeta("default", "shop-tls"), Type: corev1.SecretTypeTLS, Data: data})
	ensure(ctx, shopIngress())
}

func describeS4() {
	Describe("S4: shared and dedicated side by side", Label("S4"), Ordered, func() {
		var shared, dedicated netip.Addr

		BeforeAll(func(ctx SpecContext) {
			ensureS4(ctx)
			shared = serviceAddress(cluster.InstallNamespace(), ingressctl.SharedServiceName)
		})

		It("gives a second shared Ingress the same address, and the dedicated one its own Service and address", func(ctx SpecContext) {
			Expect(ingressAddress("default", "basic-ingress2")).To(Equal(shared))
			dedicated = ingressAddress("default", "webpod-ingress")
			Expect(dedicated).NotTo(Equal(shared))
			Expect(serviceAddress("default", ingressctl.DedicatedServiceName("webpod-ingress"))).To(Equal(dedicated))
			Eventually(kubectlFn("get", "ingress")).Should(And(
				MatchRegexp(`(?m)^basic-ingress2\s+portico\s+\*\s+%s\s+`, shared),
				MatchRegexp(`(?m)^webpod-ingress\s+portico\s+\*\s+%s\s+`, dedicated)))
			expectAvailable(ctx)
		})

		It("serves HTTPS for shop.example.com on the shared listener with the Secret's certificate", func(ctx SpecContext) {
			Expect(ingressAddress("default", "shop")).To(Equal(shared))
			needProxies()
			for _, node := range cluster.Nodes() {
				wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				err := cluster.Proxy(node).WaitResolved(wctx, func(c *xdstest.Client) bool {
					return hasSNIChain(c, "shop.example.com") && slices.Contains(keys(c.State(resourcev3.SecretType).Resources), "default/shop-tls")
				})
				cancel()
				Expect(err).NotTo(HaveOccurred(), "node %s", node)
			}
		})

		It("answers on the dedicated address through its own redirect, and the shared one keeps its oldest route for /", func() {
			needNetwork()
			owner := answeredBy("default", ingressctl.DedicatedServiceName("webpod-ingress"), dedicated)
			expectTable(netip.AddrPortFrom(dedicated, 80), owner, []request{{method: "GET", path: "/anything", backend: "webpod"}})
			// basic-ingress and basic-ingress2 both claim / on the catch-all host of default:
			// the older Ingress's path wins.
			sharedOwner := answeredBy(cluster.InstallNamespace(), ingressctl.SharedServiceName, shared)
			expectTable(netip.AddrPortFrom(shared, 80), sharedOwner, []request{{method: "GET", path: "/", backend: "productpage"}})
		})

		It("is applied by every node with nothing rejected", func(ctx SpecContext) {
			Eventually(func(g Gomega) {
				for _, node := range cluster.Nodes() {
					np := &v1alpha1.NodeProxy{}
					g.Expect(k8s().Get(ctx, client.ObjectKey{Name: node}, np)).To(Succeed())
					g.Expect(np.Status.Rejected).To(BeEmpty(), "node %s", node)
					g.Expect(np.Status.Counters.Listeners).To(BeNumerically(">=", 3), "node %s: shared HTTP and HTTPS, dedicated HTTP", node)
				}
			}).Should(Succeed())
			Eventually(kubectlFn("get", "nodeproxies")).Should(MatchRegexp(`(?m)^%s\s+True\s+True\s+True\s+\d+\s+0\s+`, cluster.Nodes()[0]))
		})
	})
}

// hasSNIChain: a served listener has a filter chain for server name host.
func hasSNIChain(c *xdstest.Client, host string) bool {
	for _, m := range c.State(resourcev3.ListenerType).Resources {
		for _, fc := range m.(*listenerv3.Listener).GetFilterChains() {
			if slices.Contains(fc.GetFilterChainMatch().GetServerNames(), host) {
				return true
			}
		}
	}
	return false
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
