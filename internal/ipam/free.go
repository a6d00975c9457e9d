package ipam

import "net/netip"

// Used is the set of allocated addresses across every pool. One set for all pools is what
// keeps two overlapping pools (a conflict that reached the controller with the webhook
// off) from handing out the same address twice.
type Used struct {
	m map[[16]byte]struct{}
}

// NewUsed returns an empty set sized for n addresses.
func NewUsed(n int) *Used { return &Used{m: make(map[[16]byte]struct{}, n)} }

// Has reports whether a is allocated.
func (u *Used) Has(a netip.Addr) bool { _, ok := u.m[a.As16()]; return ok }

// Add marks a allocated; it reports false if it already was.
func (u *Used) Add(a netip.Addr) bool {
	k := a.As16()
	if _, ok := u.m[k]; ok {
		return false
	}
	u.m[k] = struct{}{}
	return true
}

// Remove marks a free; it reports false if it was not allocated.
func (u *Used) Remove(a netip.Addr) bool {
	k := a.As16()
	if _, ok := u.m[k]; !ok {
		return false
	}
	delete(u.m, k)
	return true
}

// Len is the number of allocated addresses.
func (u *Used) Len() int { return len(u.m) }

// Space is a pool's ranges with a search hint per range, so that allocating in order is
// O(1) amortised and memory grows with allocations, never with the size of the ranges
// (a /64 costs nothing until it is used).
type Space struct {
	ranges []Range
	hints  []netip.Addr // lowest address of each range that may be free
}

// NewSpace returns the address space of ranges.
func NewSpace(ranges []Range) *Space {
	s := &Space{ranges: ranges, hints: make([]netip.Addr, len(ranges))}
	for i, r := range ranges {
		s.hints[i] = r.First
	}
	return s
}

// Ranges returns the ranges of the space.
func (s *Space) Ranges() []Range { return s.ranges }

// Contains reports whether a is in one of the ranges.
func (s *Space) Contains(a netip.Addr) bool {
	for _, r := range s.ranges {
		if r.Contains(a) {
			return true
		}
	}
	return false
}

// Total counts the addresses of one family, saturating at math.MaxUint64.
func (s *Space) Total(ipv6 bool) uint64 {
	var n uint64
	for _, r := range s.ranges {
		if r.Is6() != ipv6 {
			continue
		}
		sz := r.Size()
		if n+sz < n {
			return ^uint64(0)
		}
		n += sz
	}
	return n
}

// Next returns the lowest free address of the family at or after each range's hint,
// wrapping around once so a stale hint can never hide a free address. It does not mark
// the address used. skip, if not nil, vetoes addresses (e.g. a conflicting pool's ranges).
func (s *Space) Next(used *Used, ipv6 bool, skip func(netip.Addr) bool) (netip.Addr, bool) {
	for i, r := range s.ranges {
		if r.Is6() != ipv6 {
			continue
		}
		if a, ok := scan(s.hints[i], r.Last, used, skip); ok {
			s.hints[i] = a
			return a, true
		}
		if a, ok := scan(r.First, s.hints[i], used, skip); ok {
			s.hints[i] = a
			return a, true
		}
	}
	return netip.Addr{}, false
}

// Released lowers the hint of the range holding a, so that the address is found again.
func (s *Space) Released(a netip.Addr) {
	for i, r := range s.ranges {
		if r.Contains(a) && a.Compare(s.hints[i]) < 0 {
			s.hints[i] = a
		}
	}
}

func scan(from, to netip.Addr, used *Used, skip func(netip.Addr) bool) (netip.Addr, bool) {
	for a := from; a.IsValid() && a.Compare(to) <= 0; a = a.Next() {
		if !used.Has(a) && (skip == nil || !skip(a)) {
			return a, true
		}
	}
	return netip.Addr{}, false
}
