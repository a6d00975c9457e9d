package npcwriter

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

func TestNameExamples(t *testing.T) {
	for _, c := range []struct{ producer, ns, name, want string }{
		{"ingress", "default", "basic-ingress", "ingress.default.basic-ingress"},
		{"ingress", "foo", "bar-baz", "ingress.foo.bar-baz"},
		{"ingress", "foo-bar", "baz", "ingress.foo-bar.baz"},
		{"ingress", "ns", "a.b", "ingress.ns.a.b"},
		{"clusterenvoyconfig", "", "x", "clusterenvoyconfig.x"},
	} {
		if got := Name(c.producer, c.ns, c.name); got != c.want {
			t.Errorf("Name(%q, %q, %q) = %q, want %q", c.producer, c.ns, c.name, got, c.want)
		}
	}
}

// The pairs Cilium's "<ns>-<name>" scheme merges must stay apart, and a dotted
// Ingress name must not be mistaken for another namespace.
func TestNameCollisionFree(t *testing.T) {
	pairs := [][2][2]string{
		{{"foo", "bar-baz"}, {"foo-bar", "baz"}},
		{{"a", "b.c"}, {"a-b", "c"}},
	}
	for _, p := range pairs {
		x, y := Name("ingress", p[0][0], p[0][1]), Name("ingress", p[1][0], p[1][1])
		if x == y {
			t.Errorf("%v and %v share the name %q", p[0], p[1], x)
		}
	}
	// Splitting at the first dot after the prefix gives back the namespace and name.
	n := Name("ingress", "team-a", "shop.example.com")
	ns, name, _ := strings.Cut(strings.TrimPrefix(n, "ingress."), ".")
	if ns != "team-a" || name != "shop.example.com" {
		t.Errorf("split %q into %q / %q", n, ns, name)
	}
}

func TestNameLong(t *testing.T) {
	long := strings.Repeat("a", 62) + "." + strings.Repeat("b", 62) + "." + strings.Repeat("c", 62) + "." + strings.Repeat("d", 62)
	a := Name("ingress", "default", long)
	b := Name("ingress", "default", long[:len(long)-1]+"e")
	if len(a) > 253 || len(b) > 253 {
		t.Fatalf("too long: %d, %d", len(a), len(b))
	}
	if a == b {
		t.Fatalf("two long names collide: %q", a)
	}
	for _, n := range []string{a, b} {
		if errs := validation.IsDNS1123Subdomain(n); len(errs) > 0 {
			t.Errorf("%q: %v", n, errs)
		}
	}
	if Name("ingress", "default", long) != a {
		t.Error("not deterministic")
	}
}
