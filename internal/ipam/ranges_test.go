package ipam

import (
	"net/netip"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/portico-dev/portico/apis/v1alpha1"
)

func TestParseBlocks(t *testing.T) {
	p := field.NewPath("spec", "blocks")
	cases := []struct {
		name       string
		blocks     []v1alpha1.IPBlock
		firstLast  bool
		want       []string // ranges
		wantErr    string   // substring of the aggregated error, with the field path
		wantTotals [2]uint64
	}{
		{name: "start-stop", blocks: []v1alpha1.IPBlock{{Start: "192.168.10.211", Stop: "192.168.10.215"}},
			want: []string{"192.168.10.211-192.168.10.215"}, wantTotals: [2]uint64{5, 0}},
		{name: "single", blocks: []v1alpha1.IPBlock{{Start: "10.0.0.7"}}, want: []string{"10.0.0.7"}, wantTotals: [2]uint64{1, 0}},
		{name: "v4 cidr drops network and broadcast", blocks: []v1alpha1.IPBlock{{CIDR: "10.0.0.0/29"}},
			want: []string{"10.0.0.1-10.0.0.6"}, wantTotals: [2]uint64{6, 0}},
		{name: "v4 cidr with first and last", blocks: []v1alpha1.IPBlock{{CIDR: "10.0.0.0/29"}}, firstLast: true,
			want: []string{"10.0.0.0-10.0.0.7"}, wantTotals: [2]uint64{8, 0}},
		{name: "/31 and /32 keep both", blocks: []v1alpha1.IPBlock{{CIDR: "10.0.0.0/31"}, {CIDR: "10.0.1.1/32"}},
			want: []string{"10.0.0.0-10.0.0.1", "10.0.1.1"}, wantTotals: [2]uint64{3, 0}},
		{name: "v6 /64 is counted, saturating", blocks: []v1alpha1.IPBlock{{CIDR: "2001:db8::/64"}, {CIDR: "2001:db9::/120"}},
			want: []string{"2001:db8::-2001:db8::ffff:ffff:ffff:ffff", "2001:db9::-2001:db9::ff"}, wantTotals: [2]uint64{0, 1<<64 - 1}},
		{name: "both cidr and start", blocks: []v1alpha1.IPBlock{{CIDR: "10.0.0.0/24", Start: "10.0.0.1"}}, wantErr: "spec.blocks[0]: Invalid value: \"10.0.0.0/24\": exactly one of cidr or start"},
		{name: "bad prefix", blocks: []v1alpha1.IPBlock{{CIDR: "10.0.0.0/33"}}, wantErr: "spec.blocks[0].cidr: Invalid value"},
		{name: "host bits", blocks: []v1alpha1.IPBlock{{CIDR: "10.0.0.1/24"}}, wantErr: "the network is 10.0.0.0/24"},
		{name: "bad start", blocks: []v1alpha1.IPBlock{{Start: "abc"}}, wantErr: "spec.blocks[0].start: Invalid value: \"abc\""},
		{name: "mixed", blocks: []v1alpha1.IPBlock{{Start: "10.0.0.1", Stop: "::1"}}, wantErr: "same IP family"},
		{name: "start after stop", blocks: []v1alpha1.IPBlock{{Start: "10.0.0.9", Stop: "10.0.0.1"}}, wantErr: "spec.blocks[0].stop: Invalid value: \"10.0.0.1\": must not be before start (10.0.0.9)"},
		{name: "self overlap", blocks: []v1alpha1.IPBlock{{CIDR: "10.0.0.0/24"}, {Start: "10.0.0.100", Stop: "10.0.1.5"}},
			wantErr: "spec.blocks[1]: Invalid value: \"10.0.0.100-10.0.1.5\": overlaps block 0 (10.0.0.100-10.0.0.254)"},
		{name: "mapped", blocks: []v1alpha1.IPBlock{{Start: "::ffff:10.0.0.1"}}, wantErr: "IPv4-mapped"},
		{name: "empty", wantErr: "spec.blocks: Required value"},
		{name: "v4 everything", blocks: []v1alpha1.IPBlock{{CIDR: "0.0.0.0/0"}}, firstLast: true,
			wantErr: `spec.blocks[0].cidr: Invalid value: "0.0.0.0/0": must not be 0.0.0.0/0 or ::/0`},
		{name: "v6 everything", blocks: []v1alpha1.IPBlock{{CIDR: "::/0"}}, wantErr: `spec.blocks[0].cidr: Invalid value: "::/0": must not be 0.0.0.0/0 or ::/0`},
		{name: "loopback cidr", blocks: []v1alpha1.IPBlock{{CIDR: "10.0.0.0/24"}, {CIDR: "127.0.0.0/24"}},
			wantErr: `spec.blocks[1].cidr: Invalid value: "127.0.0.0/24": must not contain loopback addresses (127.0.0.0/8, ::1)`},
		{name: "cidr around loopback", blocks: []v1alpha1.IPBlock{{CIDR: "64.0.0.0/2"}}, wantErr: "spec.blocks[0].cidr: Invalid value: \"64.0.0.0/2\": must not contain loopback"},
		{name: "v6 loopback", blocks: []v1alpha1.IPBlock{{Start: "::1"}}, wantErr: `spec.blocks[0].start: Invalid value: "::1": must not be a loopback address`},
		{name: "unspecified", blocks: []v1alpha1.IPBlock{{CIDR: "0.0.0.0/24"}}, wantErr: "spec.blocks[0].cidr: Invalid value: \"0.0.0.0/24\": must not contain the unspecified address"},
		{name: "v6 unspecified", blocks: []v1alpha1.IPBlock{{Start: "::", Stop: "::5"}}, wantErr: "spec.blocks[0].start: Invalid value: \"::\": must not be the unspecified address"},
		{name: "link-local", blocks: []v1alpha1.IPBlock{{CIDR: "169.254.10.0/24"}}, wantErr: "spec.blocks[0].cidr: Invalid value: \"169.254.10.0/24\": must not contain link-local addresses (169.254.0.0/16, fe80::/10)"},
		{name: "v6 link-local stop", blocks: []v1alpha1.IPBlock{{Start: "fe7f::", Stop: "fe80::1"}}, wantErr: "spec.blocks[0].stop: Invalid value: \"fe80::1\": must not be a link-local address"},
		{name: "multicast", blocks: []v1alpha1.IPBlock{{CIDR: "239.1.0.0/16"}}, wantErr: "must not contain multicast addresses (224.0.0.0/4, ff00::/8)"},
		{name: "v6 multicast", blocks: []v1alpha1.IPBlock{{CIDR: "ff02::/16"}}, wantErr: "spec.blocks[0].cidr: Invalid value: \"ff02::/16\": must not contain multicast"},
		{name: "range spanning loopback", blocks: []v1alpha1.IPBlock{{Start: "126.255.255.250", Stop: "128.0.0.5"}},
			wantErr: `spec.blocks[0]: Invalid value: "126.255.255.250-128.0.0.5": must not contain loopback addresses`},
		{name: "next to reserved is fine", blocks: []v1alpha1.IPBlock{{CIDR: "126.0.0.0/8"}, {Start: "128.0.0.0", Stop: "128.0.0.9"}, {CIDR: "223.255.255.0/24"}, {CIDR: "fe7f::/64"}},
			want: []string{"126.0.0.1-126.255.255.254", "128.0.0.0-128.0.0.9", "223.255.255.1-223.255.255.254", "fe7f::-fe7f::ffff:ffff:ffff:ffff"}, wantTotals: [2]uint64{1<<24 - 2 + 10 + 254, 1<<64 - 1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rs, errs := ParseBlocks(p, tc.blocks, tc.firstLast)
			if tc.wantErr != "" {
				if !strings.Contains(errs.ToAggregate().Error(), tc.wantErr) {
					t.Fatalf("errors %v, want %q", errs, tc.wantErr)
				}
				return
			}
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			var got []string
			for _, r := range rs {
				got = append(got, r.String())
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("ranges %v, want %v", got, tc.want)
			}
			s := NewSpace(rs)
			if s.Total(false) != tc.wantTotals[0] || s.Total(true) != tc.wantTotals[1] {
				t.Fatalf("totals v4=%d v6=%d, want %v", s.Total(false), s.Total(true), tc.wantTotals)
			}
		})
	}
}

func TestIntersect(t *testing.T) {
	a := Range{First: netip.MustParseAddr("10.0.0.1"), Last: netip.MustParseAddr("10.0.0.10")}
	b := Range{First: netip.MustParseAddr("10.0.0.10"), Last: netip.MustParseAddr("10.0.0.20")}
	if o, ok := Intersect(a, b); !ok || o.String() != "10.0.0.10" {
		t.Fatalf("got %v %v", o, ok)
	}
	c := Range{First: netip.MustParseAddr("::1"), Last: netip.MustParseAddr("::ff")}
	if _, ok := Intersect(a, c); ok {
		t.Fatal("families never overlap")
	}
}

func TestSpaceAllocatesLowestFreeAndReuses(t *testing.T) {
	rs, errs := ParseBlocks(field.NewPath("b"), []v1alpha1.IPBlock{{Start: "10.0.0.1", Stop: "10.0.0.3"}, {CIDR: "2001:db8::/126"}}, false)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	s, used := NewSpace(rs), NewUsed(0)
	var got []string
	for range 3 {
		a, ok := s.Next(used, false, nil)
		if !ok {
			t.Fatal("ran out early")
		}
		used.Add(a)
		got = append(got, a.String())
	}
	if strings.Join(got, " ") != "10.0.0.1 10.0.0.2 10.0.0.3" {
		t.Fatalf("order %v", got)
	}
	if _, ok := s.Next(used, false, nil); ok {
		t.Fatal("allocated past the end")
	}
	mid := netip.MustParseAddr("10.0.0.2")
	used.Remove(mid)
	s.Released(mid)
	if a, ok := s.Next(used, false, nil); !ok || a != mid {
		t.Fatalf("released address not reused: %v", a)
	}
	// The skip veto hides addresses without marking them used.
	if a, ok := s.Next(used, true, func(a netip.Addr) bool { return a == netip.MustParseAddr("2001:db8::") }); !ok || a.String() != "2001:db8::1" {
		t.Fatalf("v6 with skip: %v", a)
	}
}
