package svcname

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

func TestFor(t *testing.T) {
	long := strings.Repeat("a", 60)
	cases := map[string]string{
		"web":          "portico-ingress-web",
		"shop.example": "portico-ingress-shop-example-",
		long:           "portico-ingress-aaaa",
	}
	seen := map[string]string{}
	for name, prefix := range cases {
		got := For("portico-ingress-", name)
		if errs := validation.IsDNS1035Label(got); len(errs) > 0 {
			t.Errorf("For(%q) = %q, not a DNS-1035 label: %v", name, got, errs)
		}
		if !strings.HasPrefix(got, prefix) {
			t.Errorf("For(%q) = %q, want prefix %q", name, got, prefix)
		}
		if other, dup := seen[got]; dup {
			t.Errorf("%q and %q share Service %q", name, other, got)
		}
		seen[got] = name
	}
	// Two names that differ only where the cut drops them still get two Services.
	if For("p-", long+"x") == For("p-", long+"y") {
		t.Error("names differing after the cut share a Service")
	}
}
