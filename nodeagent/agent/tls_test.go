package agent

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/testcerts"
	translate "github.com/portico-dev/portico/internal/translate/ingress"
	"github.com/portico-dev/portico/nodeagent/xds/xdstest"
)

// TestTLSIngressDoesNotFreezeTheNode is the day-one bug: a plain Ingress is served,
// a TLS Ingress with a real kubernetes.io/tls Secret is added, then the plain one is
// edited. The agent must serve the Secret over SDS (the client follows the TLS
// chain's reference as Envoy does and nothing stays unresolved), the edit must reach
// the proxy, and a broken or missing Secret must cost only the chain that presents
// it: the plain Ingress keeps being updated, the TLS Ingress's HTTP routes stay, its
// config is reported rejected with the Secret's reason, and it comes back when the
// Secret is fixed. The configs are the Ingress translator's own output.
func TestTLSIngressDoesNotFreezeTheNode(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := env.Client
	const nodeName = "tls-node"
	create(t, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName}})
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "shop-tls", Namespace: "default"},
		Type: corev1.SecretTypeTLS, Data: testcerts.TLSData(t, "shop.example.com")}
	create(t, secret)
	// A Secret no config lists: the agent must never serve it.
	create(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "unrelated-tls", Namespace: "default"},
		Type: corev1.SecretTypeTLS, Data: testcerts.TLSData(t, "other.example.com")})

	plainPath := "/v1"
	ingresses := func() []*networkingv1.Ingress {
		prefix := networkingv1.PathTypePrefix
		rule := func(host, path string) networkingv1.IngressRule {
			return networkingv1.IngressRule{Host: host, IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
				Paths: []networkingv1.HTTPIngressPath{{Path: path, PathType: &prefix, Backend: networkingv1.IngressBackend{
					Service: &networkingv1.IngressServiceBackend{Name: "web", Port: networkingv1.ServiceBackendPort{Number: 80}}}}}}}}
		}
		return []*networkingv1.Ingress{
			{ObjectMeta: metav1.ObjectMeta{Name: "plain", Namespace: "default", CreationTimestamp: metav1.Unix(1_700_000_000, 0)},
				Spec: networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{rule("plain.example.com", plainPath)}}},
			{ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: "default", CreationTimestamp: metav1.Unix(1_700_000_001, 0)},
				Spec: networkingv1.IngressSpec{
					TLS:   []networkingv1.IngressTLS{{Hosts: []string{"shop.example.com"}, SecretName: "shop-tls"}},
					Rules: []networkingv1.IngressRule{rule("shop.example.com", "/")}}},
		}
	}
	apply := func() {
		out := translate.Translate(translate.Input{
			Ingresses: ingresses(),
			Services: map[types.NamespacedName]*corev1.Service{{Namespace: "default", Name: "web"}: {
				ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
				Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}},
			Secrets:         map[types.NamespacedName]bool{{Namespace: "default", Name: "shop-tls"}: true},
			SharedAddresses: []string{"192.0.2.211"},
		}, translate.Options{})
		for _, cfg := range out.Configs {
			npc := &v1alpha1.NodeProxyConfig{ObjectMeta: metav1.ObjectMeta{Name: cfg.Name,
				Labels: map[string]string{v1alpha1.LabelProducer: translate.Producer}}, Spec: cfg.Spec}
			if cfg.Source != nil {
				npc.Labels[v1alpha1.LabelSourceNamespace] = cfg.Source.Namespace
			}
			have := &v1alpha1.NodeProxyConfig{}
			if err := c.Get(ctx, client.ObjectKey{Name: cfg.Name}, have); err == nil {
				have.Spec = cfg.Spec
				must(t, c.Update(ctx, have))
				continue
			}
			create(t, npc)
		}
	}
	apply()

	ads := runAgent(t, ctx, nodeName, Config{DisableL2: true}, true)

	shopChain := "default/shop/shop-tls"
	served := func(path string, withTLS bool) func(*xdstest.Client) bool {
		return func(cl *xdstest.Client) bool {
			l, _ := cl.State(resourcev3.ListenerType).Resources[translate.SharedConfigName+"/https"].(*listenerv3.Listener)
			hasChain := slices.ContainsFunc(l.GetFilterChains(), func(fc *listenerv3.FilterChain) bool { return fc.GetName() == shopChain })
			s, _ := cl.State(resourcev3.SecretType).Resources["default/shop-tls"].(*tlsv3.Secret)
			hasSecret := len(s.GetTlsCertificate().GetCertificateChain().GetInlineBytes()) > 0
			_, unrelated := cl.State(resourcev3.SecretType).Resources["default/unrelated-tls"]
			return l != nil && hasChain == withTLS && hasSecret == withTLS && !unrelated &&
				routeFor(cl, translate.SharedConfigName+"/http", "plain.example.com") == path &&
				routeFor(cl, translate.SharedConfigName+"/http", "shop.example.com") == "/"
		}
	}
	np := &v1alpha1.NodeProxy{}
	shopConfig := translate.ConfigName(types.NamespacedName{Namespace: "default", Name: "shop"})
	reported := func(reason v1alpha1.ConditionReason) func() bool {
		return func() bool {
			if err := c.Get(ctx, client.ObjectKey{Name: nodeName}, np); err != nil {
				return false
			}
			if reason == "" {
				return np.Status.RejectedCount == 0 && np.Status.XDSVersion != ""
			}
			return len(np.Status.Rejected) == 1 && np.Status.Rejected[0].Name == shopConfig && np.Status.Rejected[0].Reason == reason
		}
	}
	xdsVersion := func() uint64 { v, _ := strconv.ParseUint(np.Status.XDSVersion, 10, 64); return v }
	edit := func(path string, withTLS bool, step string) {
		t.Helper()
		before := xdsVersion()
		plainPath = path
		apply()
		if err := ads.WaitResolved(ctx, served(path, withTLS)); err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		eventually(t, 20*time.Second, step+": xdsVersion moves on NodeProxy", func() bool {
			return c.Get(ctx, client.ObjectKey{Name: nodeName}, np) == nil && xdsVersion() > before
		})
	}

	if err := ads.WaitResolved(ctx, served("/v1", true)); err != nil {
		t.Fatalf("%v; client has %s", err, dump(ads))
	}
	eventually(t, 20*time.Second, "NodeProxy reports everything applied", reported(""))
	edit("/v2", true, "plain Ingress edited next to a TLS one")

	// Not a key pair any more: only the shop chain goes, with the reason on NodeProxy.
	secret.Data[corev1.TLSCertKey] = []byte("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
	must(t, c.Update(ctx, secret))
	if err := ads.WaitResolved(ctx, served("/v2", false)); err != nil {
		_ = c.Get(ctx, client.ObjectKey{Name: nodeName}, np)
		t.Fatalf("%v; client has %s\nNodeProxy: %+v", err, dump(ads), np.Status)
	}
	eventually(t, 20*time.Second, "NodeProxy reports the shop config rejected (InvalidSecret)", reported(v1alpha1.ReasonInvalidSecret))
	t.Logf("rejection: %s", np.Status.Rejected[0].Message)
	edit("/v3", false, "plain Ingress edited while the Secret is broken")

	must(t, c.Delete(ctx, secret))
	eventually(t, 20*time.Second, "NodeProxy reports the shop config rejected (SecretNotFound)", reported(v1alpha1.ReasonSecretNotFound))
	edit("/v4", false, "plain Ingress edited while the Secret is missing")

	secret = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "shop-tls", Namespace: "default"},
		Type: corev1.SecretTypeTLS, Data: testcerts.TLSData(t, "shop.example.com")}
	create(t, secret)
	must(t, ads.WaitResolved(ctx, served("/v4", true)))
	eventually(t, 20*time.Second, "NodeProxy reports everything applied once the Secret is back", reported(""))
	if n := len(ads.State(resourcev3.ClusterType).Nacks) + len(ads.State(resourcev3.ListenerType).Nacks); n != 0 {
		t.Fatalf("the client NACKed %d times", n)
	}
}

// routeFor is the path prefix of the first route of host in table, "" if none.
func routeFor(cl *xdstest.Client, table, host string) string {
	rc, _ := cl.State(resourcev3.RouteType).Resources[table].(*routev3.RouteConfiguration)
	for _, vh := range rc.GetVirtualHosts() {
		if slices.Contains(vh.GetDomains(), host) && len(vh.GetRoutes()) > 0 {
			m := vh.GetRoutes()[0].GetMatch()
			return m.GetPathSeparatedPrefix() + m.GetPrefix()
		}
	}
	return ""
}

// dump summarises what the client holds, for failure messages.
func dump(cl *xdstest.Client) string {
	out := ""
	for _, typ := range []string{resourcev3.ListenerType, resourcev3.RouteType, resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.SecretType} {
		st := cl.State(typ)
		names := make([]string, 0, len(st.Resources))
		for n := range st.Resources {
			names = append(names, n)
		}
		slices.Sort(names)
		out += fmt.Sprintf("\n  %s v%s subscribed=%v have=%v nacks=%v", typ[len("type.googleapis.com/"):], st.Version, st.Subscribed, names, st.Nacks)
	}
	return out
}
