package xdsres

import (
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

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
	var ok bool
	if rc, isTable := msg.(*routev3.RouteConfiguration); isTable {
		ok = m.tablePasses(rc)
	} else {
		ok = validateDeep(msg) == nil
	}
	// A failure is not remembered: it is rare, and Validate needs its text anyway.
	if ok {
		m.cur[msg] = true
	}
	return ok
}

// tablePasses is validateDeep(rc) == nil for a route table, checking each route that
// did not pass before on its own and the table without its routes. That is the same
// verdict: protoc-gen-validate checks a message by the rules on its own fields and
// each sub-message by that message's rules (VirtualHost has no rule on its routes as
// a list), and every Any is checked on its own, so a table passes exactly when every
// route passes and the rest of it does. A table that changed in one route among
// thousands thus costs one route.
func (m *Memo) tablePasses(rc *routev3.RouteConfiguration) bool {
	for _, vh := range rc.GetVirtualHosts() {
		for _, r := range vh.GetRoutes() {
			if r == nil || m.cur[r] {
				continue // a nil route passes inside a table as well
			}
			if m.prev[r] {
				m.cur[r] = true
				m.hits++
				continue
			}
			if validateDeep(r) != nil {
				return false
			}
			m.cur[r] = true
		}
	}
	return validateDeep(withoutRoutes(rc)) == nil
}

// withoutRoutes is a shallow copy of rc whose virtual hosts have no routes: its
// fields are rc's own values (shared, never modified).
func withoutRoutes(rc *routev3.RouteConfiguration) *routev3.RouteConfiguration {
	out := &routev3.RouteConfiguration{}
	copyFieldsExcept(out.ProtoReflect(), rc.ProtoReflect(), "virtual_hosts")
	for _, vh := range rc.GetVirtualHosts() {
		var c *routev3.VirtualHost
		if vh != nil {
			c = &routev3.VirtualHost{}
			copyFieldsExcept(c.ProtoReflect(), vh.ProtoReflect(), "routes")
		}
		out.VirtualHosts = append(out.VirtualHosts, c)
	}
	return out
}

func copyFieldsExcept(dst, src protoreflect.Message, except protoreflect.Name) {
	src.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Name() != except {
			dst.Set(fd, v)
		}
		return true
	})
}

// Next starts a new generation: what was not used since the previous Next is forgotten.
func (m *Memo) Next() {
	m.prev, m.cur = m.cur, make(map[proto.Message]bool, len(m.cur))
}

// Hits is how many checks were answered from memory so far.
func (m *Memo) Hits() int { return m.hits }
