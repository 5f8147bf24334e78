package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/pluginpb"

	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
)

// request builds a plugin request for files and everything they import,
// dependencies first, as protoc and buf send it.
func request(generate []protoreflect.FileDescriptor, extra ...*descriptorpb.FileDescriptorProto) *pluginpb.CodeGeneratorRequest {
	req := &pluginpb.CodeGeneratorRequest{}
	seen := map[string]bool{}
	var add func(fd protoreflect.FileDescriptor)
	add = func(fd protoreflect.FileDescriptor) {
		if seen[fd.Path()] {
			return
		}
		seen[fd.Path()] = true
		for i := range fd.Imports().Len() {
			add(fd.Imports().Get(i).FileDescriptor)
		}
		req.ProtoFile = append(req.ProtoFile, protodesc.ToFileDescriptorProto(fd))
	}
	for _, fd := range generate {
		add(fd)
		req.FileToGenerate = append(req.FileToGenerate, fd.Path())
	}
	for _, f := range extra {
		req.ProtoFile = append(req.ProtoFile, f)
		req.FileToGenerate = append(req.FileToGenerate, f.GetName())
	}
	return req
}

// answer runs the plugin on req as buf would, through stdin and stdout.
func answer(t *testing.T, req *pluginpb.CodeGeneratorRequest) *pluginpb.CodeGeneratorResponse {
	t.Helper()
	in, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := run(bytes.NewReader(in), &out); err != nil {
		t.Fatal(err)
	}
	res := new(pluginpb.CodeGeneratorResponse)
	if err := proto.Unmarshal(out.Bytes(), res); err != nil {
		t.Fatal(err)
	}
	return res
}

// TestReproducible: the same input gives the same bytes (the drift check in
// `just lint` depends on it), and the JSON and YAML are both written.
func TestReproducible(t *testing.T) {
	t.Parallel()
	req := request([]protoreflect.FileDescriptor{berthv1.File_berth_v1_workspace_proto, berthv1.File_berth_v1_auth_proto})
	first, second := answer(t, req), answer(t, req)
	if first.GetError() != "" {
		t.Fatal(first.GetError())
	}
	if len(first.GetFile()) != 2 || !proto.Equal(first, second) {
		t.Fatalf("two runs on one request differ, or do not write openapi.json and openapi.yaml: %v", first.GetFile())
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(first.GetFile()[0].GetContent()), &doc); err != nil {
		t.Fatalf("%s: %v", first.GetFile()[0].GetName(), err)
	}
	if doc["openapi"] != "3.1.0" {
		t.Fatalf("openapi = %v", doc["openapi"])
	}
}

// TestRefusesAnRPCWithoutAccessRule: the server refuses to start with such
// an RPC, so the generator refuses to document it.
func TestRefusesAnRPCWithoutAccessRule(t *testing.T) {
	t.Parallel()
	bare := &descriptorpb.FileDescriptorProto{
		Name:        proto.String("bare/v1/bare.proto"),
		Package:     proto.String("bare.v1"),
		Syntax:      proto.String("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{{Name: proto.String("Empty")}},
		Service: []*descriptorpb.ServiceDescriptorProto{{
			Name:   proto.String("BareService"),
			Method: []*descriptorpb.MethodDescriptorProto{{Name: proto.String("Call"), InputType: proto.String(".bare.v1.Empty"), OutputType: proto.String(".bare.v1.Empty")}},
		}},
	}
	res := answer(t, request(nil, bare))
	if !strings.Contains(res.GetError(), "bare.v1.BareService.Call has no (berth.v1.access) rule") || len(res.GetFile()) != 0 {
		t.Fatalf("error %q, %d files; want the missing rule named and no document", res.GetError(), len(res.GetFile()))
	}
}
