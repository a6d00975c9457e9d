package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/conditions"
	"github.com/portico-dev/portico/internal/kubectlportico"
	"github.com/portico-dev/portico/nodeagent/xds/xdstest"
)

func k8s() client.Client { return cluster.Client() }

// kubectl runs kubectl against the cluster and fails the spec on error.
func kubectl(args ...string) string {
	GinkgoHelper()
	out, err := cluster.Kubectl(context.Background(), args...)
	Expect(err).NotTo(HaveOccurred())
	return out
}

// kubectlFn is kubectl for Eventually.
func kubectlFn(args ...string) func() (string, error) {
	return func() (string, error) { return cluster.Kubectl(context.Background(), args...) }
}

// porticoFn runs `kubectl portico` (its package, as the binary does) against the
// cluster for Eventually: the output, and an error unless it exits 0 (all in effect).
func porticoFn(args ...string) func() (string, error) {
	return func() (string, error) {
		var out bytes.Buffer
		code := kubectlportico.Main(context.Background(), append(args, "--kubeconfig", cluster.Kubeconfig()),
			genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &out})
		if code != kubectlportico.ExitOK {
			return out.String(), fmt.Errorf("kubectl portico %s: exit status %d:\n%s", strings.Join(args, " "), code, out.String())
		}
		return out.String(), nil
	}
}

// poolAddr is the pool's address number i (0 = the first).
func poolAddr(i int) netip.Addr {
	a, _ := cluster.Pool()
	for range i {
		a = a.Next()
	}
	return a
}

// ensure creates obj unless an object of that name exists.
func ensure(ctx context.Context, obj client.Object) {
	GinkgoHelper()
	Expect(ensureErr(ctx, obj)).To(Succeed())
}

func isAlreadyExists(err error) bool { return apierrors.IsAlreadyExists(err) }

// remove deletes objects, ignoring those already gone.
func remove(ctx context.Context, objs ...client.Object) {
	GinkgoHelper()
	for _, o := range objs {
		Expect(client.IgnoreNotFound(k8s().Delete(ctx, o))).To(Succeed())
	}
}

// serviceAddress waits until the Service shows an address and returns it.
func serviceAddress(ns, name string) netip.Addr {
	GinkgoHelper()
	var ip netip.Addr
	Eventually(func(g Gomega) {
		svc := &corev1.Service{}
		g.Expect(k8s().Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, svc)).To(Succeed())
		g.Expect(svc.Status.LoadBalancer.Ingress).NotTo(BeEmpty(), "Service %s/%s has no address", ns, name)
		ip = netip.MustParseAddr(svc.Status.LoadBalancer.Ingress[0].IP)
	}).Should(Succeed())
	return ip
}

// ingressAddress waits until the Ingress shows an address (it does once a node
// serves it) and returns it.
func ingressAddress(ns, name string) netip.Addr {
	GinkgoHelper()
	var ip netip.Addr
	Eventually(func(g Gomega) {
		ing := &networkingv1.Ingress{}
		g.Expect(k8s().Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, ing)).To(Succeed())
		g.Expect(ing.Status.LoadBalancer.Ingress).NotTo(BeEmpty(), "Ingress %s/%s has no address", ns, name)
		ip = netip.MustParseAddr(ing.Status.LoadBalancer.Ingress[0].IP)
	}).WithTimeout(60 * time.Second).Should(Succeed())
	return ip
}

var announcedBy = regexp.MustCompile(`announced by ([^\s,;()]+)`)

// announcer is the node the Service's L2Announced condition names ("" if none).
func announcer(ns, name string) string {
	svc := &corev1.Service{}
	if err := k8s().Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, svc); err != nil {
		return ""
	}
	c := conditions.Get(svc.Status.Conditions, v1alpha1.ConditionL2Announced)
	if c == nil || c.Status != metav1.ConditionTrue {
		return ""
	}
	if m := announcedBy.FindStringSubmatch(c.Message); m != nil {
		return m[1]
	}
	return ""
}

// answeredBy waits until the node the Service's condition names is the only one the
// client hears answering ARP for ip, and returns it.
func answeredBy(ns, name string, ip netip.Addr) string {
	GinkgoHelper()
	var owner string
	Eventually(func(g Gomega) {
		owner = announcer(ns, name)
		g.Expect(owner).NotTo(BeEmpty(), "the L2Announced condition of %s/%s names no node", ns, name)
		who, out := cluster.Network().Arping(ip, time.Second)
		g.Expect(who).NotTo(BeEmpty(), "nobody answers ARP for %s:\n%s", ip, out)
		if strings.HasPrefix(who[0], "?") { // a real cluster: node MACs unknown, one answer is all we can ask
			g.Expect(who).To(HaveLen(1), "answers for %s", ip)
			return
		}
		g.Expect(who).To(HaveEach(Equal(owner)), "answers for %s; the condition names %q", ip, owner)
	}).WithTimeout(60 * time.Second).WithPolling(500 * time.Millisecond).Should(Succeed())
	return owner
}

// needNetwork skips what only a client on the nodes' segment can check.
func needNetwork() {
	if cluster.Network() == nil {
		Skip("no client on the nodes' segment (set PORTICO_E2E_CLIENT_INTERFACE)")
	}
}

// needFaults skips what only a local cluster can do.
func needFaults() {
	if cluster.Faults() == nil {
		Skip("the " + cluster.Provider() + " provider injects no faults")
	}
}

func objectMeta(ns, name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: ns, Name: name}
}

// expectBookinfoServed waits until every node's proxy holds routes to details and
// productpage with their endpoints, every reference resolved (S3 and S5 serve the same
// backends, from an Ingress and from a Gateway).
func expectBookinfoServed(ctx context.Context) {
	needProxies()
	for _, node := range cluster.Nodes() {
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := cluster.Proxy(node).WaitResolved(wctx, func(c *xdstest.Client) bool {
			return routesTo(c, "details", "productpage") && hasEndpoints(c, "default/details:9080", "default/productpage:9080")
		})
		cancel()
		Expect(err).NotTo(HaveOccurred(), "node %s", node)
	}
}
