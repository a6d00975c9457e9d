package lbipam_test

import (
	"context"
	"testing"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/conditions"
)

// A block that spans loopback addresses with both ends outside them passes CEL (which
// cannot compare addresses); with the webhook off the controller still refuses it:
// Ready=False, Invalid, naming the field, and it gives out no address.
func TestReservedBlockWithoutWebhook(t *testing.T) {
	ctx := context.Background()
	g := NewWithT(t)
	ns := newNamespace(t)
	restore := disableWebhook(t)
	defer restore()
	p := &v1alpha1.LoadBalancerIPPool{ObjectMeta: metav1.ObjectMeta{Name: "spans-loopback"}, Spec: v1alpha1.LoadBalancerIPPoolSpec{
		Blocks:          []v1alpha1.IPBlock{block("126.255.255.250", "128.0.0.5")},
		ServiceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"io.kubernetes.service.namespace": ns}},
	}}
	g.Eventually(func() error { return k8s.Create(ctx, p.DeepCopy()) }).Should(Succeed())
	t.Cleanup(func() { deletePool(t, p.Name) })
	restore()

	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(p), p)).To(Succeed())
		c := conditions.Get(p.Status.Conditions, v1alpha1.ConditionReady)
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(c.Reason).To(Equal(string(v1alpha1.ReasonInvalid)))
		g.Expect(c.Message).To(Equal(`spec.blocks[0]: Invalid value: "126.255.255.250-128.0.0.5": must not contain loopback addresses (127.0.0.0/8, ::1)`))
		g.Expect(p.Status.Available).To(BeZero())
	}).Should(Succeed())
	newService(t, ns, "web")
	g.Expect(eventuallyIPs(t, ns, "web").Status).To(Equal(metav1.ConditionFalse))
}
