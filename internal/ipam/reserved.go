package ipam

import (
	"net/netip"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Messages shared with the CRD's CEL rules (apis/v1alpha1/ippool_types.go), so that a
// block is refused with the same words whichever layer catches it.
const (
	msgWholeSpace = "must not be 0.0.0.0/0 or ::/0 (the whole address space)"
	msgContain    = "must not contain "
	msgBe         = "must not be "
)

// reserved are the addresses a LoadBalancer address can never be: a node would treat
// them as its own (unspecified, loopback), never route them (link-local), or deliver
// them to every listener of a group (multicast). A block that touches any of them is
// refused whole, as written, before network and broadcast addresses are left out: the
// CEL rules see only the written block, and both layers must agree.
var reserved = []struct {
	v4, v6 netip.Prefix
	many   string // a block contains them
	one    string // an address is one of them
}{
	{netip.MustParsePrefix("0.0.0.0/32"), netip.MustParsePrefix("::/128"),
		"the unspecified address (0.0.0.0 or ::)", "the unspecified address (0.0.0.0 or ::)"},
	{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128"),
		"loopback addresses (127.0.0.0/8, ::1)", "a loopback address (127.0.0.0/8, ::1)"},
	{netip.MustParsePrefix("169.254.0.0/16"), netip.MustParsePrefix("fe80::/10"),
		"link-local addresses (169.254.0.0/16, fe80::/10)", "a link-local address (169.254.0.0/16, fe80::/10)"},
	{netip.MustParsePrefix("224.0.0.0/4"), netip.MustParsePrefix("ff00::/8"),
		"multicast addresses (224.0.0.0/4, ff00::/8)", "a multicast address (224.0.0.0/4, ff00::/8)"},
}

// ReservedMessage says why a may not be handed out, or "".
func ReservedMessage(a netip.Addr) string {
	for _, r := range reserved {
		if r.v4.Contains(a) || r.v6.Contains(a) {
			return msgBe + r.one
		}
	}
	return ""
}

// reservedIn says which reserved addresses r contains, or "".
func reservedIn(r Range) string {
	for _, res := range reserved {
		for _, p := range []netip.Prefix{res.v4, res.v6} {
			if _, ok := Intersect(r, Range{First: p.Addr(), Last: lastOf(p)}); ok {
				return msgContain + res.many
			}
		}
	}
	return ""
}

// checkReservedPrefix refuses a CIDR block, as written (before network and broadcast
// are left out), that is the whole address space or touches reserved addresses.
func checkReservedPrefix(p *field.Path, prefix netip.Prefix) *field.Error {
	if prefix.Bits() == 0 {
		return field.Invalid(p, prefix.String(), msgWholeSpace)
	}
	if why := reservedIn(Range{First: prefix.Addr(), Last: lastOf(prefix)}); why != "" {
		return field.Invalid(p, prefix.String(), why)
	}
	return nil
}

// checkReservedRange refuses a start-stop block that touches reserved addresses, at the
// most precise field it can name: the start or stop address itself, else the block
// (a range can span a reserved block with both ends outside it).
func checkReservedRange(p *field.Path, value string, r Range) *field.Error {
	if why := ReservedMessage(r.First); why != "" {
		return field.Invalid(p.Child("start"), r.First.String(), why)
	}
	if why := ReservedMessage(r.Last); why != "" {
		return field.Invalid(p.Child("stop"), r.Last.String(), why)
	}
	if why := reservedIn(r); why != "" {
		return field.Invalid(p, value, why)
	}
	return nil
}
