package lbipam

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/ipam"
)

type allocation struct {
	pool   string
	owners []*Request // Services sharing the address, by key
}

// State is LB-IPAM's bookkeeping: pools, and which Service holds which address. It is not
// safe for concurrent use; the controller serialises calls.
type State struct {
	pools       map[string]*Pool
	used        *ipam.Used
	allocs      map[netip.Addr]*allocation
	byService   map[types.NamespacedName][]netip.Addr
	byPool      map[string]map[netip.Addr]struct{}
	unsatisfied map[types.NamespacedName]struct{}
}

// NewState returns empty bookkeeping.
func NewState() *State {
	return &State{
		pools:       map[string]*Pool{},
		used:        ipam.NewUsed(0),
		allocs:      map[netip.Addr]*allocation{},
		byService:   map[types.NamespacedName][]netip.Addr{},
		byPool:      map[string]map[netip.Addr]struct{}{},
		unsatisfied: map[types.NamespacedName]struct{}{},
	}
}

// SetPool adds or replaces a pool and returns the names of the other pools whose
// Conflicting mark changed. Allocations are not touched here: the Services that hold
// addresses are re-reconciled by the controller and keep or lose them there.
func (s *State) SetPool(p *Pool) []string {
	s.pools[p.Name] = p
	return without(markConflicts(s.pools), p.Name)
}

// DeletePool removes a pool; see SetPool.
func (s *State) DeletePool(name string) []string {
	delete(s.pools, name)
	return markConflicts(s.pools)
}

// HasPool reports whether a pool named name is known.
func (s *State) HasPool(name string) bool { _, ok := s.pools[name]; return ok }

// Unsatisfied returns the Services whose last request was not fully satisfied; the
// controller retries them when addresses free up or pools change.
func (s *State) Unsatisfied() []types.NamespacedName {
	out := make([]types.NamespacedName, 0, len(s.unsatisfied))
	for k := range s.unsatisfied {
		out = append(out, k)
	}
	return out
}

// Holders returns the Services holding addresses from pool (for requeueing them).
func (s *State) Holders(pool string) []types.NamespacedName {
	seen := map[types.NamespacedName]struct{}{}
	for a := range s.byPool[pool] {
		for _, o := range s.allocs[a].owners {
			seen[o.Key] = struct{}{}
		}
	}
	out := make([]types.NamespacedName, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	return out
}

// Register adopts addresses a Service already holds (from its status) at start-up, before
// any allocation is made, so a restart changes nothing. Call it for every Service, oldest
// first: when two Services claim one address and may not share, the older keeps it. An
// address no pool contains is held until the Service's reconcile releases it with a reason.
func (s *State) Register(r *Request, addrs []netip.Addr) {
	for _, a := range addrs {
		if !slices.Contains(r.Families, familyOf(a)) || slices.Contains(s.byService[r.Key], a) {
			continue
		}
		if al, ok := s.allocs[a]; ok {
			if s.veto(r, al) == "" {
				s.join(r, a, al)
			}
			continue
		}
		pool := ""
		if p := s.poolFor(a, r); p != nil {
			pool = p.Name
		}
		s.take(r, a, pool)
	}
}

// Release frees every address of the Service key and returns the pools affected.
func (s *State) Release(key types.NamespacedName) []string {
	var pools []string
	for _, a := range s.byService[key] {
		pools = append(pools, s.drop(key, a))
	}
	delete(s.byService, key)
	delete(s.unsatisfied, key)
	return pools
}

// Released is an address a Service lost, and why.
type Released struct {
	Addr netip.Addr
	Why  string
}

// Result is the outcome of reconciling one Service.
type Result struct {
	Addrs     []netip.Addr // held afterwards, in the order of the Service's families
	Pools     []string     // pools of Addrs
	Satisfied bool
	Reason    v1alpha1.ConditionReason
	Message   string
	Released  []Released
	// Changed lists the pools whose usage changed.
	Changed []string
}

// Reconcile makes the Service's holdings match its request: it releases what is no longer
// valid (pool gone or shrunk, selector changed, request changed, sharing broken) and
// acquires an address for every family that lacks one.
func (s *State) Reconcile(r *Request) Result {
	var res Result
	for _, a := range slices.Clone(s.byService[r.Key]) {
		al := s.allocs[a]
		for i, o := range al.owners { // later checks and sharing use the newest request
			if o.Key == r.Key {
				al.owners[i] = r
			}
		}
		if why := s.invalid(r, a, al); why != "" {
			res.Changed = append(res.Changed, s.drop(r.Key, a))
			res.Released = append(res.Released, Released{Addr: a, Why: why})
		}
	}

	var failures []string
	for _, f := range r.Families {
		if s.holds(r.Key, f) {
			continue
		}
		reason, msg := s.acquire(r, f)
		if reason != "" {
			if res.Reason == "" {
				res.Reason = reason
			}
			failures = append(failures, msg)
			continue
		}
		a := s.addrOf(r.Key, f)
		res.Changed = append(res.Changed, s.allocs[a].pool)
	}

	held := 0
	for _, f := range r.Families {
		if a := s.addrOf(r.Key, f); a.IsValid() {
			res.Addrs = append(res.Addrs, a)
			res.Pools = append(res.Pools, s.allocs[a].pool)
			held++
		}
	}
	res.Satisfied = held == len(r.Families) || (r.PreferDualStack && held > 0)
	if res.Satisfied {
		delete(s.unsatisfied, r.Key)
		res.Reason = v1alpha1.ReasonSatisfied
		var parts []string
		for i, a := range res.Addrs {
			parts = append(parts, fmt.Sprintf("%s from pool %s", a, res.Pools[i]))
		}
		res.Message = "assigned " + strings.Join(parts, ", ")
		if len(failures) > 0 {
			res.Message += "; " + strings.Join(failures, "; ")
		}
	} else {
		s.unsatisfied[r.Key] = struct{}{}
		res.Message = strings.Join(failures, "; ")
	}
	if len(res.Released) > 0 && !res.Satisfied {
		// What the user needs to know first is that the Service lost an address.
		res.Reason = v1alpha1.ReasonIPRemovedFromPool
	}
	return res
}

// invalid says why the Service may no longer hold a, or "".
func (s *State) invalid(r *Request, a netip.Addr, al *allocation) string {
	f := familyOf(a)
	if !slices.Contains(r.Families, f) {
		return fmt.Sprintf("the Service no longer asks for an %s address", f)
	}
	if want, ok := r.requested(f); ok && want != a {
		return fmt.Sprintf("the Service now requests %s", want)
	}
	p := s.pools[al.pool]
	if p == nil || !p.space.Contains(a) || !p.Selects(r) {
		if q := s.poolFor(a, r); q != nil {
			s.move(a, al, q.Name)
		} else {
			return lostPool(al.pool, p, a, r)
		}
	}
	for _, o := range al.owners {
		if o.Key != r.Key {
			if why := shareVeto(r, o); why != "" {
				return "it can no longer be shared: " + why
			}
		}
	}
	return ""
}

// lostPool says why address a of pool name (p, nil once deleted) is no longer r's,
// when no other pool that selects r contains it either.
func lostPool(name string, p *Pool, a netip.Addr, r *Request) string {
	const elsewhere = ", and no other pool that selects the Service contains it"
	switch {
	case name == "":
		return "no pool that selects the Service contains " + a.String()
	case p == nil:
		return "pool " + name + " was deleted" + elsewhere
	case len(p.Errors) > 0:
		return "pool " + name + " is invalid (" + p.Errors.ToAggregate().Error() + ")" + elsewhere
	case !p.space.Contains(a):
		return "pool " + name + " no longer contains it (its blocks changed)" + elsewhere
	case !p.Selects(r):
		return "pool " + name + " no longer selects the Service"
	}
	return ""
}

// acquire gets an address of family f for r, or says why it cannot.
func (s *State) acquire(r *Request, f corev1.IPFamily) (v1alpha1.ConditionReason, string) {
	v6 := f == corev1.IPv6Protocol
	if a, ok := r.requested(f); ok {
		if al, held := s.allocs[a]; held {
			if why := s.veto(r, al); why != "" {
				reason := v1alpha1.ReasonAlreadyAllocated
				if r.SharingKey != "" {
					reason = v1alpha1.ReasonIncompatibleSharing
				}
				return reason, fmt.Sprintf("requested %s cannot be used: %s", a, why)
			}
			s.join(r, a, al)
			return "", ""
		}
		var containing []*Pool
		for _, p := range s.sortedPools() {
			if p.space.Contains(a) {
				containing = append(containing, p)
			}
		}
		for _, p := range containing {
			if p.Selects(r) && p.usable() {
				s.take(r, a, p.Name)
				return "", ""
			}
		}
		if len(containing) == 0 {
			return v1alpha1.ReasonNoPool, fmt.Sprintf("no pool contains the requested %s", a)
		}
		return s.whyNot(r, containing, fmt.Sprintf("requested %s", a))
	}

	if r.SharingKey != "" {
		var veto string
		for _, a := range s.sharedCandidates(r.SharingKey, f) {
			al := s.allocs[a]
			if why := s.veto(r, al); why != "" {
				if veto == "" {
					veto = fmt.Sprintf("%s with sharing key %q: %s", a, r.SharingKey, why)
				}
				continue
			}
			s.join(r, a, al)
			return "", ""
		}
		if veto != "" {
			return v1alpha1.ReasonIncompatibleSharing, "cannot share " + veto
		}
	}

	var pools []*Pool
	for _, p := range s.sortedPools() {
		if p.space.Total(v6) > 0 {
			pools = append(pools, p)
		}
	}
	for _, p := range pools {
		if !p.Selects(r) || !p.usable() {
			continue
		}
		if a, ok := p.space.Next(s.used, v6, nil); ok {
			s.take(r, a, p.Name)
			return "", ""
		}
	}
	if len(pools) == 0 {
		return v1alpha1.ReasonNoPool, fmt.Sprintf("no LoadBalancerIPPool has %s addresses", f)
	}
	return s.whyNot(r, pools, "an "+string(f)+" address")
}

// whyNot explains why none of pools gave r what it asked for.
func (s *State) whyNot(r *Request, pools []*Pool, what string) (v1alpha1.ConditionReason, string) {
	var selecting, notes []string
	for _, p := range pools {
		if !p.Selects(r) {
			continue
		}
		selecting = append(selecting, p.Name)
		switch {
		case p.Disabled:
			notes = append(notes, p.Name+" is disabled")
		case p.conflictWith != "":
			notes = append(notes, p.Name+" overlaps pool "+p.conflictWith)
		default:
			notes = append(notes, p.Name+" is full")
		}
	}
	if len(selecting) == 0 {
		names := make([]string, len(pools))
		for i, p := range pools {
			names[i] = p.Name
		}
		return v1alpha1.ReasonPoolSelectorMismatch, fmt.Sprintf("no pool that could provide %s selects the Service (pools: %s)", what, strings.Join(names, ", "))
	}
	return v1alpha1.ReasonOutOfIPs, fmt.Sprintf("no pool can provide %s: %s", what, strings.Join(notes, ", "))
}

// veto says why r may not join allocation al, or "".
func (s *State) veto(r *Request, al *allocation) string {
	if p := s.pools[al.pool]; p != nil && !p.Selects(r) {
		return "its pool " + p.Name + " does not select the Service"
	}
	for _, o := range al.owners {
		if o.Key == r.Key {
			continue
		}
		if why := shareVeto(r, o); why != "" {
			return why
		}
	}
	return ""
}

func (s *State) sharedCandidates(key string, f corev1.IPFamily) []netip.Addr {
	var out []netip.Addr
	for a, al := range s.allocs {
		if familyOf(a) == f && len(al.owners) > 0 && al.owners[0].SharingKey == key {
			out = append(out, a)
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

func (s *State) sortedPools() []*Pool {
	out := make([]*Pool, 0, len(s.pools))
	for _, p := range s.pools {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b *Pool) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func (s *State) holds(key types.NamespacedName, f corev1.IPFamily) bool {
	return s.addrOf(key, f).IsValid()
}

func (s *State) addrOf(key types.NamespacedName, f corev1.IPFamily) netip.Addr {
	for _, a := range s.byService[key] {
		if familyOf(a) == f {
			return a
		}
	}
	return netip.Addr{}
}

func (s *State) take(r *Request, a netip.Addr, pool string) {
	s.used.Add(a)
	s.allocs[a] = &allocation{pool: pool, owners: []*Request{r}}
	s.byService[r.Key] = append(s.byService[r.Key], a)
	s.index(pool, a)
}

func (s *State) join(r *Request, a netip.Addr, al *allocation) {
	al.owners = append(al.owners, r)
	s.byService[r.Key] = append(s.byService[r.Key], a)
}

func (s *State) move(a netip.Addr, al *allocation, pool string) {
	delete(s.byPool[al.pool], a)
	al.pool = pool
	s.index(pool, a)
}

func (s *State) index(pool string, a netip.Addr) {
	if s.byPool[pool] == nil {
		s.byPool[pool] = map[netip.Addr]struct{}{}
	}
	s.byPool[pool][a] = struct{}{}
}

// drop removes key's hold on a, freeing a when nobody else holds it; returns a's pool.
func (s *State) drop(key types.NamespacedName, a netip.Addr) string {
	s.byService[key] = slices.DeleteFunc(s.byService[key], func(x netip.Addr) bool { return x == a })
	al := s.allocs[a]
	al.owners = slices.DeleteFunc(al.owners, func(o *Request) bool { return o.Key == key })
	if len(al.owners) == 0 {
		delete(s.allocs, a)
		delete(s.byPool[al.pool], a)
		s.used.Remove(a)
		if p := s.pools[al.pool]; p != nil {
			p.space.Released(a)
		}
	}
	return al.pool
}

func without(list []string, name string) []string {
	return slices.DeleteFunc(list, func(s string) bool { return s == name })
}
