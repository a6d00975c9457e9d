package e2e

import (
	"net/http"
	"net/netip"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	ingressctl "github.com/portico-dev/portico/controllers/ingress"
	"github.com/portico-dev/portico/e2e/framework"
	"github.com/portico-dev/portico/nodeagent/xds/xdstest"
)

// request is one row of a scenario's request → backend table.
type request struct {
	method, path string
	header       http.Header
	backend      string
	// code is the status expected (0: 200, from backend).
	code int
}

// s3Table is scenario S3's: prefix /details to details, the rest to productpage.
var s3Table = []request{
	{method: "GET", path: "/details/1", backend: "details"},
	{method: "GET", path: "/", backend: "productpage"},
	{method: "GET", path: "/ratings", backend: "productpage"},
	{method: "GET", path: "/?great=example", header: http.Header{"Magic": {"foo"}}, backend: "productpage"},
}

func describeS3() {
	Describe("S3: Ingress, shared mode", Label("S3"), Ordered, func() {
		var shared netip.Addr

		BeforeAll(func(ctx SpecContext) {
			ensureS3(ctx)
			shared = serviceAddress(cluster.InstallNamespace(), ingressctl.SharedServiceName)
		})

		It("shows the shared Service's address on the Ingress once a node serves it", func() {
			Expect(ingressAddress("default", "basic-ingress")).To(Equal(shared))
			Eventually(kubectlFn("get", "ingress", "basic-ingress")).Should(MatchRegexp(`(?m)^basic-ingress\s+portico\s+\*\s+%s\s+80\s+`, shared))
			if cluster.Provider() == "local" {
				// The shared Service existed before the pool (S1), so it holds the first address.
				Expect(shared).To(Equal(poolAddr(0)))
			}
			Eventually(kubectlFn("get", "npc", "ingress.default.basic-ingress")).Should(MatchRegexp(`(?m)^ingress\.default\.basic-ingress\s+ingress\s+True\s+`))
			// What `kubectl portico status` shows: the Ingress's configs in effect on every node.
			Eventually(porticoFn("status", "ingress/basic-ingress", "-n", "default")).Should(And(
				ContainSubstring("published:       "+shared.String()),
				MatchRegexp(`(?m)^ingress\.default\.basic-ingress\s+ingress\s+\d+\s+True\s+Programmed\s+%d/%d$`, len(cluster.Nodes()), len(cluster.Nodes())),
				MatchRegexp(`(?m)^ingress-shared\s+ingress\s+\d+\s+True\s+Programmed\s+%d/%d$`, len(cluster.Nodes()), len(cluster.Nodes()))))
		})

		It("is served by every node: routes in order, backends with endpoints, nothing unresolved", func(ctx SpecContext) {
			expectBookinfoServed(ctx)
		})

		It("answers the request table through the redirect on the announcing node", func() {
			needNetwork()
			owner := answeredBy(cluster.InstallNamespace(), ingressctl.SharedServiceName, shared)
			expectTable(netip.AddrPortFrom(shared, 80), owner, s3Table)
		})

		It("answers it through the redirect of every node", func() {
			needNetwork()
			needFaults() // routes through a chosen node need the lab
			for _, node := range cluster.Nodes() {
				undo, err := cluster.Network().RouteVia(shared, node)
				Expect(err).NotTo(HaveOccurred())
				expectTable(netip.AddrPortFrom(shared, 80), node, s3Table[:2])
				undo()
			}
		})
	})
}

// expectTable sends each request from the client to addr and expects its backend;
// where the provider tells, node's proxy took it with addr as the local address (the
// eBPF redirect handed the connection to the transparent listener, VIP intact).
func expectTable(addr netip.AddrPort, node string, table []request) {
	GinkgoHelper()
	for _, r := range table {
		Eventually(func(g Gomega) {
			resp, err := cluster.Network().Request(addr, r.method, r.path, r.header)
			g.Expect(err).NotTo(HaveOccurred())
			want := r.code
			if want == 0 {
				want = http.StatusOK
			}
			g.Expect(resp.Code).To(Equal(want), "%s %s %v: %s", r.method, r.path, r.header, resp.Detail)
			if want == http.StatusOK {
				g.Expect(resp.Backend).To(Equal(r.backend), "%s %s %v", r.method, r.path, r.header)
			}
			if resp.Node != "" {
				g.Expect(resp.Node).To(Equal(node), "the proxy that took %s %s", r.method, r.path)
				g.Expect(resp.Local).To(Equal(addr.String()), "the accepted connection's local address")
			}
		}).Should(Succeed())
	}
}

// needProxies skips what needs the Envoy-like client's view of a node's xDS.
func needProxies() {
	if len(cluster.Nodes()) == 0 || cluster.Proxy(cluster.Nodes()[0]) == nil {
		Skip("a real Envoy runs: its xDS is checked through HTTP")
	}
}

// routesTo: some served route configuration sends to a cluster of each service.
func routesTo(c *xdstest.Client, services ...string) bool {
	seen := map[string]bool{}
	for _, m := range c.State(resourcev3.RouteType).Resources {
		for _, vh := range m.(*routev3.RouteConfiguration).GetVirtualHosts() {
			for _, r := range vh.GetRoutes() {
				seen[framework.ServiceOfCluster(r.GetRoute().GetCluster())] = true
			}
		}
	}
	for _, s := range services {
		if !seen[s] {
			return false
		}
	}
	return true
}

// hasEndpoints: each EDS name is served with at least one endpoint.
func hasEndpoints(c *xdstest.Client, names ...string) bool {
	eds := c.State(resourcev3.EndpointType).Resources
	for _, n := range names {
		cla, ok := eds[n].(*endpointv3.ClusterLoadAssignment)
		if !ok || len(cla.GetEndpoints()) == 0 || len(cla.GetEndpoints()[0].GetLbEndpoints()) == 0 {
			return false
		}
	}
	return true
}
