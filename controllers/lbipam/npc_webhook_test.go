package lbipam_test

import (
	"context"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-dev/portico/apis/v1alpha1"
)

func redirectTo(name, vip string, port int32) *v1alpha1.NodeProxyConfig {
	return &v1alpha1.NodeProxyConfig{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.NodeProxyConfigSpec{
		Redirects: []v1alpha1.Redirect{
			{Name: "web", VIP: "192.0.2.80", Port: 80, Listener: "web"},
			{Name: "target", VIP: vip, Port: port, Listener: "web"},
		},
	}}
}

// The NodeProxyConfig webhook lbipam-controller serves refuses redirects to a node's own
// addresses and to the apiserver's ClusterIP, naming the field; an update that keeps a
// VIP that became a node address later is not blocked by it.
func TestNodeProxyConfigWebhook(t *testing.T) {
	ctx := context.Background()
	g := NewWithT(t)
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "npc-webhook-node"}}
	g.Expect(k8s.Create(ctx, node)).To(Succeed())
	t.Cleanup(func() { _ = k8s.Delete(ctx, node) })
	node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.64.0.11"}, {Type: corev1.NodeExternalIP, Address: "2001:db8:64::11"}}
	g.Expect(k8s.Status().Update(ctx, node)).To(Succeed())
	api := &corev1.Service{}
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: "default", Name: "kubernetes"}, api)).To(Succeed())

	for _, tc := range []struct {
		name, vip string
		want      string
	}{
		{"node-internal", "10.64.0.11", `spec.redirects[1].vip: Invalid value: "10.64.0.11": is an address of node npc-webhook-node (InternalIP)`},
		{"node-external", "2001:db8:64::11", `spec.redirects[1].vip: Invalid value: "2001:db8:64::11": is an address of node npc-webhook-node (ExternalIP)`},
		{"apiserver", api.Spec.ClusterIP, `spec.redirects[1].vip: Invalid value: "` + api.Spec.ClusterIP + `": is the ClusterIP of Service default/kubernetes (the apiserver)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The webhook's Node cache may lag the status update a moment.
			NewWithT(t).Eventually(func() string {
				err := k8s.Create(ctx, redirectTo("npc-"+tc.name, tc.vip, 22))
				if err == nil {
					_ = k8s.Delete(ctx, redirectTo("npc-"+tc.name, tc.vip, 22))
					return "accepted"
				}
				if !apierrors.IsInvalid(err) {
					return "not an Invalid error: " + err.Error()
				}
				return err.Error()
			}).WithTimeout(10 * time.Second).Should(ContainSubstring(tc.want))
		})
	}

	// A config whose VIP later becomes a node's address can still be updated (the node
	// agent refuses it for that node), but an update cannot add such a VIP.
	ok := redirectTo("npc-later", "10.64.0.12", 80)
	g.Expect(k8s.Create(ctx, ok)).To(Succeed())
	t.Cleanup(func() { _ = k8s.Delete(ctx, ok) })
	node.Status.Addresses = append(node.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: "10.64.0.12"})
	g.Expect(k8s.Status().Update(ctx, node)).To(Succeed())
	g.Eventually(func() error { // until the webhook's Node cache has the new address
		probe := redirectTo("npc-probe", "10.64.0.12", 80)
		err := k8s.Create(ctx, probe)
		if err == nil {
			_ = k8s.Delete(ctx, probe)
		}
		return err
	}).WithTimeout(10 * time.Second).Should(MatchError(ContainSubstring("is an address of node npc-webhook-node")))
	g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(ok), ok)).To(Succeed())
	grown := ok.DeepCopy()
	grown.Spec.Redirects = append(grown.Spec.Redirects, v1alpha1.Redirect{Name: "more", VIP: "10.64.0.11", Port: 8080, Listener: "web"})
	g.Expect(k8s.Update(ctx, grown)).To(MatchError(ContainSubstring(`spec.redirects[2].vip: Invalid value: "10.64.0.11": is an address of node npc-webhook-node`)))
	ok.Spec.Redirects[0].Port = 81 // keeps 10.64.0.12, which the node gained after admission
	g.Expect(k8s.Update(ctx, ok)).To(Succeed())

	// Announcements selecting more than one node are refused by the CRD rule itself.
	err := k8s.Create(ctx, &v1alpha1.NodeProxyConfig{ObjectMeta: metav1.ObjectMeta{Name: "npc-announce-all"}, Spec: v1alpha1.NodeProxyConfigSpec{
		NodeSelector:  &metav1.LabelSelector{MatchLabels: map[string]string{"node-role.kubernetes.io/edge": ""}},
		Announcements: []v1alpha1.Announcement{{IP: "192.0.2.7", Service: v1alpha1.ServiceRef{Namespace: "default", Name: "web"}}},
	}})
	if err == nil || !strings.Contains(err.Error(), "spec.nodeSelector: Invalid value: announcements require a nodeSelector that selects one node") {
		t.Fatalf("announcements on several nodes: %v", err)
	}
}
