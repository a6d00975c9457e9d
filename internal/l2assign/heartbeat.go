package l2assign

import (
	"strings"
	"sync"
	"time"
)

// LeasePrefix prefixes the node name in an agent's heartbeat Lease; it must stay equal to
// nodeagent/agent.LeasePrefix (a test checks it). Not imported from there: the agent
// package drags in eBPF and netlink, which the controller has no business linking.
const LeasePrefix = "portico-agent-"

// NodeOfLease returns the node a heartbeat Lease name belongs to.
func NodeOfLease(leaseName string) (string, bool) {
	n, ok := strings.CutPrefix(leaseName, LeasePrefix)
	return n, ok && n != ""
}

// Lease is what the tracker needs of a heartbeat Lease.
type Lease struct {
	Holder          string
	RenewTime       time.Time // zero when released
	DurationSeconds int32
}

// Why a node has no live heartbeat; also used in events ("was node-a: heartbeat expired").
const (
	DownNoLease  = "no agent heartbeat"
	DownExpired  = "heartbeat expired"
	DownReleased = "heartbeat released (agent stopped)"
)

// Tracker follows the agents' heartbeat Leases and says which nodes are live.
//
// Expiry is measured from when the controller observed a renewal, on the controller's own
// clock, never from the agent's renewTime: the agent fences itself Duration after it sent
// the renewal, which is before the controller can observe it, so the agent has stopped
// answering before the controller moves its addresses, without any wall-clock agreement
// between machines. The price is conservative: a Lease first seen after a controller
// restart counts as renewed at that moment, so failover for a node that died while the
// controller was down takes one extra lease duration.
//
// A Lease without holder or renewTime is a release (graceful agent shutdown) and ends the
// node's liveness at once, as does a deleted Lease.
type Tracker struct {
	mu     sync.Mutex
	leases map[string]*tracked
	// reported is the liveness last reported to the caller (by Observe or Sweep), so
	// that a Sweep reports only flips.
	reported map[string]bool
	wake     chan struct{}
}

type tracked struct {
	lease    Lease
	observed time.Time
}

// NewTracker returns an empty tracker.
func NewTracker() *Tracker {
	return &Tracker{leases: map[string]*tracked{}, reported: map[string]bool{}, wake: make(chan struct{}, 1)}
}

// Observe records the Lease of node as seen at now (l nil: the Lease was deleted). It
// reports whether the node's liveness changed, i.e. whether assignments must be
// recomputed; plain renewals of a live node return false, so the agents' heartbeats cost
// the controller no recomputation.
func (t *Tracker) Observe(node string, l *Lease, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	was := t.reported[node]
	if l == nil {
		delete(t.leases, node)
	} else if old, ok := t.leases[node]; !ok || old.lease != *l {
		t.leases[node] = &tracked{lease: *l, observed: now}
	}
	is, _ := t.live(node, now)
	if is {
		t.reported[node] = true
	} else {
		delete(t.reported, node)
	}
	if was == is {
		return false
	}
	// A node that just became live may expire before whatever the expiry timer waits for.
	select {
	case t.wake <- struct{}{}:
	default:
	}
	return true
}

// Sweep reports whether a node reported live has expired by now (and records it, so
// each expiry is reported once).
func (t *Tracker) Sweep(now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	changed := false
	for node := range t.reported {
		if ok, _ := t.live(node, now); !ok {
			delete(t.reported, node)
			changed = true
		}
	}
	return changed
}

// Wake is signalled (coalesced) when a node becomes live, i.e. when the next expiry may
// have moved earlier.
func (t *Tracker) Wake() <-chan struct{} { return t.wake }

// Live reports whether node has a live heartbeat at now, and if not, why.
func (t *Tracker) Live(node string, now time.Time) (bool, string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.live(node, now)
}

func (t *Tracker) live(node string, now time.Time) (bool, string) {
	tr, ok := t.leases[node]
	switch {
	case !ok:
		return false, DownNoLease
	case tr.lease.Holder == "" || tr.lease.RenewTime.IsZero():
		return false, DownReleased
	case tr.lease.Holder != node:
		// Only the node's own agent may keep it alive; anything else is a stale or foreign write.
		return false, "heartbeat held by " + tr.lease.Holder
	case !now.Before(tr.expiry()):
		return false, DownExpired
	}
	return true, ""
}

func (tr *tracked) expiry() time.Time {
	return tr.observed.Add(time.Duration(tr.lease.DurationSeconds) * time.Second)
}

// NextExpiry returns the earliest moment after now at which a live heartbeat expires, so
// the controller can wake up exactly then instead of polling.
func (t *Tracker) NextExpiry(now time.Time) (time.Time, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var next time.Time
	for node, tr := range t.leases {
		if ok, _ := t.live(node, now); !ok {
			continue
		}
		if e := tr.expiry(); next.IsZero() || e.Before(next) {
			next = e
		}
	}
	return next, !next.IsZero()
}
