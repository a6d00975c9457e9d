package agent

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-dev/portico/apis/v1alpha1"
)

// With no admission webhook, the agent itself refuses configs that redirect an address
// of its node or the apiserver's ClusterIP, with reason ForbiddenVIP and the field in
// the message, and applies the others; an address the node gains later rejects the
// configs redirecting it from then on.
func TestAgentRefusesForbiddenVIPs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := env.Client
	const nodeName = "guard-node"
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName, Labels: map[string]string{"guard": "yes"}}}
	create(t, node)
	node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.65.0.11"}}
	must(t, c.Status().Update(ctx, node))
	api := &corev1.Service{}
	must(t, c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "kubernetes"}, api))

	config := func(name, listener, vip string, port int32) *v1alpha1.NodeProxyConfig {
		return &v1alpha1.NodeProxyConfig{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: v1alpha1.NodeProxyConfigSpec{
				NodeSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"guard": "yes"}},
				Redirects:    []v1alpha1.Redirect{{Name: "r", VIP: vip, Port: port, Protocol: v1alpha1.ProtocolTCP, Listener: listener}},
				Envoy: &v1alpha1.EnvoyResources{Resources: []v1alpha1.EnvoyResource{
					envoyResource(t, strings.Replace(listenerJSON, `"name":"web"`, `"name":"`+listener+`"`, 1))}},
			},
		}
	}
	create(t, config("guard-ok", "guard-web", "192.0.2.65", 80))
	create(t, config("guard-node-ip", "guard-ssh", "10.65.0.11", 22))
	create(t, config("guard-apiserver", "guard-api", api.Spec.ClusterIP, 443))
	runAgent(t, ctx, nodeName, Config{DisableL2: true}, false)

	want := map[string]string{
		"guard-node-ip":   `spec.redirects[0].vip: Invalid value: "10.65.0.11": is an address of node guard-node (InternalIP)`,
		"guard-apiserver": `spec.redirects[0].vip: Invalid value: "` + api.Spec.ClusterIP + `": is the ClusterIP of Service default/kubernetes (the apiserver)`,
	}
	np := &v1alpha1.NodeProxy{}
	rejectedAsWanted := func(redirects int32) func() bool {
		return func() bool {
			if err := c.Get(ctx, client.ObjectKey{Name: nodeName}, np); err != nil {
				return false
			}
			st := np.Status
			if len(st.Rejected) != len(want) || st.Counters.Redirects != redirects {
				return false
			}
			for _, r := range st.Rejected {
				if r.Reason != v1alpha1.ReasonForbiddenVIP || !strings.HasPrefix(r.Message, want[r.Name]) {
					return false
				}
			}
			return true
		}
	}
	eventually(t, 20*time.Second, "the two forbidden configs are rejected, the other applied", rejectedAsWanted(1))
	t.Logf("rejected: %+v", np.Status.Rejected)

	node.Status.Addresses = append(node.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: "192.0.2.65"})
	must(t, c.Status().Update(ctx, node))
	want["guard-ok"] = `spec.redirects[0].vip: Invalid value: "192.0.2.65": is an address of node guard-node (ExternalIP)`
	eventually(t, 20*time.Second, "a config redirecting the node's new address is rejected", rejectedAsWanted(0))
}
