package e2e

import (
	"context"
	"net/netip"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/conditions"
)

// badCluster decodes but Envoy's validation refuses it (a negative connect timeout).
// STATIC: an EDS cluster would first be refused for asking EDS for a Service the config
// does not list.
const badCluster = `{"@type":"type.googleapis.com/envoy.config.cluster.v3.Cluster","name":"broken","type":"STATIC",
 "connect_timeout":"-1s"}`

// expectBadObjectsAlone creates one bad object of each kind the cluster serves next
// to the scenarios' good ones: each fails with a message naming its field, where the
// user looks (admission, a condition, an Event, NodeProxy), and everything else keeps
// being served.
func expectBadObjectsAlone(ctx context.Context, shared netip.Addr) {
	GinkgoHelper()
	addrs := held(ctx, Default)

	By("a pool whose range is backwards is refused at admission")
	pool := lbPool()
	pool.Name, pool.Spec.Blocks[0].Start, pool.Spec.Blocks[0].Stop = "bad-pool", poolAddr(20).String(), poolAddr(19).String()
	Expect(k8s().Create(ctx, pool)).To(MatchError(ContainSubstring("spec.blocks[0]")))

	By("a policy with an invalid interface pattern is refused at admission")
	policy := policy1()
	policy.Name, policy.Spec.Interfaces = "bad-policy", []string{"(eth"}
	Expect(k8s().Create(ctx, policy)).To(MatchError(ContainSubstring("spec.interfaces[0]")))

	By("a Service asking for an address no pool has gets a condition saying so")
	svc := lbService("bad-request")
	svc.Annotations = map[string]string{"lbipam.portico.dev/ips": "198.51.100.7"}
	Expect(k8s().Create(ctx, svc)).To(Succeed())
	DeferCleanup(func(ctx SpecContext) { remove(ctx, svc) })
	Eventually(func(g Gomega) {
		got := &corev1.Service{}
		g.Expect(k8s().Get(ctx, client.ObjectKeyFromObject(svc), got)).To(Succeed())
		c := conditions.Get(got.Status.Conditions, v1alpha1.ConditionIPAMRequestSatisfied)
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(c.Message).To(ContainSubstring("198.51.100.7"))
		g.Expect(got.Status.LoadBalancer.Ingress).To(BeEmpty())
	}).Should(Succeed())

	By("an Ingress with an invalid path pattern gets a Warning Event naming the field")
	bad := ingress("bad-path", pathTo{path: "/api/[", pathType: networkingv1.PathTypeImplementationSpecific, service: "details", port: 9080})
	Expect(k8s().Create(ctx, bad)).To(Succeed())
	DeferCleanup(func(ctx SpecContext) { remove(ctx, bad) })
	Eventually(kubectlFn("get", "events", "-n", "default", "--field-selector", "involvedObject.name=bad-path", "-o", "custom-columns=REASON:.reason,MSG:.message")).
		Should(MatchRegexp(`InvalidPath\s+spec\.rules\[0\]\.http\.paths\[0\]: ImplementationSpecific path "/api/\[" is not an RE2 regular expression`))

	By("a NodeProxyConfig with a resource Envoy would refuse is rejected on every node, alone")
	npc := &v1alpha1.NodeProxyConfig{ObjectMeta: metav1.ObjectMeta{Name: "bad-config"},
		Spec: v1alpha1.NodeProxyConfigSpec{Envoy: &v1alpha1.EnvoyResources{Resources: []v1alpha1.EnvoyResource{envoyResource(badCluster)}}}}
	Expect(k8s().Create(ctx, npc)).To(Succeed())
	DeferCleanup(func(ctx SpecContext) { remove(ctx, npc) })
	Eventually(func(g Gomega) {
		for _, node := range cluster.Nodes() {
			np := &v1alpha1.NodeProxy{}
			g.Expect(k8s().Get(ctx, client.ObjectKey{Name: node}, np)).To(Succeed())
			g.Expect(np.Status.Rejected).To(ConsistOf(And(HaveField("Name", "bad-config"), HaveField("Reason", v1alpha1.ReasonInvalidResource),
				HaveField("Message", ContainSubstring("ConnectTimeout")))), "node %s", node)
		}
	}).Should(Succeed())
	Eventually(kubectlFn("get", "nodeproxies")).Should(MatchRegexp(`(?m)^%s\s+True\s+\S+\s+True\s+\d+\s+1\s+`, cluster.Nodes()[0]))

	By("everything else is still served")
	Expect(held(ctx, Default)).To(Equal(addrs))
	for _, name := range []string{"basic-ingress", "basic-ingress2", "webpod-ingress", "shop"} {
		Eventually(kubectlFn("get", "npc", "ingress.default."+name)).Should(MatchRegexp(`(?m)\s+True\s+`), name)
	}
	if cluster.Network() != nil {
		owner := answeredBy(cluster.InstallNamespace(), "portico-ingress", shared)
		expectTable(netip.AddrPortFrom(shared, 80), owner, s3Table)
	}
}

func envoyResource(s string) v1alpha1.EnvoyResource {
	GinkgoHelper()
	var r v1alpha1.EnvoyResource
	Expect(r.UnmarshalJSON([]byte(s))).To(Succeed())
	return r
}
