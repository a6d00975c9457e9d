package envoyconfig_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-dev/portico/apis/v1alpha1"
	translate "github.com/portico-dev/portico/internal/translate/envoyconfig"
)

// expectedErrors are the field errors the translation gives for obj (no Services exist).
func expectedErrors(t *testing.T, obj client.Object) []string {
	t.Helper()
	o, ok := translate.Of(obj)
	if !ok {
		t.Fatalf("%T", obj)
	}
	var out []string
	for _, e := range translate.Translate(o.Input(func(types.NamespacedName) *corev1.Service { return nil })).Errors {
		out = append(out, e.Error())
	}
	if len(out) == 0 {
		t.Fatalf("%s: the translation accepts it", obj.GetName())
	}
	return out
}

// TestS8RefusedAtAdmission: every malformed config of the golden "errors" case is
// refused by `kubectl apply` (here: a create through the apiserver), with every
// problem named by its field path and the same text the translation gives.
func TestS8RefusedAtAdmission(t *testing.T) {
	RegisterTestingT(t)
	ctx := context.Background()
	for _, obj := range objectsOf(t, "errors") {
		want := expectedErrors(t, obj)
		err := k8s.Create(ctx, obj)
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "%s: %v", obj.GetName(), err)
		for _, w := range want {
			Expect(err.Error()).To(ContainSubstring(w), obj.GetName())
		}
	}

	// A listener port another config binds on the same nodes.
	// The webhook checks against its informer cache, which sees port-a a moment after
	// the create returns (two creates racing both pass admission; the controller then
	// keeps the port for the older one): wait for the refusal with
	// dry runs, then the real create is refused.
	Expect(k8s.Create(ctx, portConfig("port-a", 10080))).To(Succeed())
	conflict := `spec.resources[0]: Invalid value: "Listener default/port-b/l": binds 0.0.0.0:10080/TCP, which listener "default/port-a/l" of EnvoyConfig default/port-a already binds on the nodes both select`
	Eventually(func() error { return k8s.Create(ctx, portConfig("port-b", 10080), client.DryRunAll) }).
		WithTimeout(10 * time.Second).Should(MatchError(ContainSubstring(conflict)))
	err := k8s.Create(ctx, portConfig("port-b", 10080))
	Expect(apierrors.IsInvalid(err)).To(BeTrue(), "%v", err)
	Expect(err.Error()).To(ContainSubstring(conflict))
	Expect(k8s.Create(ctx, portConfig("port-b", 10081))).To(Succeed())

	// A config whose NodeProxyConfig would be over 1 MiB.
	big := portConfig("big", 10082)
	big.Spec.Resources = append(big.Spec.Resources, resource(fmt.Sprintf(`{"@type":%q,"name":"big","virtual_hosts":[{"name":"v","domains":["*"],"routes":[{"match":{"prefix":"/"},"direct_response":{"status":200,"body":{"inline_string":%q}}}]}]}`,
		resourcev3.RouteType, strings.Repeat("x", 1100*1024))))
	big.Spec.Resources[0] = listenerResource(10082, `"rds":{"route_config_name":"big"}`)
	err = k8s.Create(ctx, big)
	Expect(apierrors.IsInvalid(err)).To(BeTrue(), "%v", err)
	Expect(err.Error()).To(ContainSubstring("spec: Invalid value:"))
	Expect(err.Error()).To(ContainSubstring("over the 1048576-byte limit"))
}

// TestS8WebhookOff: with the webhook switched off, the same configs reach the
// controller, which accepts none of them (Accepted=False with the message the webhook
// gives), writes no NodeProxyConfig for them, and lets the older of two configs
// binding one port keep it.
func TestS8WebhookOff(t *testing.T) {
	RegisterTestingT(t)
	ctx := context.Background()
	disableWebhook(t)

	for _, obj := range objectsOf(t, "errors") {
		obj.SetName("off-" + obj.GetName())
		Expect(k8s.Create(ctx, obj)).To(Succeed())
		Eventually(func(g Gomega) {
			a := condition(g, obj, v1alpha1.ConditionAccepted)
			g.Expect(a.Status).To(Equal(metav1.ConditionFalse))
			g.Expect(a.Reason).To(Equal(string(v1alpha1.ReasonInvalid)))
			want := expectedErrors(t, obj)
			for _, w := range want {
				g.Expect(a.Message).To(ContainSubstring(w))
			}
			p := condition(g, obj, v1alpha1.ConditionProgrammed)
			g.Expect(p.Status).To(Equal(metav1.ConditionFalse))
		}).WithTimeout(timeout).Should(Succeed())
		o, _ := translate.Of(obj)
		name := translate.ConfigName(o.Kind, obj.GetNamespace(), obj.GetName())
		Expect(apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Name: name}, &v1alpha1.NodeProxyConfig{}))).To(BeTrue(), name)
	}

	older := portConfig("off-older", 10090)
	Expect(k8s.Create(ctx, older)).To(Succeed())
	programmed(t, older)
	time.Sleep(1100 * time.Millisecond) // creationTimestamp has one-second resolution
	newer := portConfig("off-newer", 10090)
	Expect(k8s.Create(ctx, newer)).To(Succeed())
	Eventually(func(g Gomega) {
		a := condition(g, newer, v1alpha1.ConditionAccepted)
		g.Expect(a.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(a.Reason).To(Equal(string(v1alpha1.ReasonConflict)))
		g.Expect(a.Message).To(ContainSubstring(`listener "default/off-older/l" of EnvoyConfig default/off-older already binds`))
	}).WithTimeout(timeout).Should(Succeed())
	Consistently(func(g Gomega) {
		g.Expect(condition(g, older, v1alpha1.ConditionProgrammed).Status).To(Equal(metav1.ConditionTrue))
	}).WithTimeout(2 * time.Second).Should(Succeed())

	// Moving the newer config to a free port makes it acceptable.
	Expect(k8s.Get(ctx, client.ObjectKeyFromObject(newer), newer)).To(Succeed())
	newer.Spec.Resources[0] = listenerResource(10091, `"stat_prefix":"t","cluster":"c"`)
	Expect(k8s.Update(ctx, newer)).To(Succeed())
	programmed(t, newer)
}

// TestS8NACK: a config that passes admission but that the node's proxy refuses
// shows Programmed=False with Envoy's error text and the node's name, and the
// configs that were served keep being served and Programmed.
func TestS8NACK(t *testing.T) {
	RegisterTestingT(t)
	ctx := context.Background()
	steady := portConfig("steady", 10100)
	Expect(k8s.Create(ctx, steady)).To(Succeed())
	programmed(t, steady)

	const nack = "Error adding/updating listener(s) default/nack-me/l: cannot bind '0.0.0.0:10101': Address already in use"
	node.Proxy.SetReject(func(typeURL string, resp *discoveryv3.DiscoveryResponse) string {
		if typeURL != resourcev3.ListenerType {
			return ""
		}
		for _, r := range resp.GetResources() {
			if strings.Contains(string(r.GetValue()), "default/nack-me/l") {
				return nack
			}
		}
		return ""
	})
	bad := portConfig("nack-me", 10101)
	t.Cleanup(func() {
		_ = k8s.Delete(ctx, bad)
		node.Proxy.SetReject(nil)
	})
	Expect(k8s.Create(ctx, bad)).To(Succeed())
	Eventually(func(g Gomega) {
		g.Expect(condition(g, bad, v1alpha1.ConditionAccepted).Status).To(Equal(metav1.ConditionTrue))
		p := condition(g, bad, v1alpha1.ConditionProgrammed)
		g.Expect(p.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(p.Reason).To(Equal(string(v1alpha1.ReasonRejected)))
		g.Expect(p.Message).To(ContainSubstring(nodeName))
		g.Expect(p.Message).To(ContainSubstring(nack))
	}).WithTimeout(timeout).Should(Succeed())
	Consistently(func(g Gomega) {
		g.Expect(condition(g, steady, v1alpha1.ConditionProgrammed).Status).To(Equal(metav1.ConditionTrue))
		_, ok := node.Proxy.State(resourcev3.ListenerType).Resources["default/steady/l"]
		g.Expect(ok).To(BeTrue(), "the steady config's listener is still served")
	}).WithTimeout(3 * time.Second).Should(Succeed())

	// Fixed (here: deleted), the node is whole again.
	Expect(k8s.Delete(ctx, bad)).To(Succeed())
	node.Proxy.SetReject(nil)
	Eventually(func(g Gomega) {
		np := &v1alpha1.NodeProxy{}
		g.Expect(k8s.Get(ctx, client.ObjectKey{Name: nodeName}, np)).To(Succeed())
		g.Expect(np.Status.Proxies).NotTo(BeEmpty())
		g.Expect(np.Status.Proxies[0].LastNACK).To(BeEmpty())
	}).WithTimeout(timeout).Should(Succeed())
}

func resource(raw string) v1alpha1.EnvoyResource {
	var r v1alpha1.EnvoyResource
	if err := r.UnmarshalJSON([]byte(raw)); err != nil {
		panic(err)
	}
	return r
}

// listenerResource is a listener "l" on 0.0.0.0:port whose filter is a TCP proxy
// (tcp, the filter's fields) or an HTTP connection manager (when fields mention rds).
func listenerResource(port int, fields string) v1alpha1.EnvoyResource {
	filter := fmt.Sprintf(`{"name":"tcp","typed_config":{"@type":"type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",%s}}`, fields)
	if strings.Contains(fields, "rds") {
		filter = fmt.Sprintf(`{"name":"hcm","typed_config":{"@type":"type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager","stat_prefix":"h",%s,"http_filters":[{"name":"envoy.filters.http.router","typed_config":{"@type":"type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}`, fields)
	}
	return resource(fmt.Sprintf(`{"@type":%q,"name":"l","address":{"socket_address":{"address":"0.0.0.0","port_value":%d}},"filter_chains":[{"filters":[%s]}]}`,
		resourcev3.ListenerType, port, filter))
}

// portConfig is a valid EnvoyConfig in default whose listener binds 0.0.0.0:port.
func portConfig(name string, port int) *v1alpha1.EnvoyConfig {
	return &v1alpha1.EnvoyConfig{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}, Spec: v1alpha1.EnvoyConfigSpec{
		Resources: []v1alpha1.EnvoyResource{
			listenerResource(port, `"stat_prefix":"t","cluster":"c"`),
			resource(fmt.Sprintf(`{"@type":%q,"name":"c","connect_timeout":"1s","type":"STATIC","load_assignment":{"cluster_name":"c","endpoints":[{"lb_endpoints":[{"endpoint":{"address":{"socket_address":{"address":"127.0.0.1","port_value":9}}}}]}]}}`, resourcev3.ClusterType)),
		}}}
}

// disableWebhook removes the EnvoyConfig webhooks from the apiserver until the test ends.
func disableWebhook(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	var list admissionregistrationv1.ValidatingWebhookConfigurationList
	Expect(k8s.List(ctx, &list)).To(Succeed())
	for i := range list.Items {
		vwc := &list.Items[i]
		saved := vwc.DeepCopy()
		var kept []admissionregistrationv1.ValidatingWebhook
		for _, w := range vwc.Webhooks {
			if !strings.Contains(w.Name, "envoyconfig") {
				kept = append(kept, w)
			}
		}
		if len(kept) == len(vwc.Webhooks) {
			continue
		}
		vwc.Webhooks = kept
		Expect(k8s.Update(ctx, vwc)).To(Succeed())
		t.Cleanup(func() {
			cur := &admissionregistrationv1.ValidatingWebhookConfiguration{}
			Expect(k8s.Get(ctx, client.ObjectKeyFromObject(saved), cur)).To(Succeed())
			cur.Webhooks = saved.Webhooks
			Expect(k8s.Update(ctx, cur)).To(Succeed())
		})
	}
	// The apiserver picks the change up from its own watch.
	probe := portConfig("probe", 10079)
	probe.Spec.Resources[0] = resource(`{"@type":"type.googleapis.com/envoy.config.listener.v3.Listener"}`)
	Eventually(func() error { return k8s.Create(ctx, probe) }).WithTimeout(timeout).Should(Succeed())
	Expect(k8s.Delete(ctx, probe)).To(Succeed())
}
