package gateway_test

import (
	"context"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/controllers/gateway"
	translate "github.com/portico-dev/portico/internal/translate/gateway"
)

func classAccepted(g Gomega, name string) metav1.Condition {
	gc := &gatewayv1.GatewayClass{}
	g.Expect(k8s.Get(context.Background(), client.ObjectKey{Name: name}, gc)).To(Succeed())
	c := condition(g, gc.Status.Conditions, "Accepted")
	g.Expect(c.ObservedGeneration).To(Equal(gc.Generation))
	return c
}

func npcSelector(g Gomega, name string) *metav1.LabelSelector {
	npc := &v1alpha1.NodeProxyConfig{}
	g.Expect(k8s.Get(context.Background(), client.ObjectKey{Name: name}, npc)).To(Succeed())
	return npc.Spec.NodeSelector
}

// TestClassParameters: a class naming a GatewayClassConfig is refused with
// the field while the config is missing or invalid and its Gateway gets
// nothing; once the config is fixed the class is accepted, the Gateway's
// Service has the config's Service settings and its configs (listeners and
// route) the node selector; a change of the config reaches them.
func TestClassParameters(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, "params", nil)
	class := &gatewayv1.GatewayClass{ObjectMeta: metav1.ObjectMeta{Name: "edge"}, Spec: gatewayv1.GatewayClassSpec{
		ControllerName: "portico.dev/gateway-controller",
		ParametersRef:  &gatewayv1.ParametersReference{Group: "portico.dev", Kind: "GatewayClassConfig", Name: "edge-params"}}}
	gw := httpGateway(ns, "edge-gw", gatewayv1.NamespacesFromSame)
	gw.Spec.GatewayClassName = "edge"
	create(t, class, gw, service(ns, "web", 8080), route(ns, "web", ns, "edge-gw", backendRef("", "web", 8080)))
	gwKey := types.NamespacedName{Namespace: ns, Name: "edge-gw"}
	gwConfig := translate.GatewayConfigName(gwKey)
	routeConfig := translate.RouteConfigName(translate.RouteKey{Kind: translate.KindHTTPRoute, Namespace: ns, Name: "web"}, gwKey)
	svcKey := client.ObjectKey{Namespace: ns, Name: gateway.ServiceName("edge-gw")}

	g := NewWithT(t)
	g.Eventually(func(g Gomega) {
		c := classAccepted(g, "edge")
		g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(c.Reason).To(Equal("InvalidParameters"))
		g.Expect(c.Message).To(Equal(`spec.parametersRef.name: Not found: "edge-params"`))
	}).WithTimeout(timeout).Should(Succeed())
	// The Gateway of a refused class gets no Service and no config.
	g.Consistently(func(g Gomega) {
		g.Expect(apierrors.IsNotFound(k8s.Get(ctx, svcKey, &corev1.Service{}))).To(BeTrue(), "Service made for a refused class")
		g.Expect(apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Name: gwConfig}, &v1alpha1.NodeProxyConfig{}))).To(BeTrue(), "config made for a refused class")
	}).WithTimeout(2 * time.Second).Should(Succeed())

	// A config the webhook would refuse (as with the webhook off): still
	// refused, now naming the config's fields.
	cfg := &v1alpha1.GatewayClassConfig{ObjectMeta: metav1.ObjectMeta{Name: "edge-params", Labels: map[string]string{bypassLabel: "true"}},
		Spec: v1alpha1.GatewayClassConfigSpec{
			Service:      &v1alpha1.GatewayServiceConfig{Labels: map[string]string{gateway.LabelManagedBy: "me"}},
			NodeSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "zone", Operator: "Near"}}}}}
	create(t, cfg)
	g.Eventually(func(g Gomega) {
		c := classAccepted(g, "edge")
		g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(c.Reason).To(Equal("InvalidParameters"))
		for _, want := range []string{"GatewayClassConfig edge-params", "spec.nodeSelector.matchExpressions[0].operator", "spec.service.labels[app.kubernetes.io/managed-by]"} {
			g.Expect(c.Message).To(ContainSubstring(want))
		}
	}).WithTimeout(timeout).Should(Succeed())
	out := kubectl(t, "get", "events", "--field-selector", "involvedObject.name=edge,reason=InvalidParameters")
	g.Expect(out).To(ContainSubstring("spec.nodeSelector"))

	// Fixed (through the webhook this time).
	selector := &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/hostname": nodeName}}
	g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(cfg), cfg)).To(Succeed())
	cfg.Labels = nil
	cfg.Spec = v1alpha1.GatewayClassConfigSpec{
		Service: &v1alpha1.GatewayServiceConfig{ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal,
			LoadBalancerClass: ptr.To("portico.dev/lbipam"),
			Labels:            map[string]string{"team": "edge"}, Annotations: map[string]string{"example.com/owner": "web", "example.com/keep": "yes"}},
		NodeSelector: selector}
	g.Expect(k8s.Update(ctx, cfg)).To(Succeed())
	g.Eventually(func(g Gomega) {
		c := classAccepted(g, "edge")
		g.Expect(c.Status).To(Equal(metav1.ConditionTrue), c.Message)
		g.Expect(c.Message).To(ContainSubstring("GatewayClassConfig edge-params"))
		svc := &corev1.Service{}
		g.Expect(k8s.Get(ctx, svcKey, svc)).To(Succeed())
		g.Expect(svc.Spec.Type).To(Equal(corev1.ServiceTypeLoadBalancer))
		g.Expect(svc.Spec.ExternalTrafficPolicy).To(Equal(corev1.ServiceExternalTrafficPolicyLocal))
		g.Expect(svc.Spec.LoadBalancerClass).To(Equal(ptr.To("portico.dev/lbipam")))
		g.Expect(svc.Labels).To(HaveKeyWithValue("team", "edge"))
		g.Expect(svc.Annotations).To(HaveKeyWithValue("example.com/owner", "web"))
		g.Expect(npcSelector(g, gwConfig)).To(Equal(selector))
		g.Expect(npcSelector(g, routeConfig)).To(Equal(selector))
		// The selected node serves it: Programmed as without parameters.
		gw := getGateway(g, ns, "edge-gw")
		expectCond(g, gw.Status.Conditions, "Programmed", metav1.ConditionTrue, "Programmed", gw.Generation)
	}).WithTimeout(timeout).Should(Succeed())

	// A change of the config alone reaches the Gateway: a dropped annotation
	// goes, a new selector is on both configs, and a new load balancer class
	// replaces the Service (the API server keeps the class immutable), which
	// then waits for that load balancer.
	moved := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
		{Key: "kubernetes.io/hostname", Operator: metav1.LabelSelectorOpIn, Values: []string{nodeName, "other"}}}}
	g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(cfg), cfg)).To(Succeed())
	delete(cfg.Spec.Service.Annotations, "example.com/owner")
	cfg.Spec.Service.LoadBalancerClass = ptr.To("example.com/other")
	cfg.Spec.NodeSelector = moved
	g.Expect(k8s.Update(ctx, cfg)).To(Succeed())
	g.Eventually(func(g Gomega) {
		svc := &corev1.Service{}
		g.Expect(k8s.Get(ctx, svcKey, svc)).To(Succeed())
		g.Expect(svc.Spec.LoadBalancerClass).To(Equal(ptr.To("example.com/other")))
		g.Expect(svc.Annotations).NotTo(HaveKey("example.com/owner"))
		g.Expect(svc.Annotations).To(HaveKeyWithValue("example.com/keep", "yes"))
		g.Expect(npcSelector(g, gwConfig)).To(Equal(moved))
		g.Expect(npcSelector(g, routeConfig)).To(Equal(moved))
		gw := getGateway(g, ns, "edge-gw")
		c := condition(g, gw.Status.Conditions, "Programmed")
		g.Expect(c.Reason).To(Equal("AddressNotAssigned"))
		g.Expect(c.Message).To(ContainSubstring("load balancer of class example.com/other"))
	}).WithTimeout(timeout).Should(Succeed())

	// Type ClusterIP: the Service is replaced again, and the Gateway's address
	// is its cluster IP, which the selected node serves.
	g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(cfg), cfg)).To(Succeed())
	cfg.Spec.Service = &v1alpha1.GatewayServiceConfig{Type: corev1.ServiceTypeClusterIP}
	g.Expect(k8s.Update(ctx, cfg)).To(Succeed())
	g.Eventually(func(g Gomega) {
		svc := &corev1.Service{}
		g.Expect(k8s.Get(ctx, svcKey, svc)).To(Succeed())
		g.Expect(svc.Spec.Type).To(Equal(corev1.ServiceTypeClusterIP))
		g.Expect(svc.Spec.LoadBalancerClass).To(BeNil())
		g.Expect(svc.Spec.ClusterIP).NotTo(BeEmpty())
		gw := getGateway(g, ns, "edge-gw")
		g.Expect(gw.Status.Addresses).To(Equal([]gatewayv1.GatewayStatusAddress{{Type: ptrTo(gatewayv1.IPAddressType), Value: svc.Spec.ClusterIP}}))
		expectCond(g, gw.Status.Conditions, "Programmed", metav1.ConditionTrue, "Programmed", gw.Generation)
	}).WithTimeout(timeout).Should(Succeed())

	// The config deleted: the class says so, and its Gateway keeps the last
	// accepted parameters rather than losing its Service and address.
	svc := &corev1.Service{}
	g.Expect(k8s.Get(ctx, svcKey, svc)).To(Succeed())
	g.Expect(k8s.Delete(ctx, cfg)).To(Succeed())
	g.Eventually(func(g Gomega) {
		c := classAccepted(g, "edge")
		g.Expect(c.Reason).To(Equal("InvalidParameters"))
		g.Expect(c.Message).To(Equal(`spec.parametersRef.name: Not found: "edge-params"; its Gateways keep the parameters last accepted until this is fixed`))
	}).WithTimeout(timeout).Should(Succeed())
	g.Consistently(func(g Gomega) {
		cur := &corev1.Service{}
		g.Expect(k8s.Get(ctx, svcKey, cur)).To(Succeed())
		g.Expect(cur.UID).To(Equal(svc.UID))
		g.Expect(npcSelector(g, gwConfig)).To(Equal(moved))
		g.Expect(npcSelector(g, routeConfig)).To(Equal(moved))
	}).WithTimeout(2 * time.Second).Should(Succeed())
}

// TestGatewayClassConfigWebhook: admission refuses what the controller could
// not apply, naming every field; the schema refuses what CEL can see.
func TestGatewayClassConfigWebhook(t *testing.T) {
	ctx := context.Background()
	bad := &v1alpha1.GatewayClassConfig{ObjectMeta: metav1.ObjectMeta{Name: "refused"}, Spec: v1alpha1.GatewayClassConfigSpec{
		Service: &v1alpha1.GatewayServiceConfig{Annotations: map[string]string{"lbipam.portico.dev/ips": "192.168.10.250"}},
		NodeSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "zone", Operator: metav1.LabelSelectorOpIn}}}}}
	err := k8s.Create(ctx, bad)
	if !apierrors.IsInvalid(err) {
		t.Fatalf("invalid config: got %v, want Invalid", err)
	}
	for _, want := range []string{"spec.service.annotations[lbipam.portico.dev/ips]", "spec.nodeSelector.matchExpressions[0].values"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not name %s", err, want)
		}
	}
	bad.Spec = v1alpha1.GatewayClassConfigSpec{Service: &v1alpha1.GatewayServiceConfig{Type: corev1.ServiceTypeClusterIP, LoadBalancerClass: ptr.To("example.com/lb")}}
	err = k8s.Create(ctx, bad)
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "spec.service") || !strings.Contains(err.Error(), "loadBalancerClass needs type LoadBalancer") {
		t.Errorf("ClusterIP with a load balancer class: got %v", err)
	}
	if err := k8s.Get(ctx, client.ObjectKey{Name: "refused"}, &v1alpha1.GatewayClassConfig{}); !apierrors.IsNotFound(err) {
		t.Errorf("a refused config exists: %v", err)
	}
}

// TestClassParametersSample: the sample class and its parameters are
// accepted as written.
func TestClassParametersSample(t *testing.T) {
	kubectl(t, "apply", "-f", sample("gatewayclass-edge.yaml"))
	NewWithT(t).Eventually(func(g Gomega) {
		c := classAccepted(g, "portico-edge")
		g.Expect(c.Status).To(Equal(metav1.ConditionTrue), c.Message)
	}).WithTimeout(timeout).Should(Succeed())
}
