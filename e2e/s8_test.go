package e2e

import (
	"context"
	"strings"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/testcerts"
	"github.com/portico-dev/portico/nodeagent/xds/xdstest"
)

// What S8 adds to badobjects_test.go, which already shows a backwards pool range and a
// bad policy refused at admission, a Service's unsatisfiable address request, an
// Ingress's invalid path, and a NodeProxyConfig with a resource Envoy would refuse
// rejected on every node (NodeProxy.status.rejected, `kubectl get nodeproxies`). S1
// refuses a pool overlapping lb-pool at admission through the client; here the user's
// view of each through kubectl, for EnvoyConfigs and a fresh pair of pools.

const (
	s8Config   = "s8-missing-secret"
	s8NPC      = "envoyconfig.default." + s8Config
	s8Secret   = "s8-missing-cert"
	s8Listener = "default/" + s8Config + "/tls"
)

func describeS8() {
	Describe("S8: what goes wrong, and where the user looks", Label("S8"), Ordered, func() {
		It("refuses a malformed Envoy resource at kubectl apply, naming the resource and the field", func() {
			out, err := cluster.Kubectl(context.Background(), "apply", "-f", fixture("s8-malformed.yaml"))
			DeferCleanup(func(ctx SpecContext) {
				remove(ctx, &v1alpha1.EnvoyConfig{ObjectMeta: objectMeta("default", "s8-malformed")})
			})
			Expect(err).To(HaveOccurred(), "kubectl apply accepted it:\n%s", out)
			Expect(err.Error()).To(And(ContainSubstring("s8-malformed"), ContainSubstring("spec.resources[0]"),
				ContainSubstring(`unknown field "lb_polcy"`)))
			_, err = cluster.Kubectl(context.Background(), "get", "pec", "s8-malformed", "-n", "default")
			Expect(err).To(MatchError(ContainSubstring("NotFound")))
		})

		It("shows a config that admission passes but the nodes cannot serve whole in its conditions and on every NodeProxy", func(ctx SpecContext) {
			applyFixture("s8-missing-secret.yaml")
			expectS8Rejected(ctx)

			By("creating the Secret the nodes were missing, the config is programmed and its TLS chain served")
			secret := selfSignedSecret("default", s8Secret)
			Expect(k8s().Create(ctx, secret)).To(Succeed())
			DeferCleanup(func(ctx SpecContext) { remove(ctx, secret) })
			Eventually(kubectlFn("get", "pec", s8Config, "-n", "default")).WithTimeout(60 * time.Second).
				Should(MatchRegexp(`(?m)^%s\s+True\s+True\s+`, s8Config))
			Eventually(func(g Gomega) {
				for _, node := range cluster.Nodes() {
					np := &v1alpha1.NodeProxy{}
					g.Expect(k8s().Get(ctx, client.ObjectKey{Name: node}, np)).To(Succeed())
					g.Expect(np.Status.Rejected).NotTo(ContainElement(HaveField("Name", s8NPC)), "node %s", node)
				}
			}).WithTimeout(60 * time.Second).Should(Succeed())
			expectServedOnEveryNode(ctx, func(g Gomega, c *xdstest.Client) {
				l := served[*listenerv3.Listener](g, c, resourcev3.ListenerType, s8Listener)
				g.Expect(l.GetFilterChains()).To(HaveLen(1))
				g.Expect(l.GetFilterChains()[0].GetTransportSocket()).NotTo(BeNil(), "the TLS chain is served")
				served[*tlsv3.Secret](g, c, resourcev3.SecretType, "default/"+s8Secret)
			})
		})

		It("refuses the second of two overlapping pools at kubectl apply, naming the field and the first pool", func() {
			path := fixture("s8-pools.yaml")
			DeferCleanup(func(ctx SpecContext) {
				remove(ctx, &v1alpha1.LoadBalancerIPPool{ObjectMeta: objectMeta("", "s8-pool-a")},
					&v1alpha1.LoadBalancerIPPool{ObjectMeta: objectMeta("", "s8-pool-b")})
			})
			out, err := cluster.Kubectl(context.Background(), "apply", "-f", path)
			Expect(out).To(ContainSubstring("s8-pool-a created"))
			Expect(err).To(HaveOccurred(), "kubectl apply accepted both:\n%s", out)
			Expect(err.Error()).To(And(ContainSubstring("s8-pool-b"), ContainSubstring("spec.blocks[0]"),
				ContainSubstring(`overlaps pool "s8-pool-a" on 203.0.113.38`)))
			_, err = cluster.Kubectl(context.Background(), "get", "ippool", "s8-pool-b")
			Expect(err).To(MatchError(ContainSubstring("NotFound")))
			// The pool that was admitted is not marked as conflicting.
			Eventually(kubectlFn("get", "ippool", "s8-pool-a")).Should(MatchRegexp(`(?m)^s8-pool-a\s+true\s+False\s+`))
		})
	})
}

// expectS8Rejected: the config is accepted (admission and controller find nothing
// wrong) but not programmed, and the user finds why, naming the Secret, in the
// config's condition, in `kubectl get nodeproxies` and in `kubectl describe nodeproxy`.
func expectS8Rejected(ctx context.Context) {
	GinkgoHelper()
	Eventually(kubectlFn("get", "pec", s8Config, "-n", "default")).WithTimeout(60 * time.Second).
		Should(MatchRegexp(`(?m)^%s\s+True\s+False\s+`, s8Config))
	Eventually(func(g Gomega) {
		ec := &v1alpha1.EnvoyConfig{}
		g.Expect(k8s().Get(ctx, client.ObjectKey{Namespace: "default", Name: s8Config}, ec)).To(Succeed())
		var programmed *metav1.Condition
		for i := range ec.Status.Conditions {
			if ec.Status.Conditions[i].Type == string(v1alpha1.ConditionProgrammed) {
				programmed = &ec.Status.Conditions[i]
			}
		}
		g.Expect(programmed).NotTo(BeNil())
		g.Expect(programmed.Reason).To(Equal(string(v1alpha1.ReasonRejected)))
		g.Expect(programmed.Message).To(And(ContainSubstring(cluster.Nodes()[0]+" (SecretNotFound: "),
			ContainSubstring("Secret default/"+s8Secret+" not found")))
	}).WithTimeout(60 * time.Second).Should(Succeed())

	Eventually(func(g Gomega) {
		for _, node := range cluster.Nodes() {
			np := &v1alpha1.NodeProxy{}
			g.Expect(k8s().Get(ctx, client.ObjectKey{Name: node}, np)).To(Succeed())
			g.Expect(np.Status.Rejected).To(ContainElement(And(HaveField("Name", s8NPC),
				HaveField("Reason", v1alpha1.ReasonSecretNotFound),
				HaveField("Message", ContainSubstring(`listener "`+s8Listener+`"`)))), "node %s", node)
		}
	}).WithTimeout(60 * time.Second).Should(Succeed())
	for _, node := range cluster.Nodes() {
		// NAME READY DATAPATH PROXY CONFIGS REJECTED: at least this config rejected.
		Eventually(kubectlFn("get", "nodeproxies", node)).Should(MatchRegexp(`(?m)^%s\s+True\s+\S+\s+True\s+\d+\s+[1-9]\d*\s+`, node))
		desc := strings.Join(strings.Fields(kubectl("describe", "nodeproxy", node)), " ")
		Expect(desc).To(And(ContainSubstring("Name: "+s8NPC), ContainSubstring("Reason: SecretNotFound"),
			ContainSubstring("Secret default/"+s8Secret+" not found")), "kubectl describe nodeproxy %s", node)
	}
}

// selfSignedSecret is a kubernetes.io/tls Secret holding a fresh self-signed key pair.
func selfSignedSecret(ns, name string) *corev1.Secret {
	GinkgoHelper()
	data, err := testcerts.Generate("s8.example")
	Expect(err).NotTo(HaveOccurred())
	return &corev1.Secret{ObjectMeta: objectMeta(ns, name), Type: corev1.SecretTypeTLS, Data: data}
}
