// Command protoc-gen-berth-openapi is a protoc/buf plugin that writes
// berth's OpenAPI 3.1 document (openapi.json and openapi.yaml) from the
// proto files of package berth.v1: every RPC as its Connect endpoint, the
// messages as JSON Schemas in protojson's shape with the protovalidate rules,
// the proto comments as descriptions, and the (berth.v1.access) rules as
// security requirements.
//
// It reads a CodeGeneratorRequest rather than the compiled Go descriptors
// because only the request carries the comments (SourceCodeInfo). The
// routes that do not come from the proto (SSE, WebSocket, OIDC, health,
// reflection, the document itself) and the Connect protocol's shared parts
// (error body, headers, security schemes) are written by hand in
// routes.yaml and protocol.yaml, embedded here and merged in.
//
// `just generate` runs it through buf.gen.yaml; `just check-generated` fails
// when the committed document differs from what it writes.
package main

import (
	"crypto/sha256"
	_ "embed"
	"fmt"
	"io"
	"os"

	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/pluginpb"
)

// The hand-written parts: top-level keys of the document, none in both.
var (
	//go:embed routes.yaml
	routesYAML []byte
	//go:embed protocol.yaml
	protocolYAML []byte
)

func main() {
	if err := run(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "protoc-gen-berth-openapi:", err)
		os.Exit(1)
	}
}

// run answers one plugin request.
func run(in io.Reader, out io.Writer) error {
	raw, err := io.ReadAll(in)
	if err != nil {
		return err
	}
	req := new(pluginpb.CodeGeneratorRequest)
	if err := proto.Unmarshal(raw, req); err != nil {
		return fmt.Errorf("reading the request: %w", err)
	}
	resp := &pluginpb.CodeGeneratorResponse{
		SupportedFeatures: proto.Uint64(uint64(pluginpb.CodeGeneratorResponse_FEATURE_PROTO3_OPTIONAL)),
	}
	js, yml, err := generate(req)
	if err != nil {
		resp.Error = proto.String(err.Error())
	} else {
		resp.File = []*pluginpb.CodeGeneratorResponse_File{
			{Name: proto.String("openapi.json"), Content: proto.String(string(js))},
			{Name: proto.String("openapi.yaml"), Content: proto.String(string(yml))},
		}
	}
	b, err := proto.Marshal(resp)
	if err != nil {
		return err
	}
	_, err = out.Write(b)
	return err
}

// generator holds what building one document needs.
type generator struct {
	docs    comments
	schemas *schemas
}

// generate builds the document from the files to generate (and the files
// they import) and renders it as JSON and YAML.
func generate(req *pluginpb.CodeGeneratorRequest) (js, yml []byte, err error) {
	files, err := protodesc.NewFiles(&descriptorpb.FileDescriptorSet{File: req.GetProtoFile()})
	if err != nil {
		return nil, nil, fmt.Errorf("descriptors: %w", err)
	}
	frag := obj()
	for _, f := range []struct {
		name string
		src  []byte
	}{{"routes.yaml", routesYAML}, {"protocol.yaml", protocolYAML}} {
		name, src := f.name, f.src
		var root yaml.Node
		if err := yaml.Unmarshal(src, &root); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", name, err)
		}
		v, err := fromYAML(&root)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", name, err)
		}
		for _, k := range v.(*object).keys {
			if frag.get(k) != nil {
				return nil, nil, fmt.Errorf("%s: %s is in both hand-written files", name, k)
			}
			frag.set(k, v.(*object).get(k))
		}
	}

	g := &generator{schemas: newSchemas(comments{})}
	paths := obj()
	var tags []any
	for _, name := range req.GetFileToGenerate() {
		fd, err := files.FindFileByPath(name)
		if err != nil {
			return nil, nil, err
		}
		g.declarations(fd.Messages(), fd.Enums())
		for i := range fd.Services().Len() {
			tag, err := g.service(fd.Services().Get(i), paths)
			if err != nil {
				return nil, nil, err
			}
			tags = append(tags, tag)
		}
	}
	for _, k := range frag.get("paths").(*object).keys {
		paths.set(k, frag.get("paths").(*object).get(k))
	}
	tags = append(tags, frag.get("tags").([]any)...)
	components := obj()
	fc := frag.get("components").(*object)
	for _, k := range fc.keys {
		if k != "schemas" {
			components.set(k, fc.get(k))
		}
	}
	for _, k := range fc.get("schemas").(*object).keys {
		g.schemas.defs[k] = fc.get("schemas").(*object).get(k).(*object)
	}
	components.set("schemas", g.schemas.sorted())

	// The version names the API's content: it changes when the document
	// does and only then, so the output stays byte-reproducible.
	body, err := marshalJSON(obj("paths", paths, "components", components))
	if err != nil {
		return nil, nil, err
	}
	info := frag.get("info").(*object)
	info.set("version", fmt.Sprintf("1.0.0+%x", sha256.Sum256(body))[:len("1.0.0+")+12])
	doc := obj("openapi", "3.1.0", "info", info, "servers", frag.get("servers"), "tags", tags,
		"paths", paths, "components", components)
	if js, err = indentJSON(doc); err != nil {
		return nil, nil, err
	}
	if yml, err = toYAML(js); err != nil {
		return nil, nil, err
	}
	return js, yml, nil
}

// declarations adds every message and enum of a file to the components,
// used by an RPC or not: SSE and WebSocket frames carry some of them.
func (g *generator) declarations(msgs protoreflect.MessageDescriptors, enums protoreflect.EnumDescriptors) {
	for i := range enums.Len() {
		g.schemas.ref(enums.Get(i))
	}
	for i := range msgs.Len() {
		m := msgs.Get(i)
		if m.IsMapEntry() {
			continue
		}
		g.schemas.ref(m)
		g.declarations(m.Messages(), m.Enums())
	}
}
