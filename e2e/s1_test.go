package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portico-dev/portico/apis/v1alpha1"
)

// lbPool is scenario S1's pool, over the cluster's scenario addresses.
func lbPool() *v1alpha1.LoadBalancerIPPool {
	first, last := cluster.Pool()
	return &v1alpha1.LoadBalancerIPPool{ObjectMeta: metav1.ObjectMeta{Name: "lb-pool"},
		Spec: v1alpha1.LoadBalancerIPPoolSpec{Blocks: []v1alpha1.IPBlock{{Start: first.String(), Stop: last.String()}}}}
}

// lbService is a LoadBalancer Service in default.
func lbService(name string) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"app": name},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}
}

// held are the pool addresses Services hold, by Service.
func held(ctx context.Context, g Gomega) map[string]netip.Addr {
	first, last := cluster.Pool()
	var list corev1.ServiceList
	g.Expect(k8s().List(ctx, &list)).To(Succeed())
	out := map[string]netip.Addr{}
	for _, s := range list.Items {
		for _, in := range s.Status.LoadBalancer.Ingress {
			if a, err := netip.ParseAddr(in.IP); err == nil && a.Compare(first) >= 0 && a.Compare(last) <= 0 {
				out[s.Namespace+"/"+s.Name] = a
			}
		}
	}
	return out
}

// poolSize is the number of addresses in the scenario pool.
func poolSize() int {
	first, last := cluster.Pool()
	n := 1
	for a := first; a != last; a = a.Next() {
		n++
	}
	return n
}

// expectAvailable waits until `kubectl get ippools lb-pool` counts every address no
// Service holds as available.
func expectAvailable(ctx context.Context) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		out, err := cluster.Kubectl(ctx, "get", "ippools", "lb-pool")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(out).To(MatchRegexp(`(?m)^lb-pool\s+false\s+False\s+%d\s+`, poolSize()-len(held(ctx, g))))
	}).Should(Succeed())
}

func describeS1() {
	Describe("S1: a pool, and a LoadBalancer Service gets an address", Label("S1"), Ordered, func() {
		svc := lbService("s1-web")

		BeforeAll(func(ctx SpecContext) {
			Eventually(func() error { return ensureErr(ctx, lbPool()) }).Should(Succeed(), "the pool webhook never admitted lb-pool")
			DeferCleanup(func(ctx SpecContext) { remove(ctx, svc) })
		})

		// The ingress controller's shared Service exists from the start, so in a full
		// install it takes the first address as soon as the pool exists: 5, then 4.
		It("shows the pool's addresses available, less those Services hold", func(ctx SpecContext) {
			expectAvailable(ctx)
			flat := strings.Join(strings.Fields(kubectl("describe", "ippool", "lb-pool")), " ")
			Expect(flat).To(ContainSubstring(fmt.Sprintf("Total: %d", poolSize())))
			Expect(flat).To(ContainSubstring("Reason: NoConflict"))
		})

		It("gives the Service a free address of the pool and counts it as used", func(ctx SpecContext) {
			before := held(ctx, Default)
			Expect(k8s().Create(ctx, svc)).To(Succeed())
			ip := serviceAddress("default", "s1-web")
			first, last := cluster.Pool()
			Expect(ip.Compare(first) >= 0 && ip.Compare(last) <= 0).To(BeTrue(), "%s is outside the pool", ip)
			Expect(before).NotTo(ContainElement(ip), "handed out an address another Service holds")
			expectAvailable(ctx)
			flat := strings.Join(strings.Fields(kubectl("describe", "ippool", "lb-pool")), " ")
			Expect(flat).To(ContainSubstring(fmt.Sprintf("Used: %d", len(before)+1)))
			Expect(kubectl("get", "service", "s1-web", "-o", "wide")).To(ContainSubstring(ip.String()))
		})

		It("refuses a pool overlapping it at admission, naming it", func(ctx SpecContext) {
			overlap := lbPool()
			overlap.Name = "s1-overlap"
			overlap.Spec.Blocks[0].Start = poolAddr(3).String()
			overlap.Spec.Blocks[0].Stop = poolAddr(7).String()
			err := k8s().Create(ctx, overlap)
			DeferCleanup(func(ctx SpecContext) { remove(ctx, overlap) })
			Expect(err).To(MatchError(ContainSubstring("lb-pool")))
		})
	})
}
