package lbipam_test

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/controllers/lbipam"
	"github.com/portico-dev/portico/internal/conditions"
	lbipamapi "github.com/portico-dev/portico/internal/lbipam"
)

func block(start, stop string) v1alpha1.IPBlock { return v1alpha1.IPBlock{Start: start, Stop: stop} }

// Scenario S1: a pool and a LoadBalancer Service that gets the pool's first address.
func TestScenarioS1PoolAndService(t *testing.T) {
	ctx := context.Background()
	g := NewWithT(t)
	ns := newNamespace(t)
	newPool(t, "lb-pool", "", block("192.168.10.211", "192.168.10.215"))

	g.Eventually(func() string {
		out, _ := env.Kubectl(ctx, "get", "ippools")
		return out
	}).Should(MatchRegexp(`(?m)^lb-pool\s+false\s+False\s+5\s+`))

	newService(t, ns, "web")
	cond := eventuallyIPs(t, ns, "web", "192.168.10.211")
	g.Expect(cond.Status).To(Equal(metav1.ConditionTrue))
	g.Expect(cond.Reason).To(Equal(string(v1alpha1.ReasonSatisfied)))
	g.Expect(cond.Message).To(Equal("assigned 192.168.10.211 from pool lb-pool"))

	g.Eventually(func() string {
		out, _ := env.Kubectl(ctx, "get", "ippools")
		return out
	}).Should(MatchRegexp(`(?m)^lb-pool\s+false\s+False\s+4\s+`))
	desc, err := env.Kubectl(ctx, "describe", "ippool", "lb-pool")
	g.Expect(err).NotTo(HaveOccurred())
	flat := strings.Join(strings.Fields(desc), " ")
	for _, want := range []string{"Total: 5", "Used: 1", "Available: 4", "Type: Ready", "Reason: Valid", "Type: Conflicting", "Reason: NoConflict"} {
		g.Expect(flat).To(ContainSubstring(want))
	}
	// The user also sees why in `kubectl describe service`: an Event names the pool.
	g.Eventually(func() string {
		out, _ := env.Kubectl(ctx, "describe", "service", "-n", ns, "web")
		return strings.Join(strings.Fields(out), " ")
	}).Should(MatchRegexp(`Normal Satisfied \S+ lbipam-controller assigned 192\.168\.10\.211 from pool lb-pool`))
	svc := &corev1.Service{}
	g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "web"}, svc)).To(Succeed())
	g.Expect(*svc.Status.LoadBalancer.Ingress[0].IPMode).To(Equal(corev1.LoadBalancerIPModeVIP))
	g.Expect(k8s.Delete(ctx, svc)).To(Succeed())
}

func TestRequestedIPsAndProxyMode(t *testing.T) {
	ns := newNamespace(t)
	newPool(t, "requested", ns, block("10.50.0.1", "10.50.0.9"))
	newService(t, ns, "by-annotation", withAnnotation(lbipamapi.AnnotationIPs, "10.50.0.7"), withAnnotation(lbipamapi.AnnotationIPMode, "Proxy"))
	newService(t, ns, "by-spec", func(s *corev1.Service) { s.Spec.LoadBalancerIP = "10.50.0.5" })
	eventuallyIPs(t, ns, "by-annotation", "10.50.0.7")
	eventuallyIPs(t, ns, "by-spec", "10.50.0.5")
	svc := &corev1.Service{}
	NewWithT(t).Expect(k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "by-annotation"}, svc)).To(Succeed())
	NewWithT(t).Expect(*svc.Status.LoadBalancer.Ingress[0].IPMode).To(Equal(corev1.LoadBalancerIPModeProxy))

	newService(t, ns, "outside", withAnnotation(lbipamapi.AnnotationIPs, "10.60.0.1"))
	eventuallyCondition(t, ns, "outside", metav1.ConditionFalse, v1alpha1.ReasonNoPool, "no pool contains the requested 10.60.0.1")
	newService(t, ns, "garbage", withAnnotation(lbipamapi.AnnotationIPs, "10.50.0.300"))
	eventuallyCondition(t, ns, "garbage", metav1.ConditionFalse, v1alpha1.ReasonInvalidRequest, `"10.50.0.300" is not an IP address`)
}

func TestSharing(t *testing.T) {
	ns, other := newNamespace(t), newNamespace(t)
	p := newPool(t, "sharing", "", block("10.51.0.1", "10.51.0.9"))
	NewWithT(t).Eventually(func() error { // the controller writes status meanwhile
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(p), p); err != nil {
			return err
		}
		p.Spec.ServiceSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
			Key: "io.kubernetes.service.namespace", Operator: metav1.LabelSelectorOpIn, Values: []string{ns, other}}}}
		return k8s.Update(context.Background(), p)
	}).Should(Succeed())

	key := withAnnotation(lbipamapi.AnnotationSharingKey, "k1")
	newService(t, ns, "http", key, withPorts(80))
	eventuallyIPs(t, ns, "http", "10.51.0.1")
	newService(t, ns, "https", key, withPorts(443))
	eventuallyIPs(t, ns, "https", "10.51.0.1")

	// Port clash: refused, and the reason names the port and the holder.
	newService(t, ns, "clash", key, withPorts(80), withAnnotation(lbipamapi.AnnotationIPs, "10.51.0.1"))
	eventuallyCondition(t, ns, "clash", metav1.ConditionFalse, v1alpha1.ReasonIncompatibleSharing, "port 80/TCP is also used by "+ns+"/http")
	// Policy: externalTrafficPolicy differs.
	newService(t, ns, "local", key, withPorts(8080), func(s *corev1.Service) {
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	})
	eventuallyCondition(t, ns, "local", metav1.ConditionFalse, v1alpha1.ReasonIncompatibleSharing, "externalTrafficPolicy differs")
	// Cross-namespace: refused with the annotation on one side only, allowed with both.
	newService(t, other, "x", key, withPorts(9000), withAnnotation(lbipamapi.AnnotationSharingCrossNamespace, "*"))
	eventuallyCondition(t, other, "x", metav1.ConditionFalse, v1alpha1.ReasonIncompatibleSharing, lbipamapi.AnnotationSharingCrossNamespace)
	for _, holder := range []string{"http", "https"} {
		NewWithT(t).Eventually(func() error {
			svc := &corev1.Service{}
			if err := k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: holder}, svc); err != nil {
				return err
			}
			svc.Annotations[lbipamapi.AnnotationSharingCrossNamespace] = other
			return k8s.Update(context.Background(), svc)
		}).Should(Succeed())
	}
	// A waiting Service is retried on its own change or when addresses free up, not when
	// a peer changes; re-apply it as a user would.
	NewWithT(t).Eventually(func() error {
		x := &corev1.Service{}
		if err := k8s.Get(context.Background(), types.NamespacedName{Namespace: other, Name: "x"}, x); err != nil {
			return err
		}
		x.Labels = map[string]string{"retry": "1"}
		return k8s.Update(context.Background(), x)
	}).Should(Succeed())
	eventuallyIPs(t, other, "x", "10.51.0.1")
}

func TestDualStack(t *testing.T) {
	ns := newNamespace(t)
	newPool(t, "dual", ns, v1alpha1.IPBlock{CIDR: "10.52.0.0/30"}, v1alpha1.IPBlock{CIDR: "2001:db8:52::/64"})
	newService(t, ns, "both", func(s *corev1.Service) {
		p := corev1.IPFamilyPolicyRequireDualStack
		s.Spec.IPFamilyPolicy = &p
		s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol, corev1.IPv4Protocol}
	})
	eventuallyIPs(t, ns, "both", "2001:db8:52::", "10.52.0.1")
	// A /64 pool reports its size without allocating memory for it.
	pool := &v1alpha1.LoadBalancerIPPool{}
	NewWithT(t).Eventually(func(g Gomega) {
		g.Expect(k8s.Get(context.Background(), types.NamespacedName{Name: "dual"}, pool)).To(Succeed())
		g.Expect(pool.Status.IPv6).NotTo(BeNil())
		g.Expect(pool.Status.IPv6.Total).To(Equal(int64(9223372036854775807)))
		g.Expect(pool.Status.IPv6.Used).To(Equal(int64(1)))
		g.Expect(*pool.Status.IPv4).To(Equal(v1alpha1.IPFamilyCounts{Total: 2, Used: 1, Available: 1}))
	}).WithTimeout(10 * time.Second).Should(Succeed()) // counts are written at most once a second
}

func TestDisabledPoolAndOutOfIPs(t *testing.T) {
	ctx := context.Background()
	g := NewWithT(t)
	ns := newNamespace(t)
	p := newPool(t, "small", ns, block("10.53.0.1", "10.53.0.1"))
	newService(t, ns, "first")
	eventuallyIPs(t, ns, "first", "10.53.0.1")
	newService(t, ns, "second")
	eventuallyCondition(t, ns, "second", metav1.ConditionFalse, v1alpha1.ReasonOutOfIPs, "small is full")
	g.Eventually(func() string {
		out, _ := env.Kubectl(ctx, "get", "events", "-n", ns, "--field-selector", "involvedObject.name=second")
		return out
	}).Should(ContainSubstring("OutOfIPs"))

	// Disabled: keeps the existing allocation, makes no new one even with room.
	updatePool(t, p.Name, func(p *v1alpha1.LoadBalancerIPPool) {
		p.Spec.Disabled = true
		p.Spec.Blocks = []v1alpha1.IPBlock{block("10.53.0.1", "10.53.0.3")}
	})
	eventuallyCondition(t, ns, "second", metav1.ConditionFalse, v1alpha1.ReasonOutOfIPs, "small is disabled")
	eventuallyIPs(t, ns, "first", "10.53.0.1")

	// Enabled again: the waiting Service gets an address without being touched.
	updatePool(t, p.Name, func(p *v1alpha1.LoadBalancerIPPool) { p.Spec.Disabled = false })
	eventuallyIPs(t, ns, "second", "10.53.0.2")
}

// The webhook refuses overlaps; with it disabled the controller marks the newer pool
// Conflicting, gives out nothing from it, and clears the mark when the overlap goes.
func TestOverlapMarkedAndResolved(t *testing.T) {
	ctx := context.Background()
	g := NewWithT(t)
	ns := newNamespace(t)
	newPool(t, "older", ns, block("10.54.0.1", "10.54.0.4"))
	time.Sleep(1100 * time.Millisecond) // creation timestamps have one-second resolution

	restore := disableWebhook(t)
	defer restore()

	// The apiserver sees the webhook configuration go away through its own informer,
	// so admission may refuse the overlap for a moment after the Delete returns.
	newer := &v1alpha1.LoadBalancerIPPool{ObjectMeta: metav1.ObjectMeta{Name: "newer"}, Spec: v1alpha1.LoadBalancerIPPoolSpec{
		Blocks:          []v1alpha1.IPBlock{block("10.54.0.3", "10.54.0.8")},
		ServiceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"io.kubernetes.service.namespace": ns}},
	}}
	g.Eventually(func() error { return k8s.Create(ctx, newer.DeepCopy()) }).Should(Succeed())
	t.Cleanup(func() { deletePool(t, newer.Name) })
	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(newer), newer)).To(Succeed())
		c := conditions.Get(newer.Status.Conditions, v1alpha1.ConditionConflicting)
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.Status).To(Equal(metav1.ConditionTrue))
		g.Expect(c.Message).To(ContainSubstring("range 10.54.0.3-10.54.0.4 overlaps pool older"))
		g.Expect(newer.Status.Available).To(BeZero())
	}).Should(Succeed())
	newService(t, ns, "wants-newer", withAnnotation(lbipamapi.AnnotationIPs, "10.54.0.7"))
	eventuallyCondition(t, ns, "wants-newer", metav1.ConditionFalse, v1alpha1.ReasonOutOfIPs, "newer overlaps pool older")

	updatePool(t, newer.Name, func(p *v1alpha1.LoadBalancerIPPool) {
		p.Spec.Blocks = []v1alpha1.IPBlock{block("10.54.0.5", "10.54.0.8")}
	})
	restore()
	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(newer), newer)).To(Succeed())
		g.Expect(conditions.IsTrue(newer.Status.Conditions, newer.Generation, v1alpha1.ConditionConflicting)).To(BeFalse())
		g.Expect(newer.Status.Available).To(BeNumerically(">", 0))
	}).Should(Succeed())
	eventuallyIPs(t, ns, "wants-newer", "10.54.0.7")
}

func TestPoolDeletionReleasesAndReallocates(t *testing.T) {
	ns := newNamespace(t)
	newPool(t, "first-pool", ns, block("10.55.0.1", "10.55.0.2"))
	newService(t, ns, "svc")
	eventuallyIPs(t, ns, "svc", "10.55.0.1")
	newPool(t, "second-pool", ns, block("10.56.0.1", "10.56.0.2"))
	deletePool(t, "first-pool")
	cond := eventuallyIPs(t, ns, "svc", "10.56.0.1")
	NewWithT(t).Expect(cond.Message).To(ContainSubstring("released 10.55.0.1: pool first-pool was deleted, and no other pool that selects the Service contains it"))
	deletePool(t, "second-pool")
	eventuallyIPs(t, ns, "svc")
	eventuallyCondition(t, ns, "svc", metav1.ConditionFalse, v1alpha1.ReasonIPRemovedFromPool, "no LoadBalancerIPPool has IPv4 addresses")
}

func TestOtherClassesAreLeftAlone(t *testing.T) {
	ns := newNamespace(t)
	newPool(t, "classes", ns, block("10.57.0.1", "10.57.0.9"))
	newService(t, ns, "theirs", func(s *corev1.Service) { s.Spec.LoadBalancerClass = ptrTo("example.com/other") })
	newService(t, ns, "ours", func(s *corev1.Service) { s.Spec.LoadBalancerClass = ptrTo(lbipamapi.LoadBalancerClass) })
	eventuallyIPs(t, ns, "ours", "10.57.0.1")
	NewWithT(t).Consistently(func() int {
		got, cond := ips(t, ns, "theirs")
		if cond != nil {
			return -1
		}
		return len(got)
	}).WithTimeout(time.Second).Should(BeZero())
}

// Restarting the controller with many assigned Services changes no address, and a
// Service created meanwhile gets a free one (nothing is handed out twice).
func TestRestartChangesNoAddress(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	newPool(t, "restart", ns, v1alpha1.IPBlock{CIDR: "10.58.0.0/24"})
	const n = 60
	for i := range n {
		newService(t, ns, "s"+itoa(i))
	}
	before := snapshot(t, ns, n)

	stopManager()
	// While no controller runs, a pool that sorts first appears: a controller that
	// allocated before registering would now hand its addresses out again.
	newPool(t, "a-restart", ns, v1alpha1.IPBlock{CIDR: "10.58.1.0/24"})
	newService(t, ns, "during")
	var err error
	stopManager, err = startController(lbipam.Options{})
	g.Expect(err).NotTo(HaveOccurred())

	eventuallyIPs(t, ns, "during", "10.58.1.1")
	after := snapshot(t, ns, n)
	g.Expect(after).To(Equal(before))
}

func snapshot(t *testing.T, ns string, n int) map[string]string {
	t.Helper()
	out := map[string]string{}
	NewWithT(t).Eventually(func(g Gomega) {
		var list corev1.ServiceList
		g.Expect(k8s.List(context.Background(), &list, client.InNamespace(ns))).To(Succeed())
		seen := map[string]string{}
		for _, s := range list.Items {
			if !strings.HasPrefix(s.Name, "s") || len(s.Status.LoadBalancer.Ingress) != 1 {
				continue
			}
			ip := s.Status.LoadBalancer.Ingress[0].IP
			g.Expect(seen).NotTo(HaveKey(ip), "address handed out twice")
			seen[ip] = s.Name
			out[s.Name] = ip
		}
		g.Expect(out).To(HaveLen(n))
	}).WithTimeout(20 * time.Second).Should(Succeed())
	return out
}

func TestWebhookRejections(t *testing.T) {
	ctx := context.Background()
	newPool(t, "existing", "", block("10.59.0.10", "10.59.0.20"))
	for _, tc := range []struct {
		name string
		spec v1alpha1.LoadBalancerIPPoolSpec
		want string
	}{
		{"start after stop", v1alpha1.LoadBalancerIPPoolSpec{Blocks: []v1alpha1.IPBlock{block("10.59.1.9", "10.59.1.1")}},
			`spec.blocks[0].stop: Invalid value: "10.59.1.1": must not be before start (10.59.1.9)`},
		{"host bits", v1alpha1.LoadBalancerIPPoolSpec{Blocks: []v1alpha1.IPBlock{{CIDR: "10.59.2.1/24"}}},
			"spec.blocks[0].cidr: Invalid value: \"10.59.2.1/24\": has host bits set; the network is 10.59.2.0/24"},
		{"overlap", v1alpha1.LoadBalancerIPPoolSpec{Blocks: []v1alpha1.IPBlock{{CIDR: "10.59.3.0/24"}, block("10.59.0.15", "10.59.0.30")}},
			`spec.blocks[1]: Invalid value: "10.59.0.15-10.59.0.30": overlaps pool "existing" on 10.59.0.15-10.59.0.20`},
		{"selector", v1alpha1.LoadBalancerIPPoolSpec{Blocks: []v1alpha1.IPBlock{{CIDR: "10.59.4.0/24"}},
			ServiceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "a", Operator: "Near"}}}},
			`spec.serviceSelector: Invalid value`},
		{"range spanning loopback", v1alpha1.LoadBalancerIPPoolSpec{Blocks: []v1alpha1.IPBlock{block("126.255.255.250", "128.0.0.5")}},
			`spec.blocks[0]: Invalid value: "126.255.255.250-128.0.0.5": must not contain loopback addresses (127.0.0.0/8, ::1)`},
		{"multicast (CEL)", v1alpha1.LoadBalancerIPPoolSpec{Blocks: []v1alpha1.IPBlock{{CIDR: "224.0.0.0/24"}}},
			`spec.blocks[0].cidr: Invalid value: "224.0.0.0/24": must not contain multicast addresses (224.0.0.0/4, ff00::/8)`},
		{"mixed families (CEL)", v1alpha1.LoadBalancerIPPoolSpec{Blocks: []v1alpha1.IPBlock{block("10.59.5.1", "2001:db8::1")}},
			"start and stop must be of the same IP family"},
		{"invalid cidr (CEL)", v1alpha1.LoadBalancerIPPoolSpec{Blocks: []v1alpha1.IPBlock{{CIDR: "10.59.6.0/40"}}},
			"spec.blocks[0].cidr"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &v1alpha1.LoadBalancerIPPool{ObjectMeta: metav1.ObjectMeta{Name: "rejected"}, Spec: tc.spec}
			err := k8s.Create(ctx, p)
			if err == nil {
				deletePool(t, "rejected")
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q lacks %q", err, tc.want)
			}
		})
	}
	// An update into an overlap is refused too.
	p := newPool(t, "grows", "", block("10.59.7.1", "10.59.7.5"))
	var err error
	for range 20 { // retry only on conflicts with the controller's status writes
		if err = k8s.Get(ctx, client.ObjectKeyFromObject(p), p); err != nil {
			t.Fatal(err)
		}
		p.Spec.Blocks = []v1alpha1.IPBlock{block("10.59.7.1", "10.59.7.9"), block("10.59.0.20", "10.59.0.20")}
		if err = k8s.Update(ctx, p); !apierrors.IsConflict(err) {
			break
		}
	}
	if err == nil || !regexp.MustCompile(`overlaps pool "existing" on 10\.59\.0\.20`).MatchString(err.Error()) {
		t.Fatalf("update into overlap: %v", err)
	}
}

// updatePool changes a pool, retrying on conflicts with the controller's status writes.
func updatePool(t *testing.T, name string, change func(*v1alpha1.LoadBalancerIPPool)) {
	t.Helper()
	NewWithT(t).Eventually(func() error {
		p := &v1alpha1.LoadBalancerIPPool{}
		if err := k8s.Get(context.Background(), types.NamespacedName{Name: name}, p); err != nil {
			return err
		}
		change(p)
		return k8s.Update(context.Background(), p)
	}).Should(Succeed())
}

func ptrTo[T any](v T) *T { return &v }

func itoa(i int) string { return fmt.Sprintf("%03d", i) }
