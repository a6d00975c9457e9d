package l2assign

import (
	"net/netip"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/ipam"
)

// spec.externalIPs are announced only inside a pool or the policy's externalIPCIDRs;
// anything else (the router's address, another tenant's) gets NotAllowed naming the rule.
func TestExternalIPsOnlyInsidePoolsOrAllowList(t *testing.T) {
	p := policy("policy1", func(s *v1alpha1.L2AnnouncementPolicySpec) { s.ExternalIPCIDRs = []string{"192.0.2.0/28"} })
	pools := []ipam.Range{{First: netip.MustParseAddr("10.0.0.10"), Last: netip.MustParseAddr("10.0.0.20")}}
	ext := func(name string, ips ...string) Service {
		s := Service{Key: types.NamespacedName{Namespace: "t", Name: name}}
		for _, ip := range ips {
			s.ExternalIPs = append(s.ExternalIPs, netip.MustParseAddr(ip))
		}
		return s
	}
	router := ext("router", "10.0.0.1")
	mixed := ext("mixed", "10.0.0.15", "192.0.2.5", "192.0.2.99")
	r := Assign(Input{Policies: []*Policy{p}, Services: []Service{router, mixed}, Nodes: liveNodes("a", "b"), Pools: pools})
	got := owners(r)
	for _, ip := range []string{"10.0.0.15", "192.0.2.5"} {
		if got[Key{mixed.Key, netip.MustParseAddr(ip)}] == "" {
			t.Errorf("%s (allowed) not announced", ip)
		}
	}
	for k := range got {
		if k.IP.String() == "10.0.0.1" || k.IP.String() == "192.0.2.99" {
			t.Errorf("%v announced although outside every pool and externalIPCIDRs", k)
		}
	}
	for _, c := range []struct {
		svc  types.NamespacedName
		want string
	}{
		{router.Key, "externalIPs 10.0.0.1 not announced: policy policy1 announces spec.externalIPs only inside a LoadBalancerIPPool or its spec.externalIPCIDRs"},
		{mixed.Key, "externalIPs 192.0.2.99 not announced"},
	} {
		sr := r.Services[c.svc]
		if sr == nil || sr.Status != metav1.ConditionFalse || sr.Reason != v1alpha1.ReasonNotAllowed || !strings.Contains(sr.Message, c.want) {
			t.Errorf("%v: %+v", c.svc, sr)
		}
	}
	if !strings.Contains(r.Services[mixed.Key].Message, "announced by") {
		t.Errorf("the allowed addresses' nodes are not named: %q", r.Services[mixed.Key].Message)
	}
	bad := ParsePolicy(&v1alpha1.L2AnnouncementPolicy{Spec: v1alpha1.L2AnnouncementPolicySpec{ExternalIPs: true, ExternalIPCIDRs: []string{"10.0.0.300/8"}}})
	if len(bad.Errors) != 1 || bad.Errors[0].Field != "spec.externalIPCIDRs[0]" {
		t.Errorf("errors %v", bad.Errors)
	}
}
