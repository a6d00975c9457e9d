package envoyconfig_test

import (
	"context"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/conditions"
	"github.com/portico-dev/portico/nodeagent/xds/xdstest"
)

const timeout = 20 * time.Second

// condition reads a condition of an EnvoyConfig or ClusterEnvoyConfig.
func condition(g Gomega, obj client.Object, t v1alpha1.ConditionType) metav1.Condition {
	g.Expect(k8s.Get(context.Background(), client.ObjectKeyFromObject(obj), obj)).To(Succeed())
	var st v1alpha1.EnvoyConfigStatus
	switch o := obj.(type) {
	case *v1alpha1.EnvoyConfig:
		st = o.Status
	case *v1alpha1.ClusterEnvoyConfig:
		st = o.Status
	}
	c := conditions.Get(st.Conditions, t)
	g.Expect(c).NotTo(BeNil(), "condition %s", t)
	return *c
}

func programmed(t *testing.T, obj client.Object) {
	t.Helper()
	Eventually(func(g Gomega) {
		a := condition(g, obj, v1alpha1.ConditionAccepted)
		g.Expect(a.Status).To(Equal(metav1.ConditionTrue), a.Message)
		p := condition(g, obj, v1alpha1.ConditionProgrammed)
		g.Expect(p.Status).To(Equal(metav1.ConditionTrue), p.Message)
		g.Expect(p.ObservedGeneration).To(Equal(obj.GetGeneration()))
	}).WithTimeout(timeout).Should(Succeed())
}

// served is what the node's proxy accepted, by name.
func served[T any](typeURL, name string) func(Gomega) T {
	return func(g Gomega) T {
		m, ok := node.Proxy.State(typeURL).Resources[name]
		g.Expect(ok).To(BeTrue(), "%s %q not served", typeURL, name)
		out, ok := m.(T)
		g.Expect(ok).To(BeTrue())
		return out
	}
}

// TestS6TrafficShifting applies Cilium's helloworld example (apiVersion and kind
// changed) with its three Services and the versions' endpoints, and checks what the
// node's proxy is served: the 90/10 split with the retry policy, the outlier
// detection of both clusters, each version's endpoints, and the listener bound to
// its proxy port for the redirect of helloworld's ClusterIP.
func TestS6TrafficShifting(t *testing.T) {
	RegisterTestingT(t)
	ctx := context.Background()
	var ec *v1alpha1.EnvoyConfig
	for _, o := range objectsOf(t, "cilium-helloworld") {
		if svc, ok := o.(*corev1.Service); ok {
			svc.Spec.ClusterIP, svc.Spec.ClusterIPs = "", nil // the apiserver allocates them
		}
		Expect(k8s.Create(ctx, o)).To(Succeed())
		if c, ok := o.(*v1alpha1.EnvoyConfig); ok {
			ec = c
		}
	}
	endpoints(t, "default", "helloworld-v1", "http", 5000, "10.1.0.1", "10.1.0.2")
	endpoints(t, "default", "helloworld-v2", "http", 5000, "10.2.0.1")
	programmed(t, ec)

	Eventually(func(g Gomega) {
		rc := served[*routev3.RouteConfiguration](resourcev3.RouteType, "default/envoy-lb-listener/lb_route")(g)
		action := rc.GetVirtualHosts()[0].GetRoutes()[0].GetRoute()
		wc := action.GetWeightedClusters().GetClusters()
		g.Expect(wc).To(HaveLen(2))
		g.Expect(wc[0].GetName()).To(Equal("default/helloworld-v1"))
		g.Expect(wc[0].GetWeight().GetValue()).To(BeEquivalentTo(90))
		g.Expect(wc[1].GetName()).To(Equal("default/helloworld-v2"))
		g.Expect(wc[1].GetWeight().GetValue()).To(BeEquivalentTo(10))
		rp := action.GetRetryPolicy()
		g.Expect(rp.GetRetryOn()).To(Equal("5xx"))
		g.Expect(rp.GetNumRetries().GetValue()).To(BeEquivalentTo(3))
		g.Expect(rp.GetPerTryTimeout().AsDuration()).To(Equal(time.Second))

		for name, timeout := range map[string]time.Duration{"default/helloworld-v1": 5 * time.Second, "default/helloworld-v2": 3 * time.Second} {
			c := served[*clusterv3.Cluster](resourcev3.ClusterType, name)(g)
			g.Expect(c.GetConnectTimeout().AsDuration()).To(Equal(timeout))
			g.Expect(c.GetOutlierDetection().GetSplitExternalLocalOriginErrors()).To(BeTrue())
			g.Expect(c.GetOutlierDetection().GetConsecutiveLocalOriginFailure().GetValue()).To(BeEquivalentTo(2))
		}
		g.Expect(xdstest.EndpointAddresses(served[*endpointv3.ClusterLoadAssignment](resourcev3.EndpointType, "default/helloworld-v1")(g))).
			To(ConsistOf("10.1.0.1:5000", "10.1.0.2:5000"))
		g.Expect(xdstest.EndpointAddresses(served[*endpointv3.ClusterLoadAssignment](resourcev3.EndpointType, "default/helloworld-v2")(g))).
			To(ConsistOf("10.2.0.1:5000"))

		l := served[*listenerv3.Listener](resourcev3.ListenerType, "default/envoy-lb-listener/envoy-lb-listener")(g)
		g.Expect(l.GetAddress().GetSocketAddress().GetAddress()).To(Equal("127.0.0.1"))
		g.Expect(l.GetAddress().GetSocketAddress().GetPortValue()).NotTo(BeZero(), "bound to its proxy port")
		g.Expect(l.GetTransparent().GetValue()).To(BeTrue())
	}).WithTimeout(timeout).Should(Succeed())

	// The redirect of the Service's ClusterIP into the listener is in the config.
	svc := &corev1.Service{}
	Expect(k8s.Get(ctx, client.ObjectKey{Namespace: "default", Name: "helloworld"}, svc)).To(Succeed())
	npc := &v1alpha1.NodeProxyConfig{}
	Expect(k8s.Get(ctx, client.ObjectKey{Name: "envoyconfig.default.envoy-lb-listener"}, npc)).To(Succeed())
	Expect(npc.Spec.Redirects).To(ContainElement(v1alpha1.Redirect{Name: "default/helloworld:5000@" + svc.Spec.ClusterIP,
		VIP: svc.Spec.ClusterIP, Port: 5000, Protocol: v1alpha1.ProtocolTCP, Listener: "default/envoy-lb-listener/envoy-lb-listener"}))
}

// TestS7CircuitBreaking applies Cilium's circuit-breaker example (a
// ClusterEnvoyConfig, apiVersion and kind changed): the cluster's thresholds are
// served, and its EDS name "default/echo-service:8080" gets the Service's endpoints
// (the endpoints of redirected Services are served, as in Cilium).
func TestS7CircuitBreaking(t *testing.T) {
	RegisterTestingT(t)
	ctx := context.Background()
	var cec *v1alpha1.ClusterEnvoyConfig
	for _, o := range objectsOf(t, "cilium-circuit-breaker") {
		if svc, ok := o.(*corev1.Service); ok {
			svc.Spec = corev1.ServiceSpec{Ports: svc.Spec.Ports, Selector: svc.Spec.Selector}
			svc.Status = corev1.ServiceStatus{}
		}
		Expect(k8s.Create(ctx, o)).To(Succeed())
		if c, ok := o.(*v1alpha1.ClusterEnvoyConfig); ok {
			cec = c
		}
	}
	endpoints(t, "default", "echo-service", "http", 8080, "10.3.0.1")
	programmed(t, cec)
	Eventually(func(g Gomega) {
		c := served[*clusterv3.Cluster](resourcev3.ClusterType, "default/echo-service")(g)
		th := c.GetCircuitBreakers().GetThresholds()
		g.Expect(th).To(HaveLen(1))
		g.Expect(th[0].GetPriority().String()).To(Equal("DEFAULT"))
		g.Expect(th[0].GetMaxRequests().GetValue()).To(BeEquivalentTo(2))
		g.Expect(th[0].GetMaxPendingRequests().GetValue()).To(BeEquivalentTo(1))
		g.Expect(c.GetEdsClusterConfig().GetServiceName()).To(Equal("default/echo-service:8080"))
		g.Expect(xdstest.EndpointAddresses(served[*endpointv3.ClusterLoadAssignment](resourcev3.EndpointType, "default/echo-service:8080")(g))).
			To(ConsistOf("10.3.0.1:8080"))
		served[*listenerv3.Listener](resourcev3.ListenerType, "/envoy-circuit-breaker/envoy-lb-listener")(g)
	}).WithTimeout(timeout).Should(Succeed())
}
