package lbipam

import (
	"cmp"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/ipam"
)

// Pool is a parsed LoadBalancerIPPool.
type Pool struct {
	Name       string
	Generation int64
	Created    time.Time
	// Rank orders pools created in the same second (creationTimestamp has one-second
	// resolution): the controller numbers pools in the order their creation reaches it
	// (etcd's commit order), so of two overlapping pools created at the same instant the
	// one committed second is the newer.
	Rank     uint64
	Disabled bool
	// Errors make the pool unusable (the webhook refuses them; they reach us only with it off).
	Errors   field.ErrorList
	selector labels.Selector
	space    *ipam.Space

	// Set by the conflict pass: the older pool this one overlaps, and where.
	conflictWith  string
	conflictRange ipam.Range
}

// ParsePool validates a pool in one pass. An invalid pool is returned with Errors set, so
// its status can say what is wrong.
func ParsePool(p *v1alpha1.LoadBalancerIPPool) *Pool {
	out := &Pool{Name: p.Name, Generation: p.Generation, Created: p.CreationTimestamp.Time, Disabled: p.Spec.Disabled}
	ranges, errs := ipam.ParseBlocks(field.NewPath("spec", "blocks"), p.Spec.Blocks, p.Spec.AllowFirstLastIPs)
	out.Errors = errs
	out.selector = labels.Everything()
	if p.Spec.ServiceSelector != nil {
		sel, err := metav1.LabelSelectorAsSelector(p.Spec.ServiceSelector)
		if err != nil {
			out.Errors = append(out.Errors, field.Invalid(field.NewPath("spec", "serviceSelector"), p.Spec.ServiceSelector, err.Error()))
		} else {
			out.selector = sel
		}
	}
	if len(out.Errors) > 0 {
		ranges = nil
	}
	out.space = ipam.NewSpace(ranges)
	return out
}

// Ranges returns the pool's ranges.
func (p *Pool) Ranges() []ipam.Range { return p.space.Ranges() }

// Selects reports whether the pool's selector matches r.
func (p *Pool) Selects(r *Request) bool {
	return len(p.Errors) == 0 && p.selector.Matches(labels.Set(r.Labels))
}

// usable reports whether the pool may hand out new addresses.
func (p *Pool) usable() bool { return len(p.Errors) == 0 && !p.Disabled && p.conflictWith == "" }

// older orders pools by age (creation time, then Rank), then name, so the older of two
// overlapping pools keeps its ranges.
func older(a, b *Pool) int {
	return cmp.Or(a.Created.Compare(b.Created), cmp.Compare(a.Rank, b.Rank), strings.Compare(a.Name, b.Name))
}

// markConflicts recomputes which pools overlap an older valid pool. It returns the names
// of pools whose mark changed.
func markConflicts(pools map[string]*Pool) []string {
	ordered := make([]*Pool, 0, len(pools))
	for _, p := range pools {
		ordered = append(ordered, p)
	}
	slices.SortFunc(ordered, older)
	var changed []string
	var kept []*Pool
	for _, p := range ordered {
		prev := p.conflictWith
		p.conflictWith, p.conflictRange = "", ipam.Range{}
		if len(p.Errors) == 0 {
		search:
			for _, k := range kept {
				for _, a := range p.Ranges() {
					for _, b := range k.Ranges() {
						if o, ok := ipam.Intersect(a, b); ok {
							p.conflictWith, p.conflictRange = k.Name, o
							break search
						}
					}
				}
			}
			if p.conflictWith == "" {
				kept = append(kept, p)
			}
		}
		if prev != p.conflictWith {
			changed = append(changed, p.Name)
		}
	}
	return changed
}

// PoolStatus is what the controller writes into a pool's status.
type PoolStatus struct {
	IPv4, IPv6  *v1alpha1.IPFamilyCounts
	Available   int64
	Ready       bool
	ReadyReason v1alpha1.ConditionReason
	ReadyMsg    string
	Conflicting bool
	ConflictMsg string
}

// Status computes the status of pool name from the current allocations.
func (s *State) Status(name string) (PoolStatus, bool) {
	p, ok := s.pools[name]
	if !ok {
		return PoolStatus{}, false
	}
	var st PoolStatus
	used4, used6 := s.poolUsed(name)
	for _, fam := range []struct {
		v6   bool
		used int64
		dst  **v1alpha1.IPFamilyCounts
	}{{false, used4, &st.IPv4}, {true, used6, &st.IPv6}} {
		total := p.space.Total(fam.v6)
		if total == 0 && fam.used == 0 {
			continue
		}
		c := &v1alpha1.IPFamilyCounts{Total: clamp(total), Used: fam.used}
		if p.usable() && c.Total > c.Used {
			c.Available = c.Total - c.Used
		}
		*fam.dst = c
		if st.Available+c.Available >= st.Available {
			st.Available += c.Available
		} else {
			st.Available = math.MaxInt64
		}
	}
	switch {
	case len(p.Errors) > 0:
		st.ReadyReason, st.ReadyMsg = v1alpha1.ReasonInvalid, p.Errors.ToAggregate().Error()
	case p.Disabled:
		st.ReadyReason, st.ReadyMsg = v1alpha1.ReasonDisabled, "the pool is disabled: existing allocations are kept, no new ones are made"
	case p.conflictWith != "":
		st.ReadyReason, st.ReadyMsg = v1alpha1.ReasonOverlap, "the pool overlaps pool "+p.conflictWith+" and serves no new allocations"
	default:
		st.Ready, st.ReadyReason = true, v1alpha1.ReasonValid
		st.ReadyMsg = fmt.Sprintf("%d addresses available", st.Available)
	}
	if p.conflictWith != "" {
		st.Conflicting = true
		st.ConflictMsg = fmt.Sprintf("range %s overlaps pool %s, which is older; this pool's ranges serve no new allocations until the overlap is removed",
			p.conflictRange, p.conflictWith)
	} else {
		st.ConflictMsg = "no overlap with other pools"
	}
	return st, true
}

func (s *State) poolUsed(name string) (v4, v6 int64) {
	for a := range s.byPool[name] {
		if a.Is4() {
			v4++
		} else {
			v6++
		}
	}
	return v4, v6
}

func clamp(n uint64) int64 {
	if n > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(n)
}

// poolFor returns the pool an address belongs to for r: the oldest valid pool that
// contains it and selects r, or nil.
func (s *State) poolFor(a netip.Addr, r *Request) *Pool {
	var best *Pool
	for _, p := range s.pools {
		if p.Selects(r) && p.space.Contains(a) && (best == nil || older(p, best) < 0) {
			best = p
		}
	}
	return best
}
