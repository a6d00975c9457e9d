package ipam

import (
	"math/rand/v2"
	"net/netip"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/portico-dev/portico/apis/v1alpha1"
)

// FuzzParseBlocks: any input either errors or yields well-formed ranges; never panics.
func FuzzParseBlocks(f *testing.F) {
	for _, s := range [][3]string{
		{"10.0.0.0/24", "", ""}, {"", "10.0.0.1", "10.0.0.9"}, {"2001:db8::/64", "", ""},
		{"", "::1", "10.0.0.1"}, {"10.0.0.0/33", "", ""}, {"", "abc", ""}, {"", "", "10.0.0.1"},
	} {
		f.Add(s[0], s[1], s[2], false)
	}
	f.Fuzz(func(t *testing.T, cidr, start, stop string, firstLast bool) {
		rs, errs := ParseBlocks(field.NewPath("b"), []v1alpha1.IPBlock{{CIDR: cidr, Start: start, Stop: stop}}, firstLast)
		if len(errs) > 0 {
			if len(rs) != 0 {
				t.Fatalf("ranges %v returned with errors %v", rs, errs)
			}
			return
		}
		for _, r := range rs {
			if !r.First.IsValid() || r.First.BitLen() != r.Last.BitLen() || r.First.Compare(r.Last) > 0 || r.First.Zone() != "" {
				t.Fatalf("malformed range %v from %q %q %q", r, cidr, start, stop)
			}
		}
	})
}

// FuzzAllocator drives allocations and releases from a seed against a model set: no
// address is handed out twice, every address is inside the ranges, and an address is
// refused only when the family is really full.
func FuzzAllocator(f *testing.F) {
	f.Add(uint64(1), uint8(29), uint16(300))
	f.Add(uint64(7), uint8(126), uint16(50))
	f.Fuzz(func(t *testing.T, seed uint64, bits uint8, ops uint16) {
		var cidr string
		if bits >= 24 && bits <= 32 {
			cidr = netip.PrefixFrom(netip.MustParseAddr("10.1.2.0"), int(bits)).Masked().String()
		} else {
			cidr = netip.PrefixFrom(netip.MustParseAddr("2001:db8::"), 120+int(bits%9)).Masked().String()
		}
		rs, errs := ParseBlocks(field.NewPath("b"), []v1alpha1.IPBlock{{CIDR: cidr}}, seed%2 == 0)
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		v6 := rs[0].Is6()
		s, used := NewSpace(rs), NewUsed(0)
		model := map[netip.Addr]bool{}
		rng := rand.New(rand.NewPCG(seed, 0))
		total := s.Total(v6)
		for range ops {
			if rng.IntN(3) > 0 || len(model) == 0 {
				a, ok := s.Next(used, v6, nil)
				if !ok {
					if uint64(len(model)) != total {
						t.Fatalf("refused with %d of %d used", len(model), total)
					}
					continue
				}
				if model[a] || !s.Contains(a) || !used.Add(a) {
					t.Fatalf("bad allocation %v (dup=%v in=%v)", a, model[a], s.Contains(a))
				}
				model[a] = true
				continue
			}
			for a := range model { // release a random-ish one
				delete(model, a)
				used.Remove(a)
				s.Released(a)
				break
			}
		}
		if used.Len() != len(model) {
			t.Fatalf("used %d, model %d", used.Len(), len(model))
		}
	})
}
