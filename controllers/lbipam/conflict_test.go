package lbipam_test

import (
	"cmp"
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/controllers/lbipam"
	"github.com/portico-dev/portico/internal/conditions"
)

// Two overlapping pools created at the same instant, with the webhook on: each create's
// overlap check may miss the other (the webhook reads a cache), so both can be admitted.
// The controller must then mark exactly the newer one Conflicting, newer meaning later
// creationTimestamp or, within the same second, later commit (higher creation
// resourceVersion): a tie settled by name would pick the wrong one about half the time.
// Services created meanwhile never get the same address twice.
func TestConcurrentOverlappingPools(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	const rounds = 6
	bothAdmitted := 0
	var pairs [][2]string // newer, older
	for round := range rounds {
		net := fmt.Sprintf("10.62.%d.", round)
		// Names sort against the creation order in half of the rounds.
		names := [2]string{fmt.Sprintf("race%d-a", round), fmt.Sprintf("race%d-b", round)}
		pools := [2]*v1alpha1.LoadBalancerIPPool{}
		for i, blocks := range [2][]v1alpha1.IPBlock{{block(net+"1", net+"4")}, {block(net+"3", net+"6")}} {
			pools[i] = &v1alpha1.LoadBalancerIPPool{ObjectMeta: metav1.ObjectMeta{Name: names[i]}, Spec: v1alpha1.LoadBalancerIPPoolSpec{
				Blocks:          blocks,
				ServiceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"io.kubernetes.service.namespace": ns, "round": strconv.Itoa(round)}},
			}}
		}
		var errs [2]error
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range pools {
			wg.Go(func() {
				<-start
				errs[i] = k8s.Create(ctx, pools[i])
			})
		}
		// Services asking for addresses while the pools appear.
		svcs := make([]string, 6)
		svcErrs := make([]error, len(svcs))
		for i := range svcs {
			svcs[i] = fmt.Sprintf("r%d-s%d", round, i)
			wg.Go(func() {
				<-start
				svcErrs[i] = k8s.Create(ctx, &corev1.Service{
					ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: svcs[i], Labels: map[string]string{"round": strconv.Itoa(round)}},
					Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer,
						Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}},
				})
			})
		}
		close(start)
		wg.Wait()
		for i, err := range svcErrs {
			if err != nil {
				t.Fatal(err)
			}
			// Gone before later tests add pools that select every Service.
			t.Cleanup(func() {
				_ = k8s.Delete(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: svcs[i]}})
			})
		}
		for i, err := range errs {
			if err == nil {
				t.Cleanup(func() { deletePool(t, names[i]) })
			}
		}

		switch {
		case errs[0] == nil && errs[1] == nil:
			bothAdmitted++
			newer, older := pools[1], pools[0]
			if newerThan(pools[0], pools[1]) {
				newer, older = pools[0], pools[1]
			}
			t.Logf("round %d: both admitted; %s (rv %s, %s) is newer than %s (rv %s, %s)", round,
				newer.Name, newer.ResourceVersion, newer.CreationTimestamp.Format(time.RFC3339),
				older.Name, older.ResourceVersion, older.CreationTimestamp.Format(time.RFC3339))
			pairs = append(pairs, [2]string{newer.Name, older.Name})
			eventuallyConflicting(t, newer.Name, true, "overlaps pool "+older.Name)
			eventuallyConflicting(t, older.Name, false, "")
			NewWithT(t).Consistently(func(g Gomega) {
				g.Expect(conflicting(g, older.Name)).To(BeFalse())
			}).WithTimeout(time.Second).Should(Succeed())
		case errs[0] == nil || errs[1] == nil:
			// The webhook saw the other pool: the refusal names it.
			for i, err := range errs {
				if err != nil && !strings.Contains(err.Error(), fmt.Sprintf("spec.blocks[0]: Invalid value: %q: overlaps pool %q", pools[i].Spec.Blocks[0].Start+"-"+pools[i].Spec.Blocks[0].Stop, names[1-i])) {
					t.Fatalf("round %d: %s refused without naming the other pool: %v", round, names[i], err)
				}
			}
		default:
			t.Fatalf("round %d: both refused: %v", round, errs)
		}
		distinctAddresses(t, ns, svcs, net, 4)
	}
	t.Logf("%d of %d rounds admitted both pools", bothAdmitted, rounds)
	if bothAdmitted == 0 {
		t.Fatal("the webhook never admitted both pools: the race this test is about did not happen")
	}

	// A restarted controller lists the pools without their creation order: it keeps the
	// marks their status records rather than settling same-second ties by name.
	stopManager()
	var err error
	stopManager, err = startController(lbipam.Options{})
	if err != nil {
		t.Fatal(err)
	}
	NewWithT(t).Consistently(func(g Gomega) {
		for _, p := range pairs {
			g.Expect(conflicting(g, p[0])).To(BeTrue(), p[0])
			g.Expect(conflicting(g, p[1])).To(BeFalse(), p[1])
		}
	}).WithTimeout(2 * time.Second).Should(Succeed())
}

// newerThan reports whether a was created after b: a later second, or within the same
// second a later commit. Resource versions are etcd revisions (integers) here.
func newerThan(a, b *v1alpha1.LoadBalancerIPPool) bool {
	if c := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); c != 0 {
		return c > 0
	}
	ra, err1 := strconv.ParseUint(a.ResourceVersion, 10, 64)
	rb, err2 := strconv.ParseUint(b.ResourceVersion, 10, 64)
	if err1 != nil || err2 != nil {
		panic("resource versions are not integers: " + a.ResourceVersion + ", " + b.ResourceVersion)
	}
	return cmp.Compare(ra, rb) > 0
}

func eventuallyConflicting(t *testing.T, name string, want bool, msg string) {
	t.Helper()
	NewWithT(t).Eventually(func(g Gomega) {
		g.Expect(conflicting(g, name)).To(Equal(want))
		g.Expect(conflictMessage(g, name)).To(ContainSubstring(msg))
	}).WithTimeout(10 * time.Second).Should(Succeed())
}

// conflicting reads the pool's Conflicting condition for its current generation.
func conflicting(g Gomega, name string) bool {
	return conflictCondition(g, name).Status == metav1.ConditionTrue
}

func conflictMessage(g Gomega, name string) string { return conflictCondition(g, name).Message }

func conflictCondition(g Gomega, name string) *metav1.Condition {
	p := &v1alpha1.LoadBalancerIPPool{}
	g.Expect(k8s.Get(context.Background(), client.ObjectKey{Name: name}, p)).To(Succeed())
	c := conditions.Get(p.Status.Conditions, v1alpha1.ConditionConflicting)
	g.Expect(c).NotTo(BeNil())
	g.Expect(c.ObservedGeneration).To(Equal(p.Generation))
	return c
}

// distinctAddresses waits until at least min of the Services hold an address, then
// checks that every held address is in the round's range and none is held twice.
func distinctAddresses(t *testing.T, ns string, svcs []string, prefix string, min int) {
	t.Helper()
	NewWithT(t).Eventually(func(g Gomega) {
		seen := map[string]string{}
		for _, name := range svcs {
			got, _ := ips(t, ns, name)
			for _, ip := range got {
				g.Expect(seen).NotTo(HaveKey(ip), "%s handed to %s and %s", ip, seen[ip], name)
				seen[ip] = name
				a := netip.MustParseAddr(ip)
				g.Expect(strings.HasPrefix(a.String(), prefix)).To(BeTrue(), "%s outside the round's pools", ip)
			}
		}
		g.Expect(len(seen)).To(BeNumerically(">=", min))
	}).WithTimeout(10 * time.Second).Should(Succeed())
}
