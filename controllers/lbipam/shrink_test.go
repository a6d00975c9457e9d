package lbipam_test

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-dev/portico/apis/v1alpha1"
	lbipamapi "github.com/portico-dev/portico/internal/lbipam"
)

// Shrinking a pool under Services takes their addresses only with a Warning Event and a
// condition naming the pool and what happened: a Service that can move gets a new
// address and says which one it lost; one that asked for the lost address is left
// without, with reason IPRemovedFromPool.
func TestShrinkingAPoolSaysWhy(t *testing.T) {
	ns := newNamespace(t)
	newPool(t, "shrink", ns, block("10.63.0.1", "10.63.0.9"))
	newService(t, ns, "free")
	eventuallyIPs(t, ns, "free", "10.63.0.1")
	newService(t, ns, "fixed", withAnnotation(lbipamapi.AnnotationIPs, "10.63.0.8"))
	eventuallyIPs(t, ns, "fixed", "10.63.0.8")

	updatePool(t, "shrink", func(p *v1alpha1.LoadBalancerIPPool) {
		p.Spec.Blocks = []v1alpha1.IPBlock{block("10.63.0.2", "10.63.0.5")}
	})
	const why = "pool shrink no longer contains it (its blocks changed), and no other pool that selects the Service contains it"
	cond := eventuallyIPs(t, ns, "free", "10.63.0.2")
	NewWithT(t).Expect(cond.Reason).To(Equal(string(v1alpha1.ReasonSatisfied)))
	NewWithT(t).Expect(cond.Message).To(Equal("assigned 10.63.0.2 from pool shrink; released 10.63.0.1: " + why))
	eventuallyIPs(t, ns, "fixed")
	eventuallyCondition(t, ns, "fixed", metav1.ConditionFalse, v1alpha1.ReasonIPRemovedFromPool, "released 10.63.0.8: "+why)
	// Later reconciles (the release itself requeues waiting Services) keep saying why.
	NewWithT(t).Consistently(func(g Gomega) {
		_, cond := ips(t, ns, "fixed")
		g.Expect(cond.Reason).To(Equal(string(v1alpha1.ReasonIPRemovedFromPool)))
		g.Expect(cond.Message).To(Equal("no pool contains the requested 10.63.0.8; released 10.63.0.8: " + why))
	}).WithTimeout(time.Second).Should(Succeed())

	for svc, addr := range map[string]string{"free": "10.63.0.1", "fixed": "10.63.0.8"} {
		NewWithT(t).Eventually(func(g Gomega) {
			var events corev1.EventList
			g.Expect(k8s.List(context.Background(), &events, client.InNamespace(ns))).To(Succeed())
			var found []string
			for _, e := range events.Items {
				if e.InvolvedObject.Name == svc && e.Type == corev1.EventTypeWarning && e.Reason == string(v1alpha1.ReasonIPRemovedFromPool) {
					found = append(found, e.Message)
				}
			}
			g.Expect(found).To(ContainElement("released " + addr + ": " + why))
		}).WithTimeout(10*time.Second).Should(Succeed(), svc)
	}
}
