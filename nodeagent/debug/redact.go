package debug

import (
	"github.com/cncf/xds/go/udpa/annotations"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/anypb"
)

// Redacted replaces the value of every sensitive field, as in Envoy's config_dump.
const Redacted = "[redacted]"

// Redact overwrites, in place, every field of m (at any depth, inside Any too) that
// Envoy's API marks (udpa.annotations.sensitive): private keys, passwords, session
// ticket keys, HMAC secrets. A string becomes Redacted; a message (a DataSource)
// becomes one whose inline_string is Redacted, so the reader still sees where the
// value was.
func Redact(m proto.Message) { redact(m.ProtoReflect()) }

func redact(m protoreflect.Message) {
	type field struct {
		fd protoreflect.FieldDescriptor
		v  protoreflect.Value
	}
	var set []field
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		set = append(set, field{fd, v})
		return true
	})
	for _, f := range set {
		fd, v := f.fd, f.v
		switch {
		case sensitive(fd):
			blank(m, fd, v)
		case fd.IsList() && fd.Message() != nil:
			for i := 0; i < v.List().Len(); i++ {
				redactValue(v.List().Get(i).Message())
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				redactValue(mv.Message())
				return true
			})
		case !fd.IsMap() && fd.Message() != nil:
			redactValue(v.Message())
		}
	}
}

// redactValue redacts a message value; an Any is opened, redacted and packed again.
func redactValue(m protoreflect.Message) {
	a, ok := m.Interface().(*anypb.Any)
	if !ok {
		redact(m)
		return
	}
	inner, err := a.UnmarshalNew()
	if err != nil {
		// A type this binary does not know: the agent validates everything it
		// serves with these same types, so nothing it serves ends up here.
		return
	}
	redact(inner.ProtoReflect())
	if packed, err := anypb.New(inner); err == nil {
		a.Value = packed.Value
	}
}

func sensitive(fd protoreflect.FieldDescriptor) bool {
	opts, ok := fd.Options().(*descriptorpb.FieldOptions)
	if !ok || opts == nil {
		return false
	}
	v, ok := proto.GetExtension(opts, annotations.E_Sensitive).(bool)
	return ok && v
}

// blank replaces the sensitive field fd of m.
func blank(m protoreflect.Message, fd protoreflect.FieldDescriptor, v protoreflect.Value) {
	switch {
	case fd.IsList():
		l := v.List()
		for i := 0; i < l.Len(); i++ {
			l.Set(i, redactedValue(fd, l.NewElement))
		}
	case fd.IsMap():
		m.Clear(fd)
	default:
		m.Set(fd, redactedValue(fd, func() protoreflect.Value { return m.NewField(fd) }))
	}
}

// redactedValue is what stands in for a sensitive value of fd's kind; fresh makes
// an empty value of it (a new message for message kinds).
func redactedValue(fd protoreflect.FieldDescriptor, fresh func() protoreflect.Value) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(Redacted)
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes([]byte(Redacted))
	case protoreflect.MessageKind, protoreflect.GroupKind:
		v := fresh()
		if in := v.Message().Descriptor().Fields().ByName("inline_string"); in != nil && in.Kind() == protoreflect.StringKind {
			v.Message().Set(in, protoreflect.ValueOfString(Redacted))
		}
		return v
	}
	return fd.Default()
}
