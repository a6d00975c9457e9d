package install_test

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	certutil "k8s.io/client-go/util/cert"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/apirecorder"
	"github.com/portico-dev/portico/internal/conditions"
	"github.com/portico-dev/portico/internal/netlab"
	"github.com/portico-dev/portico/internal/privileged"
	"github.com/portico-dev/portico/internal/testproc"
	"github.com/portico-dev/portico/nodeagent/xds/xdstest"
)

// TestServiceAccountScenarios installs the chart and runs scenarios S1–S4 through the
// controller binaries and two node agents, each holding only a token of its own chart
// ServiceAccount (the agents' tokens bound to a Pod on their node, as the kubelet
// mounts them), with the chart's own arguments. A right the chart forgot shows up as a
// refused request (each binary talks through a recording proxy) or a scenario that
// does not complete, instead of passing silently under an admin kubeconfig.
//
// The agents run in network namespaces (internal/netlab) with their datapath off: S2's
// ARP answers are real, redirects are covered by nodeagent/e2e.
func TestServiceAccountScenarios(t *testing.T) {
	privileged.Require(t)
	r := newRig(t)
	webIP := r.s1()
	r.s2(webIP)
	r.s3s4(webIP)
	r.checkNodes()
	r.checkWire()
}

// rig is the installed chart with every binary running under its own token.
type rig struct {
	t       *testing.T
	g       Gomega
	c       *cluster
	mgmt    string
	hosts   map[string]*netlab.Host
	client  *netlab.Host
	proxies map[string]*apirecorder.Proxy
	procs   map[string]*testproc.Proc
}

func newRig(t *testing.T) *rig {
	lab := netlab.New(t, netip.MustParsePrefix("10.249.0.0/24"), netip.MustParsePrefix("fd00:249::/64"))
	r := &rig{t: t, g: NewWithT(t), hosts: map[string]*netlab.Host{"n1": lab.AddHost("n1"), "n2": lab.AddHost("n2")},
		client: lab.AddHost("client"), mgmt: lab.Mgmt.Addr().String(), proxies: map[string]*apirecorder.Proxy{}, procs: map[string]*testproc.Proc{}}
	r.c = startCluster(t, r.mgmt)
	t.Cleanup(func() {
		if t.Failed() {
			for name, p := range r.procs {
				t.Logf("--- %s logs:\n%s", name, testproc.Tail(p.Logs.String(), 60))
			}
			for name, p := range r.proxies {
				t.Logf("--- %s requests refused: %v", name, p.Exchanges(apirecorder.Forbidden))
			}
		}
	})
	bins := buildBinaries(t, "lbipam-controller", "l2-controller", "ingress-controller", "gateway-controller", "envoyconfig-controller", "node-agent")
	dir := t.TempDir()
	r.startControllers(bins, dir)
	r.startAgents(bins, dir)
	return r
}

// startControllers runs each Deployment's binary with the chart's arguments and a
// token of its ServiceAccount; webhooks are reached by URL (see webhookByURL).
func (r *rig) startControllers(bins, dir string) {
	t, c := r.t, r.c
	env := map[string]string{"POD_NAMESPACE": ns}
	for _, d := range c.chart.OfKind("Deployment") {
		comp := d.GetLabels()["app.kubernetes.io/component"]
		p := newAPIProxy(t, r.mgmt, c.env.Config)
		r.proxies[comp] = p
		args := append(chartArgs(t, d, env), "--kubeconfig="+writeKubeconfig(t, dir, comp, p, c.token(t, comp, nil)),
			"--metrics-bind-address=0", "--health-probe-bind-address=127.0.0.1:"+freePort(t))
		if vwc := c.chart.Find("ValidatingWebhookConfiguration", saName(comp)); vwc != nil {
			port := freePort(t)
			c.webhookByURL(t, saName(comp), "https://localhost:"+port)
			args = append(args, "--webhook-port="+port, "--webhook-cert-dir="+t.TempDir(), "--webhook-cert-extra-dns-names=localhost")
		}
		cmd := exec.Command(bins+"/"+binaryOf(t, d), args...)
		cmd.Env = []string{"POD_NAMESPACE=" + ns}
		r.procs[comp] = startProc(t, comp, cmd)
	}
}

// startAgents runs the DaemonSet's binary in each node's namespace with a token bound
// to a Pod on that node, and an Envoy-like proxy on its socket.
func (r *rig) startAgents(bins, dir string) {
	t, c := r.t, r.c
	var agentDS *unstructured.Unstructured
	for _, ds := range c.chart.OfKind("DaemonSet") {
		if ds.GetLabels()["app.kubernetes.io/component"] == "nodeagent" {
			agentDS = ds
		}
	}
	if agentDS == nil {
		t.Fatal("the chart installed no node agent")
	}
	env := map[string]string{"POD_NAMESPACE": ns}
	for node, h := range r.hosts {
		p := newAPIProxy(t, r.mgmt, c.env.Config)
		r.proxies["agent-"+node] = p
		sock := shortDir(t)
		args := append(chartArgs(t, agentDS, env),
			"--kubeconfig="+writeKubeconfig(t, dir, "agent-"+node, p, c.token(t, "nodeagent", c.agentPod(t, node))),
			"--disable-datapath", "--metrics-bind-address=0", "--health-probe-bind-address=",
			"--state-dir="+dir+"/state-"+node, "--xds-socket="+sock+"/xds.sock")
		cmd := h.Command(context.Background(), "env", append([]string{"NODE_NAME=" + node, "POD_NAMESPACE=" + ns, bins + "/node-agent"}, args...)...)
		r.procs["agent-"+node] = startProc(t, "agent-"+node, cmd)
		// Envoy's part, as the chart's Envoy DaemonSet plays it through the shared socket
		// directory: an ADS client that subscribes, follows references and ACKs. Ingresses
		// show their address only once a node serves their config to its proxy.
		proxy := dialProxy(t, sock+"/xds.sock", node)
		t.Cleanup(func() { _ = proxy.Close() })
	}
}

// s1: a pool, through the LB-IPAM webhook (served with the certificate the controller
// issued itself), and a LoadBalancer Service gets an address.
func (r *rig) s1() netip.Addr {
	c, g, ctx := r.c, r.g, context.Background()
	pool := &v1alpha1.LoadBalancerIPPool{ObjectMeta: metav1.ObjectMeta{Name: "lb-pool"},
		Spec: v1alpha1.LoadBalancerIPPoolSpec{Blocks: []v1alpha1.IPBlock{{Start: "10.249.0.211", Stop: "10.249.0.215"}}}}
	g.Eventually(func() error { return c.env.Client.Create(ctx, pool.DeepCopy()) }).WithTimeout(60*time.Second).
		Should(Succeed(), "the pool webhook never answered")
	web := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web"}, Spec: corev1.ServiceSpec{
		Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"app": "web"},
		Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}
	g.Expect(c.env.Client.Create(ctx, web)).To(Succeed())
	webIP := waitAddress(g, c, "default", "web")
	// Once LB-IPAM has seen the pool, its webhook refuses one that overlaps it.
	bad := &v1alpha1.LoadBalancerIPPool{ObjectMeta: metav1.ObjectMeta{Name: "overlap"},
		Spec: v1alpha1.LoadBalancerIPPoolSpec{Blocks: []v1alpha1.IPBlock{{Start: "10.249.0.214", Stop: "10.249.0.220"}}}}
	g.Expect(c.env.Client.Create(ctx, bad)).To(MatchError(ContainSubstring("lb-pool")), "the webhook let an overlapping pool in")

	return webIP
}

// s2: one node answers ARP for the address, the one the Service's condition names; the
// policy goes through the L2 webhook once its controller has issued its certificate.
func (r *rig) s2(webIP netip.Addr) {
	c, g, ctx := r.c, r.g, context.Background()
	policy := &v1alpha1.L2AnnouncementPolicy{ObjectMeta: metav1.ObjectMeta{Name: "policy1"},
		Spec: v1alpha1.L2AnnouncementPolicySpec{Interfaces: []string{"^eth1$"}, ExternalIPs: true, LoadBalancerIPs: true}}
	g.Eventually(func() error { return c.env.Client.Create(ctx, policy.DeepCopy()) }).WithTimeout(60*time.Second).
		Should(Succeed(), "the L2 policy webhook never answered")
	g.Eventually(func(g Gomega) {
		svc := &corev1.Service{}
		g.Expect(c.env.Client.Get(ctx, client.ObjectKey{Namespace: "default", Name: "web"}, svc)).To(Succeed())
		cond := conditions.Get(svc.Status.Conditions, v1alpha1.ConditionL2Announced)
		g.Expect(cond).NotTo(BeNil())
		g.Expect(cond.Status).To(Equal(metav1.ConditionTrue), cond.Message)
		owner := regexp.MustCompile(`announced by (\S+)`).FindStringSubmatch(cond.Message)
		g.Expect(owner).NotTo(BeNil(), cond.Message)
		macs := arping(r.client, webIP)
		g.Expect(macs).To(ConsistOf(strings.ToLower(r.hosts[owner[1]].MAC.String())), "ARP answers for %s", webIP)
	}).WithTimeout(60 * time.Second).WithPolling(500 * time.Millisecond).Should(Succeed())
}

// s3s4: shared and dedicated Ingresses, and HTTPS on the shared listener.
func (r *rig) s3s4(webIP netip.Addr) {
	c, g, ctx := r.c, r.g, context.Background()
	// S3 and S4: shared Ingresses share the shared Service's address; a dedicated one gets
	// its own Service beside it, and the next address.
	for _, s := range []string{"details", "productpage", "webpod"} {
		g.Expect(c.env.Client.Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: s},
			Spec: corev1.ServiceSpec{Selector: map[string]string{"app": s}, Ports: []corev1.ServicePort{{Name: "http", Port: 9080}}}})).To(Succeed())
	}
	ingress := func(name string, dedicated bool, backend string) *networkingv1.Ingress {
		ing := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}, Spec: networkingv1.IngressSpec{
			IngressClassName: ptr.To("portico"),
			Rules: []networkingv1.IngressRule{{IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
				Paths: []networkingv1.HTTPIngressPath{{Path: "/", PathType: ptr.To(networkingv1.PathTypePrefix),
					Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: backend,
						Port: networkingv1.ServiceBackendPort{Number: 9080}}}}}}}}}}}
		if dedicated {
			ing.Annotations = map[string]string{"ingress.portico.dev/loadbalancer-mode": "dedicated"}
		}
		return ing
	}
	for _, ing := range []*networkingv1.Ingress{ingress("basic-ingress", false, "productpage"),
		ingress("basic-ingress2", false, "webpod"), ingress("webpod-ingress", true, "webpod")} {
		g.Expect(c.env.Client.Create(ctx, ing)).To(Succeed())
	}
	shared := waitIngressAddress(g, c, "basic-ingress")
	g.Expect(waitIngressAddress(g, c, "basic-ingress2")).To(Equal(shared))
	dedicated := waitIngressAddress(g, c, "webpod-ingress")
	g.Expect(dedicated).NotTo(BeElementOf(shared, webIP))
	g.Expect(c.env.Client.Get(ctx, client.ObjectKey{Namespace: "default", Name: "portico-ingress-webpod-ingress"}, &corev1.Service{})).To(Succeed())
	// web, the shared portico-ingress and the dedicated Service hold three of five.
	g.Eventually(func(g Gomega) {
		p := &v1alpha1.LoadBalancerIPPool{}
		g.Expect(c.env.Client.Get(ctx, client.ObjectKey{Name: "lb-pool"}, p)).To(Succeed())
		g.Expect(p.Status.IPv4).NotTo(BeNil())
		g.Expect(p.Status.IPv4.Available).To(BeEquivalentTo(2))
	}).WithTimeout(30 * time.Second).Should(Succeed())

	// HTTPS on the shared listener: the agents read the Ingress's TLS Secret, by name.
	certPEM, keyPEM, err := certutil.GenerateSelfSignedCertKey("shop.example.com", nil, nil)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(c.env.Client.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "shop-tls"},
		Type: corev1.SecretTypeTLS, Data: map[string][]byte{corev1.TLSCertKey: certPEM, corev1.TLSPrivateKeyKey: keyPEM}})).To(Succeed())
	shop := ingress("shop", false, "productpage")
	shop.Spec.TLS = []networkingv1.IngressTLS{{Hosts: []string{"shop.example.com"}, SecretName: "shop-tls"}}
	shop.Spec.Rules[0].Host = "shop.example.com"
	g.Expect(c.env.Client.Create(ctx, shop)).To(Succeed())
	g.Expect(waitIngressAddress(g, c, "shop")).To(Equal(shared))
}

// checkNodes: both agents applied every config that selects them (the Ingresses' and
// their own node's L2 config), rejected none, and reported it on their own NodeProxy.
func (r *rig) checkNodes() {
	c, g, ctx := r.c, r.g, context.Background()
	g.Eventually(func(g Gomega) {
		var npcs v1alpha1.NodeProxyConfigList
		g.Expect(c.env.Client.List(ctx, &npcs, client.MatchingLabels{v1alpha1.LabelProducer: "ingress"})).To(Succeed())
		g.Expect(len(npcs.Items)).To(BeNumerically(">=", 3))
		for node := range r.hosts {
			np := &v1alpha1.NodeProxy{}
			g.Expect(c.env.Client.Get(ctx, client.ObjectKey{Name: node}, np)).To(Succeed())
			g.Expect(np.Status.Rejected).To(BeEmpty(), "node %s", node)
			g.Expect(np.Status.Counters.Listeners).To(BeNumerically(">", 0), "node %s serves no listener", node)
		}
	}).WithTimeout(30 * time.Second).Should(Succeed())
}

// checkWire: nothing was refused, no binary died, the ingress controller never received
// a Secret's data, and the agents asked for Secrets only by name (what RBAC cannot
// express, checked on the wire).
func (r *rig) checkWire() {
	t := r.t
	for name, p := range r.procs {
		if p.Exited() {
			t.Errorf("%s exited:\n%s", name, testproc.Tail(p.Logs.String(), 40))
		}
	}
	for name, p := range r.proxies {
		if refused := p.Exchanges(apirecorder.Forbidden); len(refused) > 0 {
			t.Errorf("%s was refused %d requests, e.g. %v", name, len(refused), refused[0])
		}
		if len(p.Exchanges(func(apirecorder.Exchange) bool { return true })) == 0 {
			t.Errorf("%s sent no request through its proxy", name)
		}
	}
	// The Secrets in the install namespace (the webhook certificates) are enough for the
	// ingress controller's watch to have carried some.
	ing := r.proxies["ingress"]
	if len(ing.Exchanges(apirecorder.Secrets)) == 0 || ing.MetaSecrets.Load() == 0 {
		t.Errorf("the ingress controller received no Secret metadata (%d requests: %v): the metadata-only check saw nothing", len(ing.Exchanges(apirecorder.Secrets)), ing.Exchanges(apirecorder.Secrets))
	}
	// The scanner does see whole Secrets where they are read: LB-IPAM reads its own
	// webhook certificate.
	if r.proxies["lbipam"].FullSecrets.Load() == 0 {
		t.Error("no whole Secret seen even in LB-IPAM's certificate reads: the Secret scanner is blind")
	}
	if n := ing.FullSecrets.Load(); n > 0 {
		t.Errorf("the ingress controller received %d whole Secrets: %v", n, ing.Exchanges(apirecorder.Secrets))
	}
	// An agent reads only the Secrets it serves, each by name (a per-name watch): RBAC
	// cannot hold it to that, so its requests are checked here.
	for node := range r.hosts {
		reads := r.proxies["agent-"+node].Exchanges(apirecorder.Secrets)
		if len(reads) == 0 {
			t.Errorf("agent %s never read the TLS Secret it serves", node)
		}
		for _, e := range reads {
			if !byName(e) {
				t.Errorf("agent %s read Secrets other than by name: %v", node, e)
			}
		}
	}
}

// dialProxy connects an Envoy-like ADS client to an agent's socket once it exists.
func dialProxy(t testing.TB, sock, node string) *xdstest.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the agent of %s never opened its xDS socket %s", node, sock)
		case <-time.After(100 * time.Millisecond):
		}
	}
	c, err := xdstest.Dial(ctx, "unix://"+sock, "envoy-"+node)
	if err == nil {
		err = c.Start()
	}
	if err != nil {
		t.Fatalf("connecting %s's proxy: %v", node, err)
	}
	return c
}

// byName: a request for one Secret, by its path or a metadata.name field selector.
func byName(e apirecorder.Exchange) bool {
	if strings.Contains(e.Query, "fieldSelector=metadata.name%3D") {
		return true
	}
	i := strings.Index(e.Path, "/secrets/")
	return i >= 0 && len(e.Path) > i+len("/secrets/")
}

// webhookByURL points a webhook configuration at a local port: the chart's Service
// cannot be reached here (no kube-proxy and no endpoints), everything else stays as
// installed (the controller patches in the CA it issues).
func (c *cluster) webhookByURL(t testing.TB, name, base string) {
	t.Helper()
	vwc := &admissionv1.ValidatingWebhookConfiguration{}
	if err := c.env.Client.Get(context.Background(), client.ObjectKey{Name: name}, vwc); err != nil {
		t.Fatal(err)
	}
	for i := range vwc.Webhooks {
		url := base + *vwc.Webhooks[i].ClientConfig.Service.Path
		vwc.Webhooks[i].ClientConfig = admissionv1.WebhookClientConfig{URL: &url}
	}
	if err := c.env.Client.Update(context.Background(), vwc); err != nil {
		t.Fatal(err)
	}
}

func binaryOf(t testing.TB, d *unstructured.Unstructured) string {
	containers, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "containers")
	cmd, _, _ := unstructured.NestedStringSlice(containers[0].(map[string]any), "command")
	if len(cmd) != 1 {
		t.Fatalf("%s: command %v", d.GetName(), cmd)
	}
	return strings.TrimPrefix(cmd[0], "/")
}

func waitAddress(g Gomega, c *cluster, namespace, name string) netip.Addr {
	var ip netip.Addr
	g.Eventually(func(g Gomega) {
		svc := &corev1.Service{}
		g.Expect(c.env.Client.Get(context.Background(), client.ObjectKey{Namespace: namespace, Name: name}, svc)).To(Succeed())
		g.Expect(svc.Status.LoadBalancer.Ingress).NotTo(BeEmpty(), "%s/%s has no address", namespace, name)
		ip = netip.MustParseAddr(svc.Status.LoadBalancer.Ingress[0].IP)
	}).WithTimeout(30 * time.Second).Should(Succeed())
	return ip
}

func waitIngressAddress(g Gomega, c *cluster, name string) netip.Addr {
	var ip netip.Addr
	g.Eventually(func(g Gomega) {
		ing := &networkingv1.Ingress{}
		g.Expect(c.env.Client.Get(context.Background(), client.ObjectKey{Namespace: "default", Name: name}, ing)).To(Succeed())
		g.Expect(ing.Status.LoadBalancer.Ingress).NotTo(BeEmpty(), "Ingress %s has no address", name)
		ip = netip.MustParseAddr(ing.Status.LoadBalancer.Ingress[0].IP)
	}).WithTimeout(30 * time.Second).Should(Succeed())
	return ip
}

var macRe = regexp.MustCompile(`(?i)([0-9a-f]{2}(:[0-9a-f]{2}){5})`)

// arping asks once for ip from h and returns the MACs that answered.
func arping(h *netlab.Host, ip netip.Addr) []string {
	out, _ := h.Run("arping", "-i", netlab.HostInterface, "-c", "1", "-w", "1", ip.String())
	var macs []string
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "bytes from") {
			if m := macRe.FindString(line); m != "" {
				macs = append(macs, strings.ToLower(m))
			}
		}
	}
	return macs
}
