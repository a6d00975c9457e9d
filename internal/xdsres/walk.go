package xdsres

import (
	"fmt"
	"reflect"
	"strings"
	"sync"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// Finding the Anys of a resource is most of what validation costs: protoreflect's
// Range builds a reflect value for every populated field (reflect.NewAt and a
// sync.Map lookup each), about 3 µs per route, so a 1,000-route table took 3 ms per
// check and the agent checks it three times per change. walkFast visits instead only
// the Go struct fields that can lead to an Any, from a plan computed once per
// message type from its descriptor, at a few nanoseconds per field. walkAnys (the
// protoreflect walk) remains for messages that are not generated Go structs.

// fieldPlan is one struct field of a message that may hold an Any, directly or deeper.
type fieldPlan struct {
	index int    // Go struct field index
	name  string // proto field name, for the error path
	kind  fieldShape
	// elem is the plan of the message held (singular, list element or map value);
	// nil for an Any, which is opened rather than walked.
	elem *msgPlan
	// oneof maps a oneof wrapper type to its member, for kind shapeOneof.
	oneof map[reflect.Type]oneofMember
}

type oneofMember struct {
	name string
	elem *msgPlan // nil for an Any
}

type fieldShape uint8

const (
	shapeSingular fieldShape = iota
	shapeList
	shapeMap
	shapeOneof
)

// msgPlan lists the fields of one message type to descend into; an empty plan means
// the type cannot contain an Any at any depth.
type msgPlan struct {
	fields []fieldPlan
}

var (
	anyName = (&anypb.Any{}).ProtoReflect().Descriptor().FullName()

	plansMu sync.Mutex
	// plans is written under plansMu and read without it once published (sync.Map).
	plans     sync.Map // reflect.Type (pointer to struct) -> *msgPlan
	canHoldAn = map[protoreflect.FullName]bool{}
)

// planFor returns the plan of the generated message type t (a pointer to struct),
// or nil if t is not one (e.g. dynamicpb), for which the caller falls back to walkAnys.
func planFor(t reflect.Type) *msgPlan {
	if p, ok := plans.Load(t); ok {
		return p.(*msgPlan)
	}
	plansMu.Lock()
	defer plansMu.Unlock()
	if p, ok := plans.Load(t); ok {
		return p.(*msgPlan)
	}
	building := map[reflect.Type]*msgPlan{}
	p := buildPlan(t, building)
	if p == nil {
		return nil
	}
	// Published only when complete: plans of a cycle point at each other.
	for bt, bp := range building {
		plans.Store(bt, bp)
	}
	return p
}

func buildPlan(t reflect.Type, building map[reflect.Type]*msgPlan) *msgPlan {
	if p, ok := plans.Load(t); ok {
		return p.(*msgPlan)
	}
	if p, ok := building[t]; ok {
		return p
	}
	if t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct {
		return nil
	}
	m, ok := reflect.Zero(t).Interface().(proto.Message)
	if !ok {
		return nil
	}
	md := m.ProtoReflect().Descriptor()
	markAnyHolders(md)
	p := &msgPlan{}
	building[t] = p
	if !canHoldAn[md.FullName()] {
		return p
	}
	st := t.Elem()
	byName, byOneof := map[string]int{}, map[string]int{}
	for i := range st.NumField() {
		f := st.Field(i)
		if n := tagName(f.Tag.Get("protobuf")); n != "" {
			byName[n] = i
		}
		if o := f.Tag.Get("protobuf_oneof"); o != "" {
			byOneof[o] = i
		}
	}
	oneofs := map[string]int{} // oneof name -> its entry in p.fields
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		held := heldMessage(fd)
		if held == nil || !canHoldAn[held.FullName()] {
			continue
		}
		if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() {
			idx, ok := byOneof[string(od.Name())]
			if !ok {
				return nil
			}
			at, ok := oneofs[string(od.Name())]
			if !ok {
				at = len(p.fields)
				oneofs[string(od.Name())] = at
				p.fields = append(p.fields, fieldPlan{index: idx, kind: shapeOneof, oneof: map[reflect.Type]oneofMember{}})
			}
			// The wrapper type of a member is only reachable through a value: set it
			// on a scratch message and look at what the interface field holds.
			scratch := reflect.New(st)
			sm := scratch.Interface().(proto.Message).ProtoReflect()
			sm.Set(fd, sm.NewField(fd))
			w := scratch.Elem().Field(idx).Elem()
			member := oneofMember{name: string(fd.Name())}
			if held.FullName() != anyName {
				if member.elem = buildPlan(w.Elem().Field(0).Type(), building); member.elem == nil {
					return nil
				}
			}
			p.fields[at].oneof[w.Type()] = member
			continue
		}
		idx, ok := byName[string(fd.Name())]
		if !ok {
			return nil
		}
		fp := fieldPlan{index: idx, name: string(fd.Name()), kind: shapeSingular}
		gt := st.Field(idx).Type
		switch {
		case fd.IsMap():
			fp.kind, gt = shapeMap, gt.Elem()
		case fd.IsList():
			fp.kind, gt = shapeList, gt.Elem()
		}
		if held.FullName() != anyName {
			if fp.elem = buildPlan(gt, building); fp.elem == nil {
				return nil
			}
		}
		p.fields = append(p.fields, fp)
	}
	return p
}

// heldMessage is the message type a field holds (its map value for a map), or nil.
func heldMessage(fd protoreflect.FieldDescriptor) protoreflect.MessageDescriptor {
	if fd.IsMap() {
		fd = fd.MapValue()
	}
	if fd.Kind() != protoreflect.MessageKind && fd.Kind() != protoreflect.GroupKind {
		return nil
	}
	return fd.Message()
}

func tagName(tag string) string {
	for part := range strings.SplitSeq(tag, ",") {
		if n, ok := strings.CutPrefix(part, "name="); ok {
			return n
		}
	}
	return ""
}

// markAnyHolders records, for md and every message reachable from it, whether it can
// hold an Any at some depth. It iterates to a fixpoint over the reachable set,
// because a depth-first answer is wrong inside cycles (a type whose only path to an
// Any goes back through a type still being looked at). Caller holds plansMu.
func markAnyHolders(md protoreflect.MessageDescriptor) {
	if _, done := canHoldAn[md.FullName()]; done {
		return
	}
	var order []protoreflect.MessageDescriptor
	seen := map[protoreflect.FullName]bool{}
	var visit func(protoreflect.MessageDescriptor)
	visit = func(d protoreflect.MessageDescriptor) {
		if _, done := canHoldAn[d.FullName()]; done || seen[d.FullName()] {
			return
		}
		seen[d.FullName()] = true
		order = append(order, d)
		fields := d.Fields()
		for i := range fields.Len() {
			if h := heldMessage(fields.Get(i)); h != nil {
				visit(h)
			}
		}
	}
	visit(md)
	holds := map[protoreflect.FullName]bool{}
	get := func(n protoreflect.FullName) bool {
		if v, done := canHoldAn[n]; done {
			return v
		}
		return holds[n]
	}
	for changed := true; changed; {
		changed = false
		for _, d := range order {
			if holds[d.FullName()] {
				continue
			}
			h := d.FullName() == anyName
			fields := d.Fields()
			for i := 0; i < fields.Len() && !h; i++ {
				if m := heldMessage(fields.Get(i)); m != nil {
					h = m.FullName() == anyName || get(m.FullName())
				}
			}
			if h {
				holds[d.FullName()], changed = true, true
			}
		}
	}
	for _, d := range order {
		canHoldAn[d.FullName()] = holds[d.FullName()]
	}
}

// walkAnysOf validates the Anys inside m, with the fast walk when m is a generated message.
func walkAnysOf(m proto.Message) *anyError {
	if rv := reflect.ValueOf(m); rv.Kind() == reflect.Pointer && !rv.IsNil() {
		if _, isAny := m.(*anypb.Any); !isAny {
			if p := planFor(rv.Type()); p != nil {
				return walkFast(rv, p)
			}
		}
	}
	return walkAnys(m.ProtoReflect())
}

// walkFast validates every Any inside the message v (a non-nil pointer to a
// generated struct) following plan p; the error and its path match walkAnys'.
func walkFast(v reflect.Value, p *msgPlan) *anyError {
	if len(p.fields) == 0 {
		return nil
	}
	s := v.Elem()
	for i := range p.fields {
		fp := &p.fields[i]
		f := s.Field(fp.index)
		switch fp.kind {
		case shapeSingular:
			if f.IsNil() {
				continue
			}
			if err := walkValue(f, fp.elem); err != nil {
				err.path = append(err.path, fp.name)
				return err
			}
		case shapeList:
			for j := range f.Len() {
				e := f.Index(j)
				if e.IsNil() {
					continue
				}
				if err := walkValue(e, fp.elem); err != nil {
					err.path = append(err.path, fmt.Sprintf("%s[%d]", fp.name, j))
					return err
				}
			}
		case shapeMap:
			iter := f.MapRange()
			for iter.Next() {
				e := iter.Value()
				if e.IsNil() {
					continue
				}
				if err := walkValue(e, fp.elem); err != nil {
					err.path = append(err.path, fmt.Sprintf("%s[%v]", fp.name, iter.Key().Interface()))
					return err
				}
			}
		case shapeOneof:
			if f.IsNil() {
				continue
			}
			w := f.Elem()
			member, ok := fp.oneof[w.Type()]
			if !ok {
				continue // a scalar member, or a message that cannot hold an Any
			}
			e := w.Elem().Field(0)
			if e.IsNil() {
				continue
			}
			if err := walkValue(e, member.elem); err != nil {
				err.path = append(err.path, member.name)
				return err
			}
		}
	}
	return nil
}

// walkValue walks the message e, or opens and validates it if it is an Any (elem nil).
func walkValue(e reflect.Value, elem *msgPlan) *anyError {
	if elem != nil {
		return walkFast(e, elem)
	}
	a := e.Interface().(*anypb.Any)
	inner, err := a.UnmarshalNew()
	if err != nil {
		return nil // not linked in: Envoy is the judge
	}
	if err := validateDeep(inner); err != nil {
		return &anyError{typ: inner.ProtoReflect().Descriptor().FullName(), err: err}
	}
	return nil
}
