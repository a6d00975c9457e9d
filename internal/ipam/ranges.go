// Package ipam is the address arithmetic of LB-IPAM: parsing and validating pool blocks
// into ranges, and finding free addresses in them. It holds no Kubernetes state; the
// pool and Service bookkeeping lives in internal/lbipam.
package ipam

import (
	"fmt"
	"math"
	"math/big"
	"net/netip"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/portico-dev/portico/apis/v1alpha1"
)

// Range is an inclusive range of addresses of one family.
type Range struct {
	First, Last netip.Addr
}

// Is6 reports whether the range is IPv6.
func (r Range) Is6() bool { return r.First.Is6() }

// Contains reports whether a is in the range.
func (r Range) Contains(a netip.Addr) bool {
	return a.BitLen() == r.First.BitLen() && r.First.Compare(a) <= 0 && a.Compare(r.Last) <= 0
}

// Size is the number of addresses in the range, saturating at math.MaxUint64.
func (r Range) Size() uint64 {
	n := new(big.Int).Sub(toInt(r.Last), toInt(r.First))
	n.Add(n, big.NewInt(1))
	if !n.IsUint64() {
		return math.MaxUint64
	}
	return n.Uint64()
}

func (r Range) String() string {
	if r.First == r.Last {
		return r.First.String()
	}
	return r.First.String() + "-" + r.Last.String()
}

// Intersect returns the overlap of a and b.
func Intersect(a, b Range) (Range, bool) {
	if a.First.BitLen() != b.First.BitLen() {
		return Range{}, false
	}
	first, last := a.First, a.Last
	if b.First.Compare(first) > 0 {
		first = b.First
	}
	if b.Last.Compare(last) < 0 {
		last = b.Last
	}
	if first.Compare(last) > 0 {
		return Range{}, false
	}
	return Range{First: first, Last: last}, true
}

func toInt(a netip.Addr) *big.Int {
	b := a.AsSlice()
	return new(big.Int).SetBytes(b)
}

// ParseBlocks validates a pool's blocks in one pass and returns their ranges, in order.
// Every problem is reported with the path of the field it concerns, so the webhook and
// the controller's condition say exactly what to fix. Blocks that touch addresses no
// Service can be given (unspecified, loopback, link-local, multicast; see reserved) are
// refused. Network and broadcast addresses of IPv4 CIDRs shorter than /31 are left out
// unless allowFirstLast is set.
func ParseBlocks(path *field.Path, blocks []v1alpha1.IPBlock, allowFirstLast bool) ([]Range, field.ErrorList) {
	var (
		ranges []Range
		errs   field.ErrorList
	)
	if len(blocks) == 0 {
		errs = append(errs, field.Required(path, "a pool needs at least one block"))
	}
	for i, b := range blocks {
		r, err := parseBlock(path.Index(i), b, allowFirstLast)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for j, prev := range ranges {
			if o, ok := Intersect(prev, r); ok {
				errs = append(errs, field.Invalid(path.Index(i), blockString(b),
					fmt.Sprintf("overlaps block %d (%s) of the same pool", j, o)))
			}
		}
		ranges = append(ranges, r)
	}
	return ranges, errs
}

func blockString(b v1alpha1.IPBlock) string {
	if b.CIDR != "" {
		return b.CIDR
	}
	if b.Stop == "" {
		return b.Start
	}
	return b.Start + "-" + b.Stop
}

func parseBlock(p *field.Path, b v1alpha1.IPBlock, allowFirstLast bool) (Range, *field.Error) {
	switch {
	case b.CIDR != "" && (b.Start != "" || b.Stop != ""):
		return Range{}, field.Invalid(p, blockString(b), "exactly one of cidr or start must be set")
	case b.CIDR != "":
		prefix, err := netip.ParsePrefix(b.CIDR)
		if err != nil || prefix.Addr().Zone() != "" {
			return Range{}, field.Invalid(p.Child("cidr"), b.CIDR, "must be a CIDR such as 192.168.10.0/24 or 2001:db8::/64")
		}
		if prefix.Addr().Is4In6() {
			return Range{}, field.Invalid(p.Child("cidr"), b.CIDR, "IPv4-mapped IPv6 prefixes are not allowed; write the IPv4 prefix")
		}
		if prefix.Masked() != prefix {
			return Range{}, field.Invalid(p.Child("cidr"), b.CIDR, fmt.Sprintf("has host bits set; the network is %s", prefix.Masked()))
		}
		if err := checkReservedPrefix(p.Child("cidr"), prefix); err != nil {
			return Range{}, err
		}
		r := Range{First: prefix.Addr(), Last: lastOf(prefix)}
		if r.First.Is4() && prefix.Bits() < 31 && !allowFirstLast {
			r.First, r.Last = r.First.Next(), r.Last.Prev()
		}
		return r, nil
	case b.Start != "":
		first, err := parseAddr(p.Child("start"), b.Start)
		if err != nil {
			return Range{}, err
		}
		last := first
		if b.Stop != "" {
			if last, err = parseAddr(p.Child("stop"), b.Stop); err != nil {
				return Range{}, err
			}
		}
		if first.BitLen() != last.BitLen() {
			return Range{}, field.Invalid(p, blockString(b), "start and stop must be of the same IP family")
		}
		if first.Compare(last) > 0 {
			return Range{}, field.Invalid(p.Child("stop"), b.Stop, fmt.Sprintf("must not be before start (%s)", b.Start))
		}
		r := Range{First: first, Last: last}
		if err := checkReservedRange(p, blockString(b), r); err != nil {
			return Range{}, err
		}
		return r, nil
	case b.Stop != "":
		return Range{}, field.Required(p.Child("start"), "stop requires start")
	default:
		return Range{}, field.Required(p, "one of cidr or start must be set")
	}
}

func parseAddr(p *field.Path, s string) (netip.Addr, *field.Error) {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, field.Invalid(p, s, "must be an IPv4 or IPv6 address")
	}
	if a.Is4In6() {
		return netip.Addr{}, field.Invalid(p, s, "IPv4-mapped IPv6 addresses are not allowed; write the IPv4 address")
	}
	return a, nil
}

func lastOf(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 1 << (7 - uint(i%8))
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}
