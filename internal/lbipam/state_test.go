package lbipam

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/portico-dev/portico/apis/v1alpha1"
)

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func mkPool(name string, age int, blocks ...v1alpha1.IPBlock) *Pool {
	return ParsePool(&v1alpha1.LoadBalancerIPPool{
		ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(epoch.Add(time.Duration(age) * time.Minute))},
		Spec:       v1alpha1.LoadBalancerIPPoolSpec{Blocks: blocks},
	})
}

func rng(start, stop string) v1alpha1.IPBlock { return v1alpha1.IPBlock{Start: start, Stop: stop} }

type svcOpt func(*corev1.Service)

func mkReq(t *testing.T, ns, name string, opts ...svcOpt) *Request {
	t.Helper()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: map[string]string{}},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}}},
	}
	for _, o := range opts {
		o(svc)
	}
	r, err := NewRequest(svc)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func ann(k, v string) svcOpt { return func(s *corev1.Service) { s.Annotations[k] = v } }
func port(p int32) svcOpt {
	return func(s *corev1.Service) { s.Spec.Ports = []corev1.ServicePort{{Port: p, Protocol: corev1.ProtocolTCP}} }
}

func addrs(res Result) string {
	var s []string
	for _, a := range res.Addrs {
		s = append(s, a.String())
	}
	return strings.Join(s, ",")
}

func TestAllocationSharingAndReasons(t *testing.T) {
	s := NewState()
	s.SetPool(mkPool("lb-pool", 0, rng("192.168.10.211", "192.168.10.212")))

	a := s.Reconcile(mkReq(t, "default", "a", ann(AnnotationSharingKey, "k")))
	if !a.Satisfied || addrs(a) != "192.168.10.211" || !strings.Contains(a.Message, "from pool lb-pool") {
		t.Fatalf("a: %+v", a)
	}
	// Same key, other port: shares .211.
	b := s.Reconcile(mkReq(t, "default", "b", ann(AnnotationSharingKey, "k"), port(443)))
	if addrs(b) != "192.168.10.211" {
		t.Fatalf("b did not share: %+v", b)
	}
	// Same key, same port: refused with the port named, not "out of IPs".
	c := s.Reconcile(mkReq(t, "default", "c", ann(AnnotationSharingKey, "k")))
	if c.Satisfied || c.Reason != v1alpha1.ReasonIncompatibleSharing || !strings.Contains(c.Message, "port 80/TCP is also used by default/a") {
		t.Fatalf("c: %+v", c)
	}
	// Other namespace without the cross-namespace annotation on both.
	d := s.Reconcile(mkReq(t, "other", "d", ann(AnnotationSharingKey, "k"), port(8080), ann(AnnotationSharingCrossNamespace, "*")))
	if d.Reason != v1alpha1.ReasonIncompatibleSharing || !strings.Contains(d.Message, AnnotationSharingCrossNamespace) {
		t.Fatalf("d: %+v", d)
	}
	// Requesting a held IP without a key.
	e := s.Reconcile(mkReq(t, "default", "e", ann(AnnotationIPs, "192.168.10.211"), port(9000)))
	if e.Reason != v1alpha1.ReasonAlreadyAllocated || !strings.Contains(e.Message, "held by default/a") {
		t.Fatalf("e: %+v", e)
	}
	// The last free address, then out of IPs.
	f := s.Reconcile(mkReq(t, "default", "f"))
	g := s.Reconcile(mkReq(t, "default", "g"))
	if addrs(f) != "192.168.10.212" || g.Reason != v1alpha1.ReasonOutOfIPs || !strings.Contains(g.Message, "lb-pool is full") {
		t.Fatalf("f: %+v g: %+v", f, g)
	}
	if st, _ := s.Status("lb-pool"); st.IPv4.Used != 2 || st.IPv4.Available != 0 || st.IPv4.Total != 2 {
		t.Fatalf("status %+v", st.IPv4)
	}
	// Releasing f lets g in on retry; g is listed as unsatisfied until then.
	if len(s.Unsatisfied()) == 0 {
		t.Fatal("g not tracked as unsatisfied")
	}
	s.Release(types.NamespacedName{Namespace: "default", Name: "f"})
	if g = s.Reconcile(mkReq(t, "default", "g")); addrs(g) != "192.168.10.212" {
		t.Fatalf("g after release: %+v", g)
	}
}

func TestSelectorsDualStackAndPoolRemoval(t *testing.T) {
	s := NewState()
	p := mkPool("v6", 0, v1alpha1.IPBlock{CIDR: "2001:db8::/64"})
	s.SetPool(p)
	sel := ParsePool(&v1alpha1.LoadBalancerIPPool{
		ObjectMeta: metav1.ObjectMeta{Name: "v4-prod", CreationTimestamp: metav1.NewTime(epoch)},
		Spec: v1alpha1.LoadBalancerIPPoolSpec{Blocks: []v1alpha1.IPBlock{{CIDR: "10.0.0.0/30"}},
			ServiceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{LabelServiceNamespace: "prod"}}},
	})
	s.SetPool(sel)

	dual := func(s *corev1.Service) {
		pol := corev1.IPFamilyPolicyRequireDualStack
		s.Spec.IPFamilyPolicy, s.Spec.IPFamilies = &pol, []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}
	}
	got := s.Reconcile(mkReq(t, "prod", "web", dual))
	if !got.Satisfied || addrs(got) != "10.0.0.1,2001:db8::" {
		t.Fatalf("dual stack: %+v", got)
	}
	miss := s.Reconcile(mkReq(t, "dev", "web", dual))
	if miss.Satisfied || miss.Reason != v1alpha1.ReasonPoolSelectorMismatch || addrs(miss) != "2001:db8::1" {
		t.Fatalf("selector mismatch: %+v", miss)
	}
	// Deleting the v6 pool: the Service keeps its IPv4 address, loses IPv6 with a reason.
	s.DeletePool("v6")
	after := s.Reconcile(mkReq(t, "prod", "web", dual))
	if after.Satisfied || addrs(after) != "10.0.0.1" || len(after.Released) != 1 || after.Released[0].Why != "pool v6 was deleted, and no other pool that selects the Service contains it" {
		t.Fatalf("after pool deletion: %+v", after)
	}
}

func TestConflictingPoolServesNothingUntilResolved(t *testing.T) {
	s := NewState()
	s.SetPool(mkPool("old", 0, rng("10.0.0.1", "10.0.0.4")))
	changed := s.SetPool(mkPool("new", 1, rng("10.0.0.4", "10.0.0.8")))
	if len(changed) != 0 {
		t.Fatalf("only the new pool's own mark changed, got %v", changed)
	}
	st, _ := s.Status("new")
	if !st.Conflicting || !strings.Contains(st.ConflictMsg, "range 10.0.0.4 overlaps pool old") || st.Available != 0 {
		t.Fatalf("new: %+v", st)
	}
	sel := mkReq(t, "default", "x", ann(AnnotationIPs, "10.0.0.7"))
	if r := s.Reconcile(sel); r.Reason != v1alpha1.ReasonOutOfIPs || !strings.Contains(r.Message, "new overlaps pool old") {
		t.Fatalf("allocated from a conflicting pool: %+v", r)
	}
	s.SetPool(mkPool("new", 1, rng("10.0.0.5", "10.0.0.8")))
	if st, _ = s.Status("new"); st.Conflicting || st.Available != 4 {
		t.Fatalf("conflict not cleared: %+v", st)
	}
	if r := s.Reconcile(sel); !r.Satisfied || addrs(r) != "10.0.0.7" {
		t.Fatalf("after resolution: %+v", r)
	}
}

func TestRegisterKeepsAddressesAndOlderWins(t *testing.T) {
	s := NewState()
	s.SetPool(mkPool("p", 0, rng("10.0.0.1", "10.0.0.9")))
	old := mkReq(t, "default", "old")
	young := mkReq(t, "default", "young")
	five := netip.MustParseAddr("10.0.0.5")
	s.Register(old, []netip.Addr{five})
	s.Register(young, []netip.Addr{five}) // may not share: ignored
	if r := s.Reconcile(old); addrs(r) != "10.0.0.5" {
		t.Fatalf("old lost its address: %+v", r)
	}
	if r := s.Reconcile(young); addrs(r) != "10.0.0.1" {
		t.Fatalf("young: %+v", r)
	}
	// An address outside every pool is held until reconcile releases it with a reason.
	gone := mkReq(t, "default", "gone")
	s.Register(gone, []netip.Addr{netip.MustParseAddr("172.16.0.1")})
	r := s.Reconcile(gone)
	if len(r.Released) != 1 || addrs(r) != "10.0.0.2" {
		t.Fatalf("gone: %+v", r)
	}
}

func TestInvalidRequests(t *testing.T) {
	for _, tc := range []struct {
		opt  svcOpt
		want string
	}{
		{ann(AnnotationIPs, "10.0.0.1,10.0.0.2"), "more than one IPv4"},
		{ann(AnnotationIPs, "nope"), `"nope" is not an IP address`},
		{ann(AnnotationIPs, "2001:db8::1"), "is IPv6 but the Service's ipFamilies are [IPv4]"},
		{ann(AnnotationIPMode, "Tunnel"), "neither VIP nor Proxy"},
	} {
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "s", Namespace: "n", Annotations: map[string]string{}},
			Spec: corev1.ServiceSpec{IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol}}}
		tc.opt(svc)
		if _, err := NewRequest(svc); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("want %q, got %v", tc.want, err)
		}
	}
}

// Pools created in the same second are ordered by Rank (the order their creation
// reached the controller), not by name.
func TestSameSecondPoolsOrderedByRank(t *testing.T) {
	s := NewState()
	first := mkPool("z-first", 0, rng("10.0.0.1", "10.0.0.4"))
	first.Rank = 2
	second := mkPool("a-second", 0, rng("10.0.0.3", "10.0.0.6"))
	second.Rank = 3
	s.SetPool(second) // the order of SetPool calls does not matter, only Rank
	if changed := s.SetPool(first); len(changed) != 1 || changed[0] != "a-second" {
		t.Fatalf("a-second's mark should change, got %v", changed)
	}
	if st, _ := s.Status("a-second"); !st.Conflicting || !strings.Contains(st.ConflictMsg, "overlaps pool z-first") {
		t.Fatalf("a-second: %+v", st)
	}
	if st, _ := s.Status("z-first"); st.Conflicting {
		t.Fatalf("z-first: %+v", st)
	}
}

// A Service loses an address its pool no longer holds with a reason naming the pool and
// what happened to it; with another pool containing the address it keeps it.
func TestShrunkOrInvalidPoolReleasesWithReason(t *testing.T) {
	s := NewState()
	s.SetPool(mkPool("p", 0, rng("10.0.0.1", "10.0.0.9")))
	web := mkReq(t, "default", "web", ann(AnnotationIPs, "10.0.0.8"))
	if r := s.Reconcile(web); addrs(r) != "10.0.0.8" {
		t.Fatalf("web: %+v", r)
	}
	s.SetPool(mkPool("p", 0, rng("10.0.0.1", "10.0.0.5")))
	r := s.Reconcile(web)
	want := "pool p no longer contains it (its blocks changed), and no other pool that selects the Service contains it"
	if r.Satisfied || r.Reason != v1alpha1.ReasonIPRemovedFromPool || len(r.Released) != 1 || r.Released[0].Why != want {
		t.Fatalf("shrunk: %+v", r)
	}

	s.SetPool(mkPool("p", 0, rng("10.0.0.1", "10.0.0.9")))
	if r := s.Reconcile(web); addrs(r) != "10.0.0.8" {
		t.Fatalf("web again: %+v", r)
	}
	// A pool that became invalid (e.g. a rule added on upgrade) says why.
	s.SetPool(mkPool("p", 0, rng("10.0.0.1", "10.0.0.9"), v1alpha1.IPBlock{CIDR: "127.0.0.0/8"}))
	r = s.Reconcile(web)
	if len(r.Released) != 1 || !strings.Contains(r.Released[0].Why, "pool p is invalid (spec.blocks[1].cidr: Invalid value: \"127.0.0.0/8\": must not contain loopback addresses") {
		t.Fatalf("invalid: %+v", r)
	}

	// Shrunk, but another pool selecting the Service contains it: kept, moved.
	s.SetPool(mkPool("p", 0, rng("10.0.0.1", "10.0.0.9")))
	s.SetPool(mkPool("q", 1, rng("10.0.0.8", "10.0.0.8")))
	s.Reconcile(web)
	s.SetPool(mkPool("p", 0, rng("10.0.0.1", "10.0.0.5")))
	if r := s.Reconcile(web); addrs(r) != "10.0.0.8" || len(r.Released) != 0 || r.Pools[0] != "q" {
		t.Fatalf("moved: %+v", r)
	}
}
