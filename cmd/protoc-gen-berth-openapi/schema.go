package main

import (
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// schemas collects components.schemas: one per message and enum reachable
// from the API, named by full proto name ("berth.v1.Workspace"). The JSON
// shapes follow protojson as berth's JSON codec is set up (server.go):
// proto field names (UseProtoNames), every scalar written even at its zero
// value (EmitDefaultValues), 64-bit integers as strings, enums by name.
type schemas struct {
	defs map[string]*object
	docs comments
}

func newSchemas(docs comments) *schemas {
	return &schemas{defs: map[string]*object{}, docs: docs}
}

// ref returns a $ref to the schema of a message or enum, adding it (and
// what it uses) to the components first. Well-known types are inlined,
// since protojson gives them special shapes.
func (s *schemas) ref(d protoreflect.Descriptor) *object {
	if wkt := wellKnown(d.FullName()); wkt != nil {
		return wkt
	}
	name := string(d.FullName())
	if _, ok := s.defs[name]; !ok {
		s.defs[name] = obj() // placeholder: breaks recursion
		switch d := d.(type) {
		case protoreflect.MessageDescriptor:
			s.defs[name] = s.message(d)
		case protoreflect.EnumDescriptor:
			s.defs[name] = s.enum(d)
		}
	}
	return obj("$ref", "#/components/schemas/"+name)
}

// sorted returns the component schemas ordered by name.
func (s *schemas) sorted() *object {
	names := make([]string, 0, len(s.defs))
	for n := range s.defs {
		names = append(names, n)
	}
	slices.Sort(names)
	o := obj()
	for _, n := range names {
		o.set(n, s.defs[n])
	}
	return o
}

func (s *schemas) message(md protoreflect.MessageDescriptor) *object {
	desc := s.docs.of(md)
	props := obj()
	var required []any
	for i := range md.Fields().Len() {
		fd := md.Fields().Get(i)
		fs := s.field(fd)
		if isRequired(fd) {
			required = append(required, string(fd.Name()))
		}
		props.set(string(fd.Name()), fs)
	}
	for i := range md.Oneofs().Len() {
		od := md.Oneofs().Get(i)
		if od.IsSynthetic() {
			continue
		}
		var names []string
		for j := range od.Fields().Len() {
			names = append(names, "`"+string(od.Fields().Get(j).Name())+"`")
		}
		desc = join(desc, fmt.Sprintf("At most one of %s is set (oneof `%s`); the others are absent.", strings.Join(names, ", "), od.Name()))
	}
	desc = join(desc, messageRules(md))
	o := obj("type", "object", "description", nonEmpty(desc))
	if props.keys != nil {
		o.set("properties", props)
	}
	if required != nil {
		o.set("required", required)
	}
	return o
}

func (s *schemas) enum(ed protoreflect.EnumDescriptor) *object {
	var names []any
	var lines []string
	for i := range ed.Values().Len() {
		v := ed.Values().Get(i)
		names = append(names, string(v.Name()))
		lines = append(lines, fmt.Sprintf("- `%s`: %s", v.Name(), oneLine(s.docs.of(v))))
	}
	desc := join(s.docs.of(ed), "Values (written by name; the number is accepted on input too):\n\n"+strings.Join(lines, "\n"))
	return obj("type", "string", "description", desc, "enum", names)
}

// field is the schema of one field: its type, its protovalidate rules and
// its comment.
func (s *schemas) field(fd protoreflect.FieldDescriptor) *object {
	rules := fieldRules(fd)
	var o *object
	switch {
	case fd.IsMap():
		o = obj("type", "object", "additionalProperties", s.value(fd.MapValue()))
		mapRules(o, fd, rules)
	case fd.IsList():
		o = obj("type", "array", "items", s.value(fd))
		listRules(o, fd, rules)
	default:
		o = s.value(fd)
		scalarRules(o, fd, rules.r)
	}
	desc := s.docs.of(fd)
	if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() {
		desc = join(desc, fmt.Sprintf("Member of oneof `%s`.", od.Name()))
	}
	if fd.HasOptionalKeyword() {
		desc = join(desc, "Optional: absent means unset, which differs from the zero value.")
	}
	desc = join(desc, rules.notes())
	if shape, ok := o.get("description").(string); ok {
		desc = join(desc, shape) // a well-known type's note on its JSON shape
	}
	o = rules.ignoreIfZero(o, fd)
	return prepend(o, "description", nonEmpty(desc))
}

// value is the schema of one value of fd's type: the element of a list,
// the value of a map, or the field itself.
func (s *schemas) value(fd protoreflect.FieldDescriptor) *object {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return s.ref(fd.Message())
	case protoreflect.EnumKind:
		return s.ref(fd.Enum())
	}
	return scalar(fd.Kind())
}

// scalar is the protojson shape of a scalar kind.
func scalar(k protoreflect.Kind) *object {
	switch k {
	case protoreflect.BoolKind:
		return obj("type", "boolean")
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return obj("type", "integer", "format", "int32")
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return obj("type", "integer", "format", "int64", "minimum", 0, "maximum", uint64(1<<32-1))
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		// protojson writes 64-bit integers as strings (JavaScript numbers
		// lose precision past 2^53) and reads either form.
		return obj("type", []any{"string", "integer"}, "format", "int64", "pattern", `^-?[0-9]+$`)
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return obj("type", []any{"string", "integer"}, "format", "int64", "pattern", `^[0-9]+$`)
	case protoreflect.FloatKind:
		return obj("type", "number", "format", "float")
	case protoreflect.DoubleKind:
		return obj("type", "number", "format", "double")
	case protoreflect.BytesKind:
		return obj("type", "string", "contentEncoding", "base64")
	}
	return obj("type", "string")
}

// wellKnown returns the protojson shape of a google.protobuf type that
// protojson does not write as a plain message, or nil.
func wellKnown(name protoreflect.FullName) *object {
	switch name {
	case "google.protobuf.Timestamp":
		return obj("type", "string", "format", "date-time", "description", "An RFC 3339 date-time in UTC, such as 2026-01-02T15:04:05.123Z.")
	case "google.protobuf.Duration":
		return obj("type", "string", "pattern", `^-?[0-9]+(\.[0-9]{1,9})?s$`, "description", "A duration in seconds with an \"s\" suffix, such as \"1.5s\".")
	case "google.protobuf.Struct":
		return obj("type", "object", "description", "Any JSON object.")
	case "google.protobuf.Value":
		return obj("description", "Any JSON value.")
	case "google.protobuf.ListValue":
		return obj("type", "array", "description", "Any JSON array.")
	case "google.protobuf.NullValue":
		return obj("type", "null")
	case "google.protobuf.Any":
		return obj("type", "object", "required", []any{"@type"}, "properties", obj("@type", obj("type", "string", "description", "type.googleapis.com/<full message name>")),
			"description", "A message of any type: its fields plus \"@type\" naming it.")
	case "google.protobuf.Empty":
		return obj("type", "object")
	case "google.protobuf.FieldMask":
		return obj("type", "string", "description", "Field paths in lowerCamelCase, separated by commas.")
	case "google.protobuf.BoolValue":
		return scalar(protoreflect.BoolKind)
	case "google.protobuf.StringValue":
		return scalar(protoreflect.StringKind)
	case "google.protobuf.BytesValue":
		return scalar(protoreflect.BytesKind)
	case "google.protobuf.Int32Value":
		return scalar(protoreflect.Int32Kind)
	case "google.protobuf.UInt32Value":
		return scalar(protoreflect.Uint32Kind)
	case "google.protobuf.Int64Value":
		return scalar(protoreflect.Int64Kind)
	case "google.protobuf.UInt64Value":
		return scalar(protoreflect.Uint64Kind)
	case "google.protobuf.FloatValue":
		return scalar(protoreflect.FloatKind)
	case "google.protobuf.DoubleValue":
		return scalar(protoreflect.DoubleKind)
	}
	return nil
}

// prepend puts key first in o, replacing any value it had (for
// readability: a field's description above its type).
func prepend(o *object, key string, v any) *object {
	if v == nil {
		return o
	}
	n := obj(key, v)
	for _, k := range o.keys {
		if k != key {
			n.set(k, o.vals[k])
		}
	}
	return n
}

// join joins non-empty paragraphs.
func join(parts ...string) string {
	var out []string
	for _, p := range parts {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, "\n\n")
}

// nonEmpty is s, or nil when s is empty (so obj leaves the key out).
func nonEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// oneLine folds a comment's lines into one.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
