package gateway_test

import (
	"context"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/testcerts"
)

// TestBadInputs: listener ports that clash, a regex that does not compile, a
// backendRef of an unsupported kind and a certificate in another namespace
// without a grant each get the spec's condition and reason, while a good
// listener of the same Gateway, a good rule of the same route and every other
// Gateway keep working, and no node rejects anything.
func TestBadInputs(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t, "bad-inputs", nil)
	certs := newNamespace(t, "bad-inputs-certs", nil)
	create(t, service(ns, "web", 80),
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: certs, Name: "cert"}, Type: corev1.SecretTypeTLS, Data: testcerts.TLSData(t, "example.com")})
	mode := gatewayv1.TLSModeTerminate
	gw := &gatewayv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "gw"}, Spec: gatewayv1.GatewaySpec{GatewayClassName: "portico",
		Listeners: []gatewayv1.Listener{
			{Name: "http", Protocol: gatewayv1.HTTPProtocolType, Port: 80},
			{Name: "clash-http", Protocol: gatewayv1.HTTPProtocolType, Port: 8443},
			{Name: "clash-https", Protocol: gatewayv1.HTTPSProtocolType, Port: 8443, Hostname: ptrTo(gatewayv1.Hostname("a.example.com")),
				TLS: &gatewayv1.ListenerTLSConfig{Mode: &mode, CertificateRefs: []gatewayv1.SecretObjectReference{{Name: "cert", Namespace: ptrTo(gatewayv1.Namespace(certs))}}}},
			{Name: "https-no-grant", Protocol: gatewayv1.HTTPSProtocolType, Port: 443,
				TLS: &gatewayv1.ListenerTLSConfig{Mode: &mode, CertificateRefs: []gatewayv1.SecretObjectReference{{Name: "cert", Namespace: ptrTo(gatewayv1.Namespace(certs))}}}},
		}}}
	bad := route(ns, "bad", ns, "gw", backendRef("", "web", 80))
	bad.Spec.Rules = []gatewayv1.HTTPRouteRule{
		{Matches: []gatewayv1.HTTPRouteMatch{{Path: &gatewayv1.HTTPPathMatch{Type: ptrTo(gatewayv1.PathMatchRegularExpression), Value: ptrTo("/(unclosed")}}},
			BackendRefs: []gatewayv1.HTTPBackendRef{backendRef("", "web", 80)}},
		{Matches: []gatewayv1.HTTPRouteMatch{{Path: &gatewayv1.HTTPPathMatch{Type: ptrTo(gatewayv1.PathMatchPathPrefix), Value: ptrTo("/bucket")}}},
			BackendRefs: []gatewayv1.HTTPBackendRef{{BackendRef: gatewayv1.BackendRef{BackendObjectReference: gatewayv1.BackendObjectReference{
				Group: ptrTo(gatewayv1.Group("storage.example.com")), Kind: ptrTo(gatewayv1.Kind("Bucket")), Name: "b"}}}}},
		{BackendRefs: []gatewayv1.HTTPBackendRef{backendRef("", "web", 80)}},
	}
	create(t, gw, bad)

	g.Eventually(func(g Gomega) {
		gw := getGateway(g, ns, "gw")
		expectCond(g, gw.Status.Conditions, "Accepted", metav1.ConditionTrue, "ListenersNotValid", gw.Generation)
		expectCond(g, gw.Status.Conditions, "Programmed", metav1.ConditionTrue, "Programmed", gw.Generation)
		byName := map[string]gatewayv1.ListenerStatus{}
		for _, l := range gw.Status.Listeners {
			byName[string(l.Name)] = l
		}
		expectCond(g, byName["http"].Conditions, "Programmed", metav1.ConditionTrue, "Programmed", gw.Generation)
		for _, n := range []string{"clash-http", "clash-https"} {
			expectCond(g, byName[n].Conditions, "Conflicted", metav1.ConditionTrue, "ProtocolConflict", gw.Generation)
			expectCond(g, byName[n].Conditions, "Programmed", metav1.ConditionFalse, "Invalid", gw.Generation)
		}
		expectCond(g, byName["https-no-grant"].Conditions, "ResolvedRefs", metav1.ConditionFalse, "RefNotPermitted", gw.Generation)
		expectCond(g, byName["https-no-grant"].Conditions, "Programmed", metav1.ConditionFalse, "Invalid", gw.Generation)

		r := getRoute(g, ns, "bad")
		conds := parentConds(g, r)
		expectCond(g, conds, "Accepted", metav1.ConditionTrue, "Accepted", r.Generation)
		expectCond(g, conds, "PartiallyInvalid", metav1.ConditionTrue, "UnsupportedValue", r.Generation)
		g.Expect(condition(g, conds, "PartiallyInvalid").Message).To(HavePrefix("Dropped Rule 0: spec.rules[0].matches[0].path"))
		expectCond(g, conds, "ResolvedRefs", metav1.ConditionFalse, "InvalidKind", r.Generation)
	}).WithTimeout(timeout).Should(Succeed())

	table := "gateway." + ns + ".gw/80"
	g.Eventually(func(g Gomega) {
		g.Expect(clustersFor(g, table, "/bucket/x").DirectStatus).To(Equal(uint32(500)))
		g.Expect(clustersFor(g, table, "/(unclosed").Clusters).To(Equal([]string{ns + "/web:80"})) // the good rule
	}).WithTimeout(timeout).Should(Succeed())

	// Nothing else stopped: scenario S5's Gateway is still programmed and the
	// node rejected no config.
	gw5 := getGateway(g, "default", "my-gateway")
	expectCond(g, gw5.Status.Conditions, "Programmed", metav1.ConditionTrue, "Programmed", gw5.Generation)
	np := &v1alpha1.NodeProxy{}
	g.Expect(k8s.Get(context.Background(), client.ObjectKey{Name: nodeName}, np)).To(Succeed())
	g.Expect(np.Status.Rejected).To(BeEmpty())

	// The grant fixes the certificate: the listener is served.
	create(t, &gatewayv1.ReferenceGrant{ObjectMeta: metav1.ObjectMeta{Namespace: certs, Name: "gateways"}, Spec: gatewayv1.ReferenceGrantSpec{
		From: []gatewayv1.ReferenceGrantFrom{{Group: gatewayv1.GroupName, Kind: "Gateway", Namespace: gatewayv1.Namespace(ns)}},
		To:   []gatewayv1.ReferenceGrantTo{{Group: "", Kind: "Secret"}}}})
	g.Eventually(func(g Gomega) {
		gw := getGateway(g, ns, "gw")
		for _, l := range gw.Status.Listeners {
			if l.Name == "https-no-grant" {
				expectCond(g, l.Conditions, "ResolvedRefs", metav1.ConditionTrue, "ResolvedRefs", gw.Generation)
				expectCond(g, l.Conditions, "Programmed", metav1.ConditionTrue, "Programmed", gw.Generation)
			}
		}
	}).WithTimeout(timeout).Should(Succeed())
}
