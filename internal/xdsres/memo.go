package xdsres

import "google.golang.org/protobuf/proto"

// Memo is Validate for a caller that validates mostly the same messages again and
// again (the node agent, whose resources are shared between renders while their
// configs are unchanged): it remembers, by identity, the messages that passed the
// deep check, the costly part, so that a route table unchanged since the last call
// is not walked route by route again. It is only sound for messages that are never
// modified after they are first validated, which is the rule for everything a
// Server serves anyway.
//
// It remembers what was used in the current and the previous generation (see Next),
// so its memory follows the live resources. It is not safe for concurrent use.
type Memo struct {
	cur, prev map[proto.Message]bool
	hits      int
}

// NewMemo returns an empty Memo.
func NewMemo() *Memo { return &Memo{cur: map[proto.Message]bool{}} }

// Validate is Validate(r), skipping the deep check of the messages that passed it
// before.
func (m *Memo) Validate(r Resources) []ResourceError { return ValidateTrusting(r, m.Passes) }

// Passes reports whether msg passes the deep check of a resource on its own
// (ValidateMessage returns nil), remembering a pass.
func (m *Memo) Passes(msg proto.Message) bool {
	if m.cur[msg] {
		m.hits++
		return true
	}
	if m.prev[msg] {
		m.cur[msg] = true
		m.hits++
		return true
	}
	// A failure is not remembered: it is rare, and Validate needs its text anyway.
	if validateDeep(msg) != nil {
		return false
	}
	m.cur[msg] = true
	return true
}

// Next starts a new generation: what was not used since the previous Next is forgotten.
func (m *Memo) Next() {
	m.prev, m.cur = m.cur, make(map[proto.Message]bool, len(m.cur))
}

// Hits is how many checks were answered from memory so far.
func (m *Memo) Hits() int { return m.hits }
