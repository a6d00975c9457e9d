package l2quorum

import "time"

// Fence decides whether an agent may answer for its announcements. It combines two
// conditions: its contact with a quorum is valid (Extend feeds it ValidUntil, or the
// heartbeat Lease's validity when memberlist is off), and the set it would answer was
// read from the apiserver after the last lapse of that contact (design §3, issue 10 §5).
// A node that was cut off may have been declared dead and its addresses given to
// another node; the set it still holds is stale until re-read, so regaining the quorum
// alone must not make it answer again.
//
// A Fence is not safe for concurrent use; nodeagent/membership guards it.
type Fence struct {
	until time.Time
	down  bool
	stale bool
	// epoch counts lapses: a refresh counts only if no lapse happened since it began.
	epoch uint64
	// forgive: see NewFence. wasFresh is whether the set was fresh when the current
	// lapse began.
	forgive  time.Duration
	wasFresh bool
}

// NewFence returns a fence that answers nothing until its first Extend and Refreshed.
//
// A lapse shorter than forgive (measured between the validities, i.e. between the
// send times of the ping rounds before and after it) leaves a fresh set fresh: nobody
// can have declared the node dead over a gap shorter than memberlist's minimum death
// declaration, so nothing can have been reassigned meanwhile; a CPU stall or a lost
// round must not silence a node for the length of an apiserver outage. Zero forgives
// nothing.
func NewFence(forgive time.Duration) *Fence { return &Fence{down: true, stale: true, forgive: forgive} }

func (f *Fence) observe(now time.Time) {
	if !f.down && !now.Before(f.until) {
		f.wasFresh = !f.stale
		f.down, f.stale = true, true
		f.epoch++
	}
}

// Extend records that contact with a quorum is valid until until.
func (f *Fence) Extend(now, until time.Time) {
	f.observe(now)
	prev := f.until
	if until.After(f.until) {
		f.until = until
	}
	if f.down && f.until.After(now) {
		f.down = false
		if f.wasFresh && !prev.IsZero() && f.until.Sub(prev) < f.forgive {
			f.stale = false
		}
		f.wasFresh = false
	}
}

// Answering reports whether the agent may answer at now.
func (f *Fence) Answering(now time.Time) bool {
	f.observe(now)
	return !f.down && !f.stale
}

// Stale reports whether the set must be re-read before the agent answers again.
func (f *Fence) Stale(now time.Time) bool {
	f.observe(now)
	return f.stale
}

// Quorate reports whether contact with a quorum is valid at now.
func (f *Fence) Quorate(now time.Time) bool {
	f.observe(now)
	return !f.down
}

// Begin starts a refresh: it returns the epoch to hand to Refreshed, and whether a
// refresh may start now (only with a valid quorum: a read made while cut off could
// be followed by a reassignment the node never hears of).
func (f *Fence) Begin(now time.Time) (uint64, bool) {
	f.observe(now)
	return f.epoch, !f.down
}

// Refreshed ends the refresh begun at epoch: the set is current unless the quorum lapsed
// meanwhile. It reports whether the fence lifted.
func (f *Fence) Refreshed(epoch uint64, now time.Time) bool {
	f.observe(now)
	if epoch != f.epoch || f.down {
		return false
	}
	f.stale = false
	return true
}

// Until is the current end of the quorum's validity (zero if never valid).
func (f *Fence) Until() time.Time { return f.until }
