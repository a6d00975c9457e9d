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
}

// NewFence returns a fence that answers nothing until its first Extend and Refreshed.
func NewFence() *Fence { return &Fence{down: true, stale: true} }

func (f *Fence) observe(now time.Time) {
	if !f.down && !now.Before(f.until) {
		f.down, f.stale = true, true
		f.epoch++
	}
}

// Extend records that contact with a quorum is valid until until.
func (f *Fence) Extend(now, until time.Time) {
	f.observe(now)
	if until.After(f.until) {
		f.until = until
	}
	if f.until.After(now) {
		f.down = false
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
