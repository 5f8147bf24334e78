package main

import (
	"fmt"
	"slices"
	"strings"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// fieldRule wraps the protovalidate rules of one field (nil when it has
// none). Rules that JSON Schema can state become keywords; the others
// (CEL expressions, "in the future", byte lengths) become sentences in the
// description, so nothing protovalidate checks goes unmentioned.
type fieldRule struct{ r *validate.FieldRules }

// fieldRules reads the (buf.validate.field) option. The request was
// decoded with the validate package linked in, so the extension arrives
// parsed, as the Go type.
func fieldRules(fd protoreflect.FieldDescriptor) fieldRule {
	r, _ := proto.GetExtension(fd.Options(), validate.E_Field).(*validate.FieldRules)
	return fieldRule{r}
}

// isRequired reports the protovalidate required rule: the field must be set
// (and, for scalars, not zero).
func isRequired(fd protoreflect.FieldDescriptor) bool { return fieldRules(fd).r.GetRequired() }

// notes are the field's rules that have no JSON Schema keyword.
func (f fieldRule) notes() string {
	r := f.r
	if r == nil {
		return ""
	}
	var out []string
	if r.GetRequired() {
		out = append(out, "Required: must be set (and not the zero value).")
	}
	if t := r.GetTimestamp(); t != nil {
		if t.GetGtNow() {
			out = append(out, "Must be in the future.")
		}
		if t.GetLtNow() {
			out = append(out, "Must be in the past.")
		}
		if t.HasWithin() {
			out = append(out, fmt.Sprintf("Must be within %s of now.", t.GetWithin().AsDuration()))
		}
	}
	if s := r.GetString(); s != nil {
		for _, c := range []struct {
			has  bool
			text string
		}{
			{s.HasPrefix(), fmt.Sprintf("Must start with %q.", s.GetPrefix())},
			{s.HasSuffix(), fmt.Sprintf("Must end with %q.", s.GetSuffix())},
			{s.HasContains(), fmt.Sprintf("Must contain %q.", s.GetContains())},
			{s.HasNotContains(), fmt.Sprintf("Must not contain %q.", s.GetNotContains())},
			{s.HasMaxBytes(), fmt.Sprintf("At most %d bytes (UTF-8).", s.GetMaxBytes())},
			{s.HasMinBytes(), fmt.Sprintf("At least %d bytes (UTF-8).", s.GetMinBytes())},
		} {
			if c.has {
				out = append(out, c.text)
			}
		}
	}
	if e := r.GetEnum(); e != nil && e.GetDefinedOnly() {
		out = append(out, "Must be one of the enum's defined values.")
	}
	for _, c := range r.GetCel() {
		out = append(out, celNote(c))
	}
	if r.GetIgnore() == validate.Ignore_IGNORE_IF_ZERO_VALUE {
		out = append(out, "The rules apply only when the field is set to a non-zero value.")
	}
	return strings.Join(out, " ")
}

// celNote describes a CEL rule by its message, and its expression.
func celNote(c *validate.Rule) string {
	if c.GetMessage() != "" {
		return fmt.Sprintf("Checked: %s (`%s`).", c.GetMessage(), c.GetExpression())
	}
	return fmt.Sprintf("Checked: `%s`.", c.GetExpression())
}

// messageRules describes the (buf.validate.message) rules and the
// (buf.validate.oneof) required rules of md.
func messageRules(md protoreflect.MessageDescriptor) string {
	var out []string
	if m, _ := proto.GetExtension(md.Options(), validate.E_Message).(*validate.MessageRules); m != nil {
		for _, o := range m.GetOneof() {
			names := "`" + strings.Join(o.GetFields(), "`, `") + "`"
			if o.GetRequired() {
				out = append(out, "Exactly one of "+names+" must be set.")
			} else {
				out = append(out, "At most one of "+names+" may be set.")
			}
		}
		for _, c := range m.GetCel() {
			out = append(out, celNote(c))
		}
	}
	for i := range md.Oneofs().Len() {
		od := md.Oneofs().Get(i)
		if o, _ := proto.GetExtension(od.Options(), validate.E_Oneof).(*validate.OneofRules); o.GetRequired() {
			out = append(out, fmt.Sprintf("One member of oneof `%s` must be set.", od.Name()))
		}
	}
	return strings.Join(out, " ")
}

// scalarRules adds the keywords of r to o, the schema of one value of fd's
// kind (a field, a list item or a map value).
func scalarRules(o *object, fd protoreflect.FieldDescriptor, r *validate.FieldRules) {
	if r == nil {
		return
	}
	if s := r.GetString(); s != nil {
		stringRules(o, s)
	}
	// required on a string without presence means "not the zero value":
	// not empty.
	if r.GetRequired() && fd.Kind() == protoreflect.StringKind && !fd.HasPresence() && !fd.IsList() && o.get("minLength") == nil {
		o.set("minLength", uint64(1))
	}
	if e := r.GetEnum(); e != nil && fd.Kind() == protoreflect.EnumKind {
		enumRules(o, fd.Enum(), e)
	}
	numericRules(o, r)
}

func stringRules(o *object, s *validate.StringRules) {
	if s.HasConst() {
		o.set("const", s.GetConst())
	}
	if s.HasLen() {
		o.set("minLength", s.GetLen()).set("maxLength", s.GetLen())
	}
	if s.HasMinLen() {
		o.set("minLength", s.GetMinLen())
	}
	if s.HasMaxLen() {
		o.set("maxLength", s.GetMaxLen())
	}
	if s.HasPattern() {
		o.set("pattern", s.GetPattern())
	}
	if in := s.GetIn(); len(in) > 0 {
		o.set("enum", anys(in))
	}
	if nin := s.GetNotIn(); len(nin) > 0 {
		o.set("not", obj("enum", anys(nin)))
	}
	switch {
	case s.GetEmail():
		o.set("format", "email")
	case s.GetUuid():
		o.set("format", "uuid")
	case s.GetUri():
		o.set("format", "uri")
	case s.GetUriRef():
		o.set("format", "uri-reference")
	case s.GetHostname():
		o.set("format", "hostname")
	case s.GetIpv4():
		o.set("format", "ipv4")
	case s.GetIpv6():
		o.set("format", "ipv6")
	case s.GetTuuid():
		o.set("pattern", "^[0-9a-fA-F]{32}$")
	case s.GetUlid():
		o.set("pattern", "^[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$")
	}
}

// enumRules narrows an enum to the names its in/not_in/const rules allow.
func enumRules(o *object, ed protoreflect.EnumDescriptor, e *validate.EnumRules) {
	allowed := func(n int32) bool {
		if e.HasConst() {
			return n == e.GetConst()
		}
		if in := e.GetIn(); len(in) > 0 {
			return slices.Contains(in, n)
		}
		return !slices.Contains(e.GetNotIn(), n)
	}
	if !e.HasConst() && len(e.GetIn()) == 0 && len(e.GetNotIn()) == 0 {
		return
	}
	var names []any
	for i := range ed.Values().Len() {
		if v := ed.Values().Get(i); allowed(int32(v.Number())) {
			names = append(names, string(v.Name()))
		}
	}
	o.set("enum", names)
}

// numericRules reads the rules of whichever numeric type is set (int32 …
// double share their shape: const, lt, lte, gt, gte, in, not_in), through
// reflection rather than twelve copies of the same code.
func numericRules(o *object, r *validate.FieldRules) {
	m := r.ProtoReflect()
	od := m.Descriptor().Oneofs().ByName("type")
	fd := m.WhichOneof(od)
	if fd == nil || fd.Message() == nil {
		return
	}
	n := m.Get(fd).Message()
	if n.Descriptor().Fields().ByName("gte") == nil {
		return // not a numeric rule set
	}
	keyword := map[protoreflect.Name]string{"const": "const", "gte": "minimum", "gt": "exclusiveMinimum", "lte": "maximum", "lt": "exclusiveMaximum"}
	// Declaration order, not Range's (which is unspecified): the output
	// must be byte-reproducible.
	fields := n.Descriptor().Fields()
	for i := range fields.Len() {
		f := fields.Get(i)
		if !n.Has(f) {
			continue
		}
		v := n.Get(f)
		switch {
		case keyword[f.Name()] != "":
			o.set(keyword[f.Name()], v.Interface())
		case f.Name() == "in":
			o.set("enum", listValues(v.List()))
		case f.Name() == "not_in":
			o.set("not", obj("enum", listValues(v.List())))
		}
	}
}

// listRules adds repeated rules to an array schema.
func listRules(o *object, fd protoreflect.FieldDescriptor, f fieldRule) {
	rr := f.r.GetRepeated()
	if rr == nil {
		return
	}
	if rr.HasMinItems() {
		o.set("minItems", rr.GetMinItems())
	}
	if rr.HasMaxItems() {
		o.set("maxItems", rr.GetMaxItems())
	}
	if rr.GetUnique() {
		o.set("uniqueItems", true)
	}
	scalarRules(o.get("items").(*object), fd, rr.GetItems())
}

// mapRules adds map rules to an object schema: pair counts, and the
// key and value rules as propertyNames and additionalProperties.
func mapRules(o *object, fd protoreflect.FieldDescriptor, f fieldRule) {
	mr := f.r.GetMap()
	if mr == nil {
		return
	}
	if mr.HasMinPairs() {
		o.set("minProperties", mr.GetMinPairs())
	}
	if mr.HasMaxPairs() {
		o.set("maxProperties", mr.GetMaxPairs())
	}
	if k := mr.GetKeys(); k != nil && fd.MapKey().Kind() == protoreflect.StringKind {
		keys := obj("type", "string")
		scalarRules(keys, fd.MapKey(), k)
		o.set("propertyNames", keys)
	}
	scalarRules(o.get("additionalProperties").(*object), fd.MapValue(), mr.GetValues())
}

// constraintKeys are the keywords that restrict a value (as opposed to
// describing its type).
var constraintKeys = []string{"const", "enum", "not", "minLength", "maxLength", "pattern", "format", "minimum", "maximum",
	"exclusiveMinimum", "exclusiveMaximum", "minItems", "maxItems", "uniqueItems", "minProperties", "maxProperties", "propertyNames"}

// ignoreIfZero rewrites o for IGNORE_IF_ZERO_VALUE: the zero value is
// allowed, and the rules apply to any other value. The type stays outside,
// the rules go into the second branch of an anyOf.
func (f fieldRule) ignoreIfZero(o *object, fd protoreflect.FieldDescriptor) *object {
	if f.r.GetIgnore() != validate.Ignore_IGNORE_IF_ZERO_VALUE {
		return o
	}
	var zero *object
	switch {
	case fd.IsMap():
		zero = obj("maxProperties", 0)
	case fd.IsList():
		zero = obj("maxItems", 0)
	case fd.Kind() == protoreflect.StringKind:
		zero = obj("const", "")
	case fd.Kind() == protoreflect.BoolKind:
		zero = obj("const", false)
	case fd.Kind() == protoreflect.EnumKind:
		zero = obj("const", string(fd.Enum().Values().Get(0).Name()))
	case fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.BytesKind:
		return o // a message's zero is absent; bytes carry no keywords here
	default:
		zero = obj("enum", []any{0, "0"})
	}
	base, rules := obj(), obj()
	for _, k := range o.keys {
		// A number's format and a 64-bit integer's string pattern describe
		// its type, not a rule: they hold for the zero value too.
		typeInfo := fd.Kind() != protoreflect.StringKind && (k == "format" || k == "pattern")
		if slices.Contains(constraintKeys, k) && !typeInfo {
			rules.set(k, o.vals[k])
		} else {
			base.set(k, o.vals[k])
		}
	}
	if rules.keys == nil {
		return o
	}
	return base.set("anyOf", []any{zero, rules})
}

func listValues(l protoreflect.List) []any {
	out := make([]any, l.Len())
	for i := range l.Len() {
		out[i] = l.Get(i).Interface()
	}
	return out
}

func anys[T any](s []T) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}
