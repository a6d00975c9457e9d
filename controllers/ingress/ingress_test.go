package ingress_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/controllers/ingress"
	"github.com/portico-dev/portico/internal/conditions"
	"github.com/portico-dev/portico/internal/testcerts"
	"github.com/portico-dev/portico/internal/testenv"
	translate "github.com/portico-dev/portico/internal/translate/ingress"
)

const timeout = 15 * time.Second

func newNamespace(t *testing.T, name string) string {
	t.Helper()
	if err := k8s.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
		t.Fatal(err)
	}
	return name
}

func backend(t *testing.T, ns, name string, port int32) {
	t.Helper()
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: corev1.ServiceSpec{
		Selector: map[string]string{"app": name}, Ports: []corev1.ServicePort{{Name: "http", Port: port}}}}
	if err := k8s.Create(context.Background(), svc); err != nil {
		t.Fatal(err)
	}
}

type ingOpt func(*networkingv1.Ingress)

func annotated(k, v string) ingOpt {
	return func(i *networkingv1.Ingress) {
		if i.Annotations == nil {
			i.Annotations = map[string]string{}
		}
		i.Annotations[k] = v
	}
}

func className(c string) ingOpt {
	return func(i *networkingv1.Ingress) { i.Spec.IngressClassName = ptr.To(c) }
}

// newIngress creates an Ingress of class portico routing each "path=service:port".
func newIngress(t *testing.T, ns, name string, routes []string, opts ...ingOpt) *networkingv1.Ingress {
	t.Helper()
	ing := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: networkingv1.IngressSpec{IngressClassName: ptr.To("portico")}}
	http := &networkingv1.HTTPIngressRuleValue{}
	for _, r := range routes {
		var path, svc string
		var port int32
		if _, err := fmt.Sscanf(strings.NewReplacer("=", " ", ":", " ").Replace(r), "%s %s %d", &path, &svc, &port); err != nil {
			t.Fatal(err)
		}
		http.Paths = append(http.Paths, networkingv1.HTTPIngressPath{Path: path, PathType: ptr.To(networkingv1.PathTypePrefix),
			Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: svc, Port: networkingv1.ServiceBackendPort{Number: port}}}})
	}
	ing.Spec.Rules = []networkingv1.IngressRule{{IngressRuleValue: networkingv1.IngressRuleValue{HTTP: http}}}
	for _, o := range opts {
		o(ing)
	}
	if err := k8s.Create(context.Background(), ing); err != nil {
		t.Fatal(err)
	}
	return ing
}

func ingressIPs(g Gomega, ns, name string) []string {
	ing := &networkingv1.Ingress{}
	g.Expect(k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, ing)).To(Succeed())
	var out []string
	for _, in := range ing.Status.LoadBalancer.Ingress {
		out = append(out, in.IP)
	}
	return out
}

func npc(g Gomega, name string) *v1alpha1.NodeProxyConfig {
	c := &v1alpha1.NodeProxyConfig{}
	g.Expect(k8s.Get(context.Background(), client.ObjectKey{Name: name}, c)).To(Succeed())
	return c
}

func gone(obj client.Object) func() bool {
	return func() bool {
		return apierrors.IsNotFound(k8s.Get(context.Background(), client.ObjectKeyFromObject(obj), obj))
	}
}

// TestScenariosS3S4 walks scenarios S3 and S4 against a real apiserver with
// LB-IPAM running: shared Ingresses share .211, a dedicated one gets its own
// Service and .212, switching modes and deleting clean up exactly what was made,
// and an Ingress of another class is left alone.
func TestScenariosS3S4(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t, "bookinfo")
	backend(t, ns, "details", 9080)
	backend(t, ns, "productpage", 9080)
	backend(t, ns, "webpod", 80)

	// The controller created its IngressClass.
	ic := &networkingv1.IngressClass{}
	g.Eventually(func() error { return k8s.Get(ctx, client.ObjectKey{Name: "portico"}, ic) }).WithTimeout(timeout).Should(Succeed())
	g.Expect(ic.Spec.Controller).To(Equal(ingress.ControllerName))

	// S3: basic-ingress gets the shared address.
	basic := newIngress(t, ns, "basic-ingress", []string{"/details=details:9080", "/=productpage:9080"})
	g.Eventually(func(g Gomega) { g.Expect(ingressIPs(g, ns, "basic-ingress")).To(Equal([]string{"192.168.10.211"})) }).WithTimeout(timeout).Should(Succeed())
	shared := &corev1.Service{}
	g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: installNS, Name: ingress.SharedServiceName}, shared)).To(Succeed())
	g.Expect(shared.Annotations).To(HaveKeyWithValue("lbipam.portico.dev/ip-mode", "Proxy"))
	g.Expect(shared.Status.LoadBalancer.Ingress[0].IPMode).To(Equal(ptr.To(corev1.LoadBalancerIPModeProxy)))

	basicNPC := translate.ConfigName(client.ObjectKeyFromObject(basic))
	g.Expect(basicNPC).To(Equal("ingress.bookinfo.basic-ingress"))
	g.Eventually(func(g Gomega) {
		c := npc(g, basicNPC)
		g.Expect(c.Labels).To(HaveKeyWithValue(v1alpha1.LabelProducer, "ingress"))
		g.Expect(c.Labels).To(HaveKeyWithValue(v1alpha1.LabelSourceNamespace, ns))
		g.Expect(c.Labels).To(HaveKeyWithValue(v1alpha1.LabelSourceName, "basic-ingress"))
		g.Expect(c.Spec.RouteFragments).To(HaveLen(1))
		g.Expect(c.Spec.RouteFragments[0].Routes).To(HaveLen(2))
		g.Expect(string(c.Spec.RouteFragments[0].Routes[0].Route.Raw)).To(ContainSubstring(`"path_separated_prefix":"/details"`))
		g.Expect(c.Spec.Envoy.BackendServices).To(HaveLen(2))
		s := npc(g, translate.SharedConfigName)
		g.Expect(s.Spec.Redirects).To(ContainElement(HaveField("VIP", "192.168.10.211")))
	}).WithTimeout(timeout).Should(Succeed())

	// S4: a second shared Ingress shares .211; a dedicated one gets its own Service and .212.
	newIngress(t, ns, "basic-ingress2", []string{"/=webpod:80"})
	webpod := newIngress(t, ns, "webpod-ingress", []string{"/=webpod:80"},
		annotated(translate.AnnotationLoadBalancerMode, "dedicated"), annotated("lbipam.portico.dev/sharing-key", "webpod"))
	g.Eventually(func(g Gomega) {
		g.Expect(ingressIPs(g, ns, "basic-ingress2")).To(Equal([]string{"192.168.10.211"}))
		g.Expect(ingressIPs(g, ns, "webpod-ingress")).To(Equal([]string{"192.168.10.212"}))
	}).WithTimeout(timeout).Should(Succeed())
	dedicated := &corev1.Service{}
	g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "portico-ingress-webpod-ingress"}, dedicated)).To(Succeed())
	g.Expect(metav1.IsControlledBy(dedicated, webpod)).To(BeTrue(), "owner references: %v", dedicated.OwnerReferences)
	g.Expect(dedicated.Annotations).To(HaveKeyWithValue("lbipam.portico.dev/sharing-key", "webpod"))
	g.Expect(dedicated.Annotations).To(HaveKeyWithValue("lbipam.portico.dev/ip-mode", "Proxy"))
	g.Eventually(func(g Gomega) {
		c := npc(g, "ingress.bookinfo.webpod-ingress")
		g.Expect(c.Spec.Redirects).To(ContainElement(HaveField("VIP", "192.168.10.212")))
	}).WithTimeout(timeout).Should(Succeed())

	out, err := env.Kubectl(ctx, "get", "ingress", "-n", ns)
	g.Expect(err).NotTo(HaveOccurred())
	t.Logf("kubectl get ingress:\n%s", out)
	g.Expect(out).To(MatchRegexp(`basic-ingress\s+portico\s+\*\s+192\.168\.10\.211\s+80`))
	g.Expect(out).To(MatchRegexp(`webpod-ingress\s+portico\s+\*\s+192\.168\.10\.212\s+80`))

	// An Ingress of another class is never touched.
	other := &networkingv1.IngressClass{ObjectMeta: metav1.ObjectMeta{Name: "nginx"}, Spec: networkingv1.IngressClassSpec{Controller: "k8s.io/ingress-nginx"}}
	g.Expect(k8s.Create(ctx, other)).To(Succeed())
	foreign := newIngress(t, ns, "foreign", []string{"/=webpod:80"}, className("nginx"))
	g.Consistently(func(g Gomega) {
		g.Expect(ingressIPs(g, ns, "foreign")).To(BeEmpty())
		g.Expect(apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Name: "ingress.bookinfo.foreign"}, &v1alpha1.NodeProxyConfig{}))).To(BeTrue())
		g.Expect(apierrors.IsNotFound(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "portico-ingress-foreign"}, &corev1.Service{}))).To(BeTrue())
	}).WithTimeout(2 * time.Second).Should(Succeed())
	// ... and deleting it removes nothing of ours.
	g.Expect(k8s.Delete(ctx, foreign)).To(Succeed())

	// Switching webpod-ingress to shared removes its Service and moves it to .211.
	g.Eventually(func() error {
		cur := &networkingv1.Ingress{}
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(webpod), cur); err != nil {
			return err
		}
		cur.Annotations[translate.AnnotationLoadBalancerMode] = "shared"
		return k8s.Update(ctx, cur)
	}).WithTimeout(timeout).Should(Succeed())
	g.Eventually(gone(dedicated)).WithTimeout(timeout).Should(BeTrue())
	g.Eventually(func(g Gomega) {
		g.Expect(ingressIPs(g, ns, "webpod-ingress")).To(Equal([]string{"192.168.10.211"}))
		c := npc(g, "ingress.bookinfo.webpod-ingress")
		g.Expect(c.Spec.Redirects).To(BeEmpty())
		g.Expect(c.Spec.RouteFragments[0].RouteTable).To(Equal("ingress-shared/http"))
	}).WithTimeout(timeout).Should(Succeed())

	// Deleting the Ingresses removes their configs, and nothing else.
	for _, name := range []string{"basic-ingress", "basic-ingress2", "webpod-ingress"} {
		g.Expect(k8s.Delete(ctx, &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}})).To(Succeed())
	}
	g.Eventually(func(g Gomega) {
		var list v1alpha1.NodeProxyConfigList
		g.Expect(k8s.List(ctx, &list, client.MatchingLabels{v1alpha1.LabelProducer: "ingress"})).To(Succeed())
		var names []string
		for _, c := range list.Items {
			names = append(names, c.Name)
		}
		g.Expect(names).To(Equal([]string{translate.SharedConfigName}))
	}).WithTimeout(timeout).Should(Succeed())
	for _, name := range []string{"details", "productpage", "webpod"} {
		g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &corev1.Service{})).To(Succeed())
	}
}

// TestDedicatedDeletion: deleting a dedicated Ingress deletes its Service (envtest
// has no garbage collector, so this is the controller's own sweep).
func TestDedicatedDeletion(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t, "dedicated-delete")
	backend(t, ns, "web", 80)
	ing := newIngress(t, ns, "solo", []string{"/=web:80"}, annotated(translate.AnnotationLoadBalancerMode, "dedicated"))
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "portico-ingress-solo"}}
	g.Eventually(func(g Gomega) { g.Expect(ingressIPs(g, ns, "solo")).To(HaveLen(1)) }).WithTimeout(timeout).Should(Succeed())
	g.Expect(k8s.Delete(ctx, ing)).To(Succeed())
	g.Eventually(gone(svc)).WithTimeout(timeout).Should(BeTrue())
	g.Eventually(gone(&v1alpha1.NodeProxyConfig{ObjectMeta: metav1.ObjectMeta{Name: "ingress.dedicated-delete.solo"}})).WithTimeout(timeout).Should(BeTrue())
}

// TestInvalidRuleEvent: a rule with a missing backend is reported on the Ingress
// with an Event naming the field, and the rest of the Ingress is served.
func TestInvalidRuleEvent(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t, "invalid-rule")
	backend(t, ns, "web", 80)
	newIngress(t, ns, "half", []string{"/missing=nope:80", "/=web:80"})
	g.Eventually(func(g Gomega) {
		var events eventsv1.EventList
		g.Expect(k8s.List(ctx, &events, client.InNamespace(ns))).To(Succeed())
		var notes []string
		for _, e := range events.Items {
			if e.Regarding.Name == "half" && e.Reason == string(translate.ReasonBackendNotFound) {
				notes = append(notes, e.Note)
			}
		}
		g.Expect(notes).To(ContainElement(ContainSubstring("spec.rules[0].http.paths[0].backend.service: Service invalid-rule/nope not found")))
		c := npc(g, "ingress.invalid-rule.half")
		g.Expect(c.Spec.Envoy.BackendServices).To(HaveLen(1))
	}).WithTimeout(timeout).Should(Succeed())
	g.Eventually(func(g Gomega) { g.Expect(ingressIPs(g, ns, "half")).To(Equal([]string{"192.168.10.211"})) }).WithTimeout(timeout).Should(Succeed())
}

// TestSamples: the Ingress samples are accepted by the apiserver as written.
func TestSamples(t *testing.T) {
	for _, f := range []string{"ingressclass.yaml", "ingress-basic.yaml", "ingress-dedicated.yaml", "ingress-tls.yaml"} {
		path := filepath.Join(testenv.RepoRoot(), "config", "samples", f)
		if out, err := env.Kubectl(context.Background(), "apply", "--dry-run=server", "-f", path); err != nil {
			t.Errorf("%s: %v\n%s", f, err, out)
		}
	}
}

// TestTLSSecretLifecycle: an Ingress naming a TLS Secret that does not exist is
// served over HTTP only and told why; once the Secret is created its config
// contributes an SNI filter chain for its host to the shared HTTPS listener,
// serves the Secret and attaches its routes to the HTTPS table; deleting the
// Secret takes all of that away again.
func TestTLSSecretLifecycle(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t, "tls-lifecycle")
	backend(t, ns, "web", 80)
	newIngress(t, ns, "secure", []string{"/=web:80"}, func(i *networkingv1.Ingress) {
		i.Spec.Rules[0].Host = "secure.example.com"
		i.Spec.TLS = []networkingv1.IngressTLS{{Hosts: []string{"secure.example.com"}, SecretName: "secure-tls"}}
	})
	const https = translate.SharedConfigName + "/https"
	servedOverTLS := func(g Gomega) bool {
		c := npc(g, "ingress.tls-lifecycle.secure")
		tables := 0
		for _, f := range c.Spec.RouteFragments {
			if f.RouteTable == https {
				tables++
			}
		}
		chains := 0
		for _, f := range c.Spec.FilterChainFragments {
			g.Expect(f.Listener).To(Equal(https))
			for _, fc := range f.FilterChains {
				g.Expect(string(fc.Raw)).To(ContainSubstring(`"server_names":["secure.example.com"]`))
				chains++
			}
		}
		secrets := 0
		if c.Spec.Envoy != nil && slices.Contains(c.Spec.Envoy.Secrets, ns+"/secure-tls") {
			secrets++
		}
		// All or nothing: a chain without routes, or routes without a chain, is a bug.
		g.Expect([]int{tables, chains, secrets}).To(Or(Equal([]int{0, 0, 0}), Equal([]int{1, 1, 1})))
		return tables == 1
	}
	g.Eventually(func(g Gomega) {
		var events eventsv1.EventList
		g.Expect(k8s.List(ctx, &events, client.InNamespace(ns))).To(Succeed())
		g.Expect(events.Items).To(ContainElement(And(HaveField("Regarding.Name", "secure"), HaveField("Reason", string(translate.ReasonTLSSecretNotFound)))))
		g.Expect(servedOverTLS(g)).To(BeFalse())
	}).WithTimeout(timeout).Should(Succeed())

	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "secure-tls"}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{corev1.TLSCertKey: []byte("cert"), corev1.TLSPrivateKeyKey: []byte("key")}}
	g.Expect(k8s.Create(ctx, secret)).To(Succeed())
	g.Eventually(func(g Gomega) { g.Expect(servedOverTLS(g)).To(BeTrue()) }).WithTimeout(timeout).Should(Succeed())

	g.Expect(k8s.Delete(ctx, secret)).To(Succeed())
	g.Eventually(func(g Gomega) { g.Expect(servedOverTLS(g)).To(BeFalse()) }).WithTimeout(timeout).Should(Succeed())
}

// TestHostBelongsToOneNamespace: on the shared load balancer, a host belongs to
// the namespace of the oldest Ingress that claims it. A younger Ingress of another
// namespace asking for /login on it gets a HostConflict Event naming the owner and
// none of its rules for that host reach a NodeProxyConfig, while its other host is
// served; an Ingress of the owner's namespace still adds its path.
func TestHostBelongsToOneNamespace(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	owner, other := newNamespace(t, "host-owner"), newNamespace(t, "host-thief")
	backend(t, owner, "web", 80)
	backend(t, other, "web", 80)
	withHost := func(host string) ingOpt { return func(i *networkingv1.Ingress) { i.Spec.Rules[0].Host = host } }
	newIngress(t, owner, "shop", []string{"/=web:80"}, withHost("shop.owner.example"))
	g.Eventually(func(g Gomega) { g.Expect(npc(g, "ingress.host-owner.shop").Spec.RouteFragments).NotTo(BeEmpty()) }).WithTimeout(timeout).Should(Succeed())
	// Creation times have second precision: make the thief unambiguously younger.
	time.Sleep(1100 * time.Millisecond)
	newIngress(t, other, "steal", []string{"/login=web:80"}, withHost("shop.owner.example"), func(i *networkingv1.Ingress) {
		i.Spec.Rules = append(i.Spec.Rules, networkingv1.IngressRule{Host: "thief.example", IngressRuleValue: i.Spec.Rules[0].IngressRuleValue})
	})
	newIngress(t, owner, "shop-api", []string{"/api=web:80"}, withHost("shop.owner.example"))

	hosts := func(g Gomega, name string) []string {
		var out []string
		for _, f := range npc(g, name).Spec.RouteFragments {
			if len(f.Routes) > 0 {
				out = append(out, f.Host)
			}
		}
		return out
	}
	g.Eventually(func(g Gomega) {
		var events eventsv1.EventList
		g.Expect(k8s.List(ctx, &events, client.InNamespace(other))).To(Succeed())
		g.Expect(events.Items).To(ContainElement(And(HaveField("Regarding.Name", "steal"),
			HaveField("Reason", string(translate.ReasonHostConflict)),
			HaveField("Note", And(ContainSubstring("spec.rules[0].host"), ContainSubstring("belongs to namespace host-owner"))))))
		g.Expect(hosts(g, "ingress.host-thief.steal")).To(ConsistOf("thief.example"))
		g.Expect(hosts(g, "ingress.host-owner.shop-api")).To(ConsistOf("shop.owner.example"))
	}).WithTimeout(timeout).Should(Succeed())
}

// TestProgrammedLoop follows the verdict from the node back to the Ingress: the
// configs' status says Programmed on 1/1 nodes; a certificate the node cannot use
// makes it reject the Ingress's TLS chain, which reaches the Ingress as a Warning
// Event naming the node and the reason (and NodeProxyConfig status as
// Programmed=False, Rejected); a fixed certificate brings a Normal Event back.
func TestProgrammedLoop(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t, "programmed-loop")
	backend(t, ns, "web", 80)
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "loop-tls"}, Type: corev1.SecretTypeTLS,
		Data: testcerts.TLSData(t, "loop.example.com")}
	g.Expect(k8s.Create(ctx, secret)).To(Succeed())
	newIngress(t, ns, "loop", []string{"/=web:80"}, func(i *networkingv1.Ingress) {
		i.Spec.Rules[0].Host = "loop.example.com"
		i.Spec.TLS = []networkingv1.IngressTLS{{Hosts: []string{"loop.example.com"}, SecretName: "loop-tls"}}
	})
	cfgName := "ingress." + ns + ".loop"
	programmed := func(g Gomega, name string) *metav1.Condition {
		c := npc(g, name)
		cond := conditions.Get(c.Status.Conditions, v1alpha1.ConditionProgrammed)
		g.Expect(cond).NotTo(BeNil())
		g.Expect(cond.ObservedGeneration).To(Equal(c.Generation))
		return cond
	}
	events := func(g Gomega, reason string) []string {
		var list eventsv1.EventList
		g.Expect(k8s.List(ctx, &list, client.InNamespace(ns))).To(Succeed())
		var out []string
		for _, e := range list.Items {
			if e.Regarding.Name == "loop" && e.Reason == reason {
				// The recorder folds a repeat of the same Event into a series:
				// each occurrence counts.
				n := 1
				if e.Series != nil {
					n = max(n, int(e.Series.Count))
				}
				n = max(n, int(e.DeprecatedCount))
				for range n {
					out = append(out, e.Note)
				}
			}
		}
		return out
	}
	g.Eventually(func(g Gomega) {
		g.Expect(programmed(g, cfgName).Status).To(Equal(metav1.ConditionTrue))
		g.Expect(programmed(g, translate.SharedConfigName).Message).To(Equal("Programmed on 1/1 nodes"))
		g.Expect(events(g, ingress.EventProgrammed)).To(ContainElement(ContainSubstring("Programmed on 1/1 nodes")))
		g.Expect(ingressIPs(g, ns, "loop")).To(Equal([]string{"192.168.10.211"}))
	}).WithTimeout(timeout).Should(Succeed())

	start := time.Now()
	secret.Data[corev1.TLSCertKey] = []byte("not a certificate")
	g.Expect(k8s.Update(ctx, secret)).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(events(g, ingress.EventRejected)).To(ContainElement(And(ContainSubstring(nodeName+" (InvalidSecret"), ContainSubstring("not a valid key pair"))))
		c := programmed(g, cfgName)
		g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(c.Reason).To(Equal(string(v1alpha1.ReasonRejected)))
	}).WithTimeout(timeout).Should(Succeed())
	t.Logf("Secret broken -> Warning Event on the Ingress: %v", time.Since(start).Round(time.Millisecond))

	start = time.Now()
	secret.Data = testcerts.TLSData(t, "loop.example.com")
	g.Expect(k8s.Update(ctx, secret)).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(programmed(g, cfgName).Status).To(Equal(metav1.ConditionTrue))
		g.Expect(events(g, ingress.EventProgrammed)).To(HaveLen(2), "a second Programmed Event (or a series of 2)")
	}).WithTimeout(timeout).Should(Succeed())
	t.Logf("Secret fixed -> Normal Event on the Ingress: %v", time.Since(start).Round(time.Millisecond))
}
