// Package membership is the node agent's side of L2 liveness: it keeps the agent in the
// memberlist cluster (internal/l2member), pings a quorum of voters while the node has
// something to announce, and gates the ARP/NDP responder with the rule of
// internal/l2quorum: answer only with a recent quorum, and after any lapse only once
// the assignment was re-read from the apiserver (or, on a restart during an outage,
// resumed from the state file with no peer announcing the same addresses).
//
// The apiserver is absent from this package on purpose: losing it must not silence a
// node that its peers still see.
package membership

import (
	"context"
	"sync"
	"time"

	"github.com/portico-dev/portico/internal/l2quorum"
)

// Gate is the fence of internal/l2quorum behind a lock, fed by whichever liveness
// source the agent runs (memberlist quorum, or the heartbeat Lease when memberlist is
// off), and read by the responder for every packet.
type Gate struct {
	mu    sync.Mutex
	fence *l2quorum.Fence
	now   func() time.Time

	subsMu sync.Mutex
	subs   []chan struct{}
	shut   bool
}

// Shut closes the gate for good: the agent is stopping, and must be silent before it
// tells the others (leave, Lease release), who then reassign at once.
func (g *Gate) Shut() {
	g.mu.Lock()
	g.shut = true
	g.mu.Unlock()
	g.notify()
}

// NewGate returns a closed gate; forgive is l2quorum.NewFence's.
func NewGate(forgive time.Duration) *Gate {
	return &Gate{fence: l2quorum.NewFence(forgive), now: time.Now}
}

// Extend records that the liveness source vouches for the node until until.
func (g *Gate) Extend(until time.Time) {
	g.mu.Lock()
	before := g.state()
	g.fence.Extend(g.now(), until)
	after := g.state()
	g.mu.Unlock()
	if before != after {
		g.notify()
	}
}

// Answering reports whether the responder may answer now.
func (g *Gate) Answering() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return !g.shut && g.fence.Answering(g.now())
}

// Begin starts a refresh of the assignment (see l2quorum.Fence.Begin); ok is false when
// none is needed (the set is fresh) or none may start (no quorum).
func (g *Gate) Begin() (epoch uint64, ok bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	if !g.fence.Stale(now) {
		return 0, false
	}
	return g.fence.Begin(now)
}

// Refreshed ends a refresh; it reports whether the gate opened.
func (g *Gate) Refreshed(epoch uint64) bool {
	g.mu.Lock()
	ok := g.fence.Refreshed(epoch, g.now())
	g.mu.Unlock()
	if ok {
		g.notify()
	}
	return ok
}

// Quorate reports whether the liveness source vouches for the node now.
func (g *Gate) Quorate() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.fence.Quorate(g.now())
}

// Subscribe returns a channel signalled (coalesced) when the gate may have opened,
// closed or come to need a refresh. Expiry is noticed by Watch, since nothing else
// happens when contact ends.
func (g *Gate) Subscribe() <-chan struct{} {
	ch := make(chan struct{}, 1)
	g.subsMu.Lock()
	g.subs = append(g.subs, ch)
	g.subsMu.Unlock()
	return ch
}

type gateState struct{ answering, stale, quorate bool }

func (g *Gate) state() gateState {
	now := g.now()
	return gateState{answering: g.fence.Answering(now), stale: g.fence.Stale(now), quorate: g.fence.Quorate(now)}
}

func (g *Gate) notify() {
	g.subsMu.Lock()
	defer g.subsMu.Unlock()
	for _, ch := range g.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// Watch signals Changes when the gate closes by expiry, waking exactly at the end of
// the validity, until ctx ends.
func (g *Gate) Watch(ctx context.Context) {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		g.mu.Lock()
		st := g.state()
		until := g.fence.Until()
		g.mu.Unlock()
		d := time.Hour
		if st.quorate {
			d = time.Until(until) + time.Millisecond
		}
		t.Reset(d)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			g.mu.Lock()
			changed := g.state() != st
			g.mu.Unlock()
			if changed {
				g.notify()
			}
		}
	}
}
