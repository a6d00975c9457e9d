package e2e

import (
	"context"
	"path/filepath"
	"strconv"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-dev/portico/nodeagent/xds/xdstest"
)

// What the EnvoyConfig scenarios (S6–S8) share: fixtures applied with kubectl as a
// user would, and checks of what each node serves, fetched as Envoy fetches it.

// fixture is the absolute path of a file under e2e/testdata (go test runs in e2e/,
// kubectl may not).
func fixture(name string) string {
	GinkgoHelper()
	p, err := filepath.Abs(filepath.Join("testdata", name))
	Expect(err).NotTo(HaveOccurred())
	return p
}

// applyFixture applies a fixture with `kubectl apply` and deletes what it made when the
// container (or spec) that applied it ends, waiting for the deletion so that the next
// spec meets a cluster without it.
func applyFixture(name string) {
	GinkgoHelper()
	path := fixture(name)
	DeferCleanup(func() {
		_, err := cluster.Kubectl(context.Background(), "delete", "-f", path, "--ignore-not-found", "--wait", "--timeout=60s")
		Expect(err).NotTo(HaveOccurred())
	})
	kubectl("apply", "-f", path)
}

// xdsFailure carries a failed assertion out of a check run inside the ADS client's wait.
type xdsFailure struct{ msg string }

// xdsCheck turns Gomega assertions over a client's state into a condition for
// WaitResolved that records why it does not hold yet (the first failed assertion).
func xdsCheck(last *string, f func(g Gomega, c *xdstest.Client)) func(*xdstest.Client) bool {
	return func(c *xdstest.Client) (ok bool) {
		defer func() {
			if r := recover(); r != nil {
				fail, isFail := r.(xdsFailure)
				if !isFail {
					panic(r)
				}
				*last, ok = fail.msg, false
			}
		}()
		f(NewGomega(func(msg string, _ ...int) { panic(xdsFailure{msg}) }), c)
		*last = ""
		return true
	}
}

// expectServedOnEveryNode waits until each node's proxy (the Envoy-like ADS client:
// LDS and CDS, then RDS and EDS by the names they reference) holds every reference
// resolved and f's assertions pass; a failure names the node and the last assertion
// that did not hold.
func expectServedOnEveryNode(ctx context.Context, f func(g Gomega, c *xdstest.Client)) {
	GinkgoHelper()
	needProxies()
	for _, node := range cluster.Nodes() {
		var last string
		wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		err := cluster.Proxy(node).WaitResolved(wctx, xdsCheck(&last, f))
		cancel()
		Expect(err).NotTo(HaveOccurred(), "node %s serves it as Envoy would fetch it; last check: %s", node, last)
	}
}

// served is the resource of type T named name the client holds (the assertion fails
// when it holds none).
func served[T any](g Gomega, c *xdstest.Client, typeURL, name string) T {
	m, ok := c.State(typeURL).Resources[name]
	g.Expect(ok).To(BeTrue(), "%s %q is not served", typeURL, name)
	out, ok := m.(T)
	g.Expect(ok).To(BeTrue(), "%s %q is a %T", typeURL, name, m)
	return out
}

// readyEndpoints waits until the Service's EndpointSlices list a ready endpoint and
// returns every ready "ip:port": what the node's EDS must serve for it.
func readyEndpoints(ctx context.Context, svc types.NamespacedName) []string {
	GinkgoHelper()
	var out []string
	Eventually(func(g Gomega) {
		var slices discoveryv1.EndpointSliceList
		g.Expect(k8s().List(ctx, &slices, client.InNamespace(svc.Namespace),
			client.MatchingLabels{discoveryv1.LabelServiceName: svc.Name})).To(Succeed())
		out = nil
		for _, s := range slices.Items {
			for _, e := range s.Endpoints {
				if e.Conditions.Ready != nil && !*e.Conditions.Ready {
					continue
				}
				for _, p := range s.Ports {
					for _, a := range e.Addresses {
						out = append(out, a+":"+strconv.Itoa(int(*p.Port)))
					}
				}
			}
		}
		g.Expect(out).NotTo(BeEmpty(), "Service %s has no ready endpoint", svc)
	}).WithTimeout(60 * time.Second).Should(Succeed())
	return out
}
