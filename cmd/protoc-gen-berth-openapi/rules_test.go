package main

import (
	"encoding/json"
	"reflect"
	"testing"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
)

// field declares one field of the test message with its rules.
func field(name string, number int32, typ descriptorpb.FieldDescriptorProto_Type, label descriptorpb.FieldDescriptorProto_Label, typeName string, rules *validate.FieldRules) *descriptorpb.FieldDescriptorProto {
	opts := &descriptorpb.FieldOptions{}
	proto.SetExtension(opts, validate.E_Field, rules)
	f := &descriptorpb.FieldDescriptorProto{Name: proto.String(name), Number: proto.Int32(number), Type: typ.Enum(), Label: label.Enum(), JsonName: proto.String(name), Options: opts}
	if typeName != "" {
		f.TypeName = proto.String(typeName)
	}
	return f
}

// TestRulesBecomeKeywords runs the plugin on a message whose fields carry
// one kind of protovalidate rule each, and compares the schemas with the
// keywords each rule should become.
func TestRulesBecomeKeywords(t *testing.T) {
	t.Parallel()
	const (
		optional = descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL
		repeated = descriptorpb.FieldDescriptorProto_LABEL_REPEATED
		str      = descriptorpb.FieldDescriptorProto_TYPE_STRING
	)
	entry := &descriptorpb.DescriptorProto{
		Name:    proto.String("LabelsEntry"),
		Options: &descriptorpb.MessageOptions{MapEntry: proto.Bool(true)},
		Field: []*descriptorpb.FieldDescriptorProto{
			{Name: proto.String("key"), Number: proto.Int32(1), Type: str.Enum(), Label: optional.Enum(), JsonName: proto.String("key")},
			{Name: proto.String("value"), Number: proto.Int32(2), Type: str.Enum(), Label: optional.Enum(), JsonName: proto.String("value")},
		},
	}
	file := &descriptorpb.FileDescriptorProto{
		Name:       proto.String("rules/v1/rules.proto"),
		Package:    proto.String("rules.v1"),
		Syntax:     proto.String("proto3"),
		Dependency: []string{"buf/validate/validate.proto"},
		EnumType: []*descriptorpb.EnumDescriptorProto{{Name: proto.String("Color"), Value: []*descriptorpb.EnumValueDescriptorProto{
			{Name: proto.String("COLOR_UNSPECIFIED"), Number: proto.Int32(0)},
			{Name: proto.String("COLOR_RED"), Number: proto.Int32(1)},
			{Name: proto.String("COLOR_BLUE"), Number: proto.Int32(2)},
		}}},
		MessageType: []*descriptorpb.DescriptorProto{{
			Name:       proto.String("Rules"),
			NestedType: []*descriptorpb.DescriptorProto{entry},
			Field: []*descriptorpb.FieldDescriptorProto{
				field("name", 1, str, optional, "", validate.FieldRules_builder{Required: proto.Bool(true),
					String: validate.StringRules_builder{MinLen: proto.Uint64(2), MaxLen: proto.Uint64(5), Pattern: proto.String("^[a-z]+$")}.Build()}.Build()),
				field("count", 2, descriptorpb.FieldDescriptorProto_TYPE_INT64, optional, "", validate.FieldRules_builder{
					Int64: validate.Int64Rules_builder{Gt: proto.Int64(0), Lte: proto.Int64(10)}.Build()}.Build()),
				field("color", 3, descriptorpb.FieldDescriptorProto_TYPE_ENUM, optional, ".rules.v1.Color", validate.FieldRules_builder{
					Enum: validate.EnumRules_builder{NotIn: []int32{0}}.Build()}.Build()),
				field("ids", 4, str, repeated, "", validate.FieldRules_builder{Repeated: validate.RepeatedRules_builder{
					MinItems: proto.Uint64(1), Unique: proto.Bool(true),
					Items: validate.FieldRules_builder{String: validate.StringRules_builder{Uuid: proto.Bool(true)}.Build()}.Build()}.Build()}.Build()),
				field("labels", 5, descriptorpb.FieldDescriptorProto_TYPE_MESSAGE, repeated, ".rules.v1.Rules.LabelsEntry", validate.FieldRules_builder{Map: validate.MapRules_builder{
					MinPairs: proto.Uint64(1),
					Keys:     validate.FieldRules_builder{String: validate.StringRules_builder{MaxLen: proto.Uint64(3)}.Build()}.Build()}.Build()}.Build()),
				field("level", 6, descriptorpb.FieldDescriptorProto_TYPE_INT32, optional, "", validate.FieldRules_builder{
					Ignore: validate.Ignore_IGNORE_IF_ZERO_VALUE.Enum(), Int32: validate.Int32Rules_builder{Gte: proto.Int32(5)}.Build()}.Build()),
				field("ratio", 7, descriptorpb.FieldDescriptorProto_TYPE_DOUBLE, optional, "", validate.FieldRules_builder{
					Double: validate.DoubleRules_builder{Gt: proto.Float64(0), Lt: proto.Float64(1)}.Build()}.Build()),
				field("size", 8, str, optional, "", validate.FieldRules_builder{
					String: validate.StringRules_builder{In: []string{"s", "m"}, Prefix: proto.String("x")}.Build()}.Build()),
			},
		}},
	}
	req := request([]protoreflect.FileDescriptor{validate.File_buf_validate_validate_proto}, file)
	req.FileToGenerate = []string{file.GetName()}
	res := answer(t, req)
	if res.GetError() != "" {
		t.Fatal(res.GetError())
	}
	var doc struct {
		Components struct {
			Schemas map[string]struct {
				Required   []string                  `json:"required"`
				Properties map[string]map[string]any `json:"properties"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal([]byte(res.GetFile()[0].GetContent()), &doc); err != nil {
		t.Fatal(err)
	}
	rules := doc.Components.Schemas["rules.v1.Rules"]
	if !reflect.DeepEqual(rules.Required, []string{"name"}) {
		t.Errorf("required = %v, want [name]", rules.Required)
	}
	for name, want := range map[string]map[string]any{
		"name":   {"type": "string", "minLength": 2.0, "maxLength": 5.0, "pattern": "^[a-z]+$"},
		"count":  {"type": []any{"string", "integer"}, "format": "int64", "pattern": "^-?[0-9]+$", "exclusiveMinimum": 0.0, "maximum": 10.0},
		"color":  {"$ref": "#/components/schemas/rules.v1.Color", "enum": []any{"COLOR_RED", "COLOR_BLUE"}},
		"ids":    {"type": "array", "items": map[string]any{"type": "string", "format": "uuid"}, "minItems": 1.0, "uniqueItems": true},
		"labels": {"type": "object", "additionalProperties": map[string]any{"type": "string"}, "minProperties": 1.0, "propertyNames": map[string]any{"type": "string", "maxLength": 3.0}},
		"level":  {"type": "integer", "format": "int32", "anyOf": []any{map[string]any{"enum": []any{0.0, "0"}}, map[string]any{"minimum": 5.0}}},
		"ratio":  {"type": "number", "format": "double", "exclusiveMinimum": 0.0, "exclusiveMaximum": 1.0},
		"size":   {"type": "string", "enum": []any{"s", "m"}},
	} {
		got := rules.Properties[name]
		desc, _ := got["description"].(string)
		delete(got, "description")
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n got %v\nwant %v", name, got, want)
		}
		if name == "size" && desc != `Must start with "x".` {
			t.Errorf("size: description %q, want the prefix rule as a sentence", desc)
		}
	}
}
