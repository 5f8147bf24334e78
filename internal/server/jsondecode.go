package server

import (
	"bytes"
	"context"
	"io"
	"sync"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// UnmarshalRead decodes protobuf JSON from src into msg. Most requests
// clients repeat are a flat object of plain strings (`{"id":"…"}`), which
// decodeFlat reads itself: protojson's general decoder cost a cached
// GetWorkspace a twentieth of its CPU. Anything else is protojson's, as the
// embedded codec decodes it.
func (c *memoJSON) UnmarshalRead(ctx context.Context, src io.Reader, msg any) error {
	m, ok := msg.(proto.Message)
	if !ok {
		return c.JSONCodec.UnmarshalRead(ctx, src, msg)
	}
	buf := readBuffers.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= memoMaxMessage {
			readBuffers.Put(buf)
		}
	}()
	buf.Reset()
	if _, err := buf.ReadFrom(src); err != nil {
		return err // as is, so that a size cap or a cancellation keeps its identity
	}
	data := buf.Bytes()
	if len(data) == 0 {
		return c.JSONCodec.UnmarshalRead(ctx, bytes.NewReader(nil), msg) // its message for an empty body
	}
	if decodeFlat(data, m, buf.AvailableBuffer()) {
		return nil
	}
	return c.UnmarshalOptions.Unmarshal(data, m)
}

// readBuffers recycle request bodies' buffers.
var readBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// flatField is one field decodeFlat read.
type flatField struct {
	fd    protoreflect.FieldDescriptor
	value []byte
}

// maxFlatFields bounds the fields decodeFlat reads, and the fields of a
// message it searches for their names.
const maxFlatFields = 8

// decodeFlat sets m from data and reports true when data is a JSON object
// whose members are all distinct singular string fields of m (named by
// their JSON or proto names, as protojson accepts) with values of
// printable ASCII without escapes, which protojson decodes to exactly
// these fields. Otherwise it reports false, having left m as it was:
// anything else (escapes, other kinds, unknown or repeated names, oneofs,
// nulls, trailing data) is protojson's to decode or refuse. scratch is
// spare memory, not holding data, to use.
func decodeFlat(data []byte, m proto.Message, scratch []byte) bool {
	md := m.ProtoReflect().Descriptor()
	if md.FullName().Parent() == "google.protobuf" || md.RequiredNumbers().Len() > 0 || md.Fields().Len() > 4*maxFlatFields {
		return false // well-known types have JSON forms of their own
	}
	var fields [maxFlatFields]flatField
	n := 0
	i := skipSpace(data, 0)
	if i == len(data) || data[i] != '{' {
		return false
	}
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == '}' {
		i++
	} else {
		for {
			name, j, ok := plainString(data, i)
			if !ok {
				return false
			}
			if i = skipSpace(data, j); i == len(data) || data[i] != ':' {
				return false
			}
			value, j, ok := plainString(data, skipSpace(data, i+1))
			if !ok || n == maxFlatFields {
				return false
			}
			fd := flatFieldNamed(md.Fields(), name)
			if fd == nil {
				return false
			}
			for _, f := range fields[:n] {
				if f.fd == fd {
					return false // protojson refuses a duplicate
				}
			}
			fields[n] = flatField{fd: fd, value: value}
			n++
			if i = skipSpace(data, j); i == len(data) {
				return false
			}
			if data[i] == '}' {
				i++
				break
			}
			if data[i] != ',' {
				return false
			}
			i = skipSpace(data, i+1)
		}
	}
	if skipSpace(data, i) != len(data) {
		return false
	}
	// The fields go in as their binary encoding, which a generated message
	// decodes with an allocation for each string alone (setting them
	// through protoreflect boxes each value), resetting the message first
	// as protojson does. They are encoded into scratch's capacity.
	b := scratch[:0]
	for _, f := range fields[:n] {
		b = protowire.AppendTag(b, f.fd.Number(), protowire.BytesType)
		b = protowire.AppendBytes(b, f.value)
	}
	return proto.Unmarshal(b, m) == nil
}

// flatFieldNamed is the singular string field, in no oneof but its own,
// that protojson takes name for: the field with that JSON name, else the
// one with that proto name. It is nil for any other.
func flatFieldNamed(fields protoreflect.FieldDescriptors, name []byte) protoreflect.FieldDescriptor {
	var fd protoreflect.FieldDescriptor
	for k := range fields.Len() {
		if f := fields.Get(k); f.JSONName() == string(name) {
			fd = f
			break
		}
	}
	if fd == nil {
		for k := range fields.Len() {
			if f := fields.Get(k); f.TextName() == string(name) {
				fd = f
				break
			}
		}
	}
	if fd == nil || fd.Kind() != protoreflect.StringKind || fd.Cardinality() == protoreflect.Repeated || fd.IsExtension() {
		return nil
	}
	if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() {
		return nil // protojson refuses two members of one oneof
	}
	return fd
}

// plainString reads the JSON string starting at data[i] if it holds only
// printable ASCII and no escapes, returning its contents and the index past
// its closing quote.
func plainString(data []byte, i int) (s []byte, next int, ok bool) {
	if i >= len(data) || data[i] != '"' {
		return nil, 0, false
	}
	for j := i + 1; j < len(data); j++ {
		switch c := data[j]; {
		case c == '"':
			return data[i+1 : j], j + 1, true
		case c < 0x20 || c >= 0x7f || c == '\\':
			return nil, 0, false
		}
	}
	return nil, 0, false
}

// skipSpace is the index of the first byte at or after i that is not JSON
// whitespace.
func skipSpace(data []byte, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}
