package e2e

import (
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-dev/portico/apis/v1alpha1"
)

var _ = Describe("S1: a pool, and a LoadBalancer Service gets an address", Ordered, func() {
	pool := &v1alpha1.LoadBalancerIPPool{
		ObjectMeta: metav1.ObjectMeta{Name: "lb-pool"},
		Spec:       v1alpha1.LoadBalancerIPPoolSpec{Blocks: []v1alpha1.IPBlock{{Start: "192.168.10.211", Stop: "192.168.10.215"}}},
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "s1-web", Namespace: "default"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"app": "web"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
	}

	BeforeAll(func(ctx SpecContext) {
		Expect(k8s.Create(ctx, pool)).To(Succeed())
		DeferCleanup(func(ctx SpecContext) { Expect(client.IgnoreNotFound(k8s.Delete(ctx, pool))).To(Succeed()) })
	})

	It("shows the pool with 5 addresses available right after creation", func() {
		Eventually(func() (string, error) { return kubectl("get", "ippools", "lb-pool") }).
			Should(MatchRegexp(`(?m)^lb-pool\s+false\s+False\s+5\s+`))
	})

	It("gives the Service the first address and counts it as used", func(ctx SpecContext) {
		Expect(k8s.Create(ctx, svc)).To(Succeed())
		DeferCleanup(func(ctx SpecContext) { Expect(client.IgnoreNotFound(k8s.Delete(ctx, svc))).To(Succeed()) })
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(svc), svc)).To(Succeed())
			g.Expect(svc.Status.LoadBalancer.Ingress).To(HaveLen(1))
			g.Expect(svc.Status.LoadBalancer.Ingress[0].IP).To(Equal("192.168.10.211"))
		}).WithTimeout(10 * time.Second).Should(Succeed())
		Eventually(func() (string, error) { return kubectl("get", "ippools", "lb-pool") }).
			Should(MatchRegexp(`(?m)^lb-pool\s+false\s+False\s+4\s+`))
		desc, err := kubectl("describe", "ippool", "lb-pool")
		Expect(err).NotTo(HaveOccurred())
		flat := strings.Join(strings.Fields(desc), " ")
		Expect(flat).To(ContainSubstring("Total: 5"))
		Expect(flat).To(ContainSubstring("Used: 1"))
		Expect(flat).To(ContainSubstring("Reason: NoConflict"))
	})
})
