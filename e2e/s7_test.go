package e2e

import (
	"fmt"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
	"k8s.io/apimachinery/pkg/types"

	"github.com/portico-dev/portico/nodeagent/xds/xdstest"
)

// s7Thresholds are the circuit breakers S7 asks for, exactly.
var s7Thresholds = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
	Priority: corev3.RoutingPriority_DEFAULT, MaxRequests: wrapperspb.UInt32(2), MaxPendingRequests: wrapperspb.UInt32(1)}}}

func describeS7() {
	Describe("S7: circuit breaking with ClusterEnvoyConfig", Label("S7"), Ordered, func() {
		BeforeAll(func(ctx SpecContext) {
			d := backendDeployment("echo-service", map[string]string{"app": "echo-service"})
			ensure(ctx, d)
			DeferCleanup(func(ctx SpecContext) { remove(ctx, d) })
			applyFixture("s7-circuit-breaker.yaml")
		})

		It("accepts the ClusterEnvoyConfig and shows it programmed on every node", func() {
			n := len(cluster.Nodes())
			Eventually(kubectlFn("get", "pcec", "envoy-circuit-breaker")).WithTimeout(60 * time.Second).
				Should(MatchRegexp(`(?m)^envoy-circuit-breaker\s+True\s+True\s+`))
			Eventually(kubectlFn("get", "pcec", "envoy-circuit-breaker", "-o", `jsonpath={.status.conditions[?(@.type=="Programmed")].message}`)).
				Should(Equal(fmt.Sprintf("Programmed on %d/%d nodes", n, n)))
			Eventually(kubectlFn("get", "npc", "clusterenvoyconfig.envoy-circuit-breaker")).
				Should(MatchRegexp(`(?m)^clusterenvoyconfig\.envoy-circuit-breaker\s+envoyconfig\s+True\s+`))
		})

		// Two concurrent clients seeing a few 503s and four seeing many more is Envoy's
		// enforcement of these thresholds: it needs a real Envoy, which this suite does
		// not run (the stand-in only answers which cluster a request would go to). What
		// is checked is that every node hands Envoy exactly the thresholds asked for.
		It("serves the cluster with exactly its circuit breakers, and echo-service's endpoints, on every node", func(ctx SpecContext) {
			want := readyEndpoints(ctx, types.NamespacedName{Namespace: "default", Name: "echo-service"})
			expectServedOnEveryNode(ctx, func(g Gomega, c *xdstest.Client) {
				cl := served[*clusterv3.Cluster](g, c, resourcev3.ClusterType, "default/echo-service")
				g.Expect(proto.Equal(cl.GetCircuitBreakers(), s7Thresholds)).To(BeTrue(),
					"circuit breakers served: %v; asked for: %v", cl.GetCircuitBreakers(), s7Thresholds)
				g.Expect(cl.GetEdsClusterConfig().GetServiceName()).To(Equal("default/echo-service:8080"))
				g.Expect(xdstest.EndpointAddresses(served[*endpointv3.ClusterLoadAssignment](g, c, resourcev3.EndpointType, "default/echo-service:8080"))).
					To(ConsistOf(want))
				// The listener echo-service is redirected to, named for the cluster-scoped config.
				served[*listenerv3.Listener](g, c, resourcev3.ListenerType, "/envoy-circuit-breaker/envoy-lb-listener")
			})
		})
	})
}
