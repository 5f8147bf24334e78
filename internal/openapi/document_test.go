package openapi_test

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
	healthv1 "github.com/berthhq/berth/internal/gen/grpc/health/v1"
	"github.com/berthhq/berth/internal/openapi"
)

// doc is the JSON document as generic values, for looking things up by path.
type doc map[string]any

func load(t *testing.T) doc {
	t.Helper()
	var d doc
	if err := json.Unmarshal(openapi.JSON(), &d); err != nil {
		t.Fatal(err)
	}
	return d
}

// at follows keys from the document's root; nil when a key is missing.
func (d doc) at(keys ...string) any {
	var v any = map[string]any(d)
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// berthFiles are the compiled descriptors of the packages the server
// registers (linked in by importing the generated packages): berth.v1 and
// its copy of grpc.health.v1.
func berthFiles(t *testing.T) []protoreflect.FileDescriptor {
	t.Helper()
	_ = berthv1.File_berth_v1_access_proto
	_ = healthv1.File_grpc_health_v1_health_proto
	var files []protoreflect.FileDescriptor
	for _, pkg := range []protoreflect.FullName{"berth.v1", "grpc.health.v1"} {
		n := len(files)
		protoregistry.GlobalFiles.RangeFilesByPackage(pkg, func(fd protoreflect.FileDescriptor) bool {
			files = append(files, fd)
			return true
		})
		if len(files) == n {
			t.Fatalf("no files of package %s are registered", pkg)
		}
	}
	return files
}

// TestEveryRPCIsDocumented walks every method of every berth.v1 service and
// checks its operations: POST with a JSON body (a Connect stream for
// server-streaming methods), GET as well exactly for side-effect-free unary
// methods, and security that matches the method's (berth.v1.access) rule.
func TestEveryRPCIsDocumented(t *testing.T) {
	t.Parallel()
	d := load(t)
	methods := 0
	for _, fd := range berthFiles(t) {
		for i := range fd.Services().Len() {
			sd := fd.Services().Get(i)
			for j := range sd.Methods().Len() {
				md := sd.Methods().Get(j)
				methods++
				path := fmt.Sprintf("/%s/%s", sd.FullName(), md.Name())
				post, _ := d.at("paths", path, "post").(map[string]any)
				if post == nil {
					t.Errorf("%s: no POST %s in the document", md.FullName(), path)
					continue
				}
				wantType := "application/json"
				if md.IsStreamingServer() {
					wantType = "application/connect+json"
				}
				if d.at("paths", path, "post", "requestBody", "content", wantType) == nil || d.at("paths", path, "post", "responses", "200", "content", wantType) == nil {
					t.Errorf("POST %s: no %s request and response", path, wantType)
				}
				opts := md.Options().(*descriptorpb.MethodOptions)
				wantGet := opts.GetIdempotencyLevel() == descriptorpb.MethodOptions_NO_SIDE_EFFECTS && !md.IsStreamingServer()
				if gotGet := d.at("paths", path, "get") != nil; gotGet != wantGet {
					t.Errorf("%s: GET documented %v, want %v", path, gotGet, wantGet)
				}
				rule := proto.GetExtension(opts, berthv1.E_Access).(*berthv1.AccessRule)
				security, _ := post["security"].([]any)
				if post["security"] == nil || rule.GetPublic() != (len(security) == 0) {
					t.Errorf("POST %s: security %v for access rule %v", path, post["security"], rule)
				}
				if desc, _ := post["description"].(string); !rule.GetPublic() && !strings.Contains(desc, "`"+rule.GetPermission()+"`") {
					t.Errorf("POST %s: the description does not name the permission %q", path, rule.GetPermission())
				}
			}
		}
	}
	if methods < 30 {
		t.Fatalf("walked %d methods; the descriptors are not all there", methods)
	}
}

// TestEveryMessageIsDescribed checks each berth.v1 message has a schema
// with one property per field under its proto name, each with the field's
// comment as its description, and each enum lists its value names.
func TestEveryMessageIsDescribed(t *testing.T) {
	t.Parallel()
	d := load(t)
	var walk func(protoreflect.MessageDescriptors)
	walk = func(msgs protoreflect.MessageDescriptors) {
		for i := range msgs.Len() {
			md := msgs.Get(i)
			if md.IsMapEntry() {
				continue
			}
			name := string(md.FullName())
			if d.at("components", "schemas", name) == nil {
				t.Errorf("no schema for %s", name)
				continue
			}
			for j := range md.Fields().Len() {
				f := md.Fields().Get(j)
				desc, _ := d.at("components", "schemas", name, "properties", string(f.Name()), "description").(string)
				if desc == "" {
					t.Errorf("%s.%s: no property, or no description", name, f.Name())
				}
			}
			walk(md.Messages())
		}
	}
	for _, fd := range berthFiles(t) {
		walk(fd.Messages())
		for i := range fd.Enums().Len() {
			ed := fd.Enums().Get(i)
			values, _ := d.at("components", "schemas", string(ed.FullName()), "enum").([]any)
			if len(values) != ed.Values().Len() {
				t.Errorf("%s: enum %v, want the %d value names", ed.FullName(), values, ed.Values().Len())
			}
		}
	}
}

// TestRulesCarriedOver spot-checks that protovalidate rules, protojson's
// shapes and comments reach the schemas, one of each kind.
func TestRulesCarriedOver(t *testing.T) {
	t.Parallel()
	d := load(t)
	props := func(msg string) []string { return []string{"components", "schemas", "berth.v1." + msg, "properties"} }
	for _, c := range []struct {
		path []string
		want any
	}{
		{append(props("RegisterRequest"), "email", "format"), "email"},
		{append(props("RegisterRequest"), "email", "maxLength"), 254.0},
		{append(props("RegisterRequest"), "password", "minLength"), 12.0},
		{append(props("GetWorkspaceRequest"), "id", "format"), "uuid"},
		{append(props("ListWorkspacesRequest"), "page_size", "minimum"), 0.0},
		{append(props("ListWorkspacesRequest"), "page_size", "maximum"), 100.0},
		{append(props("ListWorkspacesRequest"), "sort", "enum"), []any{"", "name", "-name", "created_at", "-created_at"}},
		{append(props("CreateWorkspaceRequest"), "tags", "maxItems"), 50.0},
		{append(props("CreateWorkspaceRequest"), "tags", "items", "maxLength"), 50.0},
		{append(props("CreateWorkspaceRequest"), "metadata", "maxProperties"), 50.0},
		{append(props("CreateWorkspaceRequest"), "metadata", "propertyNames", "maxLength"), 100.0},
		{append(props("CreateWorkspaceRequest"), "metadata", "additionalProperties", "maxLength"), 1000.0},
		// IGNORE_IF_ZERO_VALUE: "" passes, any other value must be a URI.
		{append(props("CreateWorkspaceRequest"), "git_url", "anyOf"), []any{map[string]any{"const": ""}, map[string]any{"format": "uri"}}},
		{append(props("AddMemberRequest"), "role", "enum"), []any{"WORKSPACE_ROLE_EDITOR", "WORKSPACE_ROLE_VIEWER"}},
		{append(props("ResourceLimits"), "cpus", "maximum"), 1024.0},
		{append(props("User"), "created_at", "format"), "date-time"},
		{append(props("WorkspaceStats"), "total_tasks", "type"), []any{"string", "integer"}},
		{append(props("Workspace"), "metadata", "additionalProperties", "type"), "string"},
		{append(props("User"), "role", "$ref"), "#/components/schemas/berth.v1.Role"},
	} {
		if got := d.at(c.path...); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s = %#v, want %#v", strings.Join(c.path, "."), got, c.want)
		}
	}
	if desc, _ := d.at(append(props("CreateApiKeyRequest"), "expires_at", "description")...).(string); !strings.Contains(desc, "Must be in the future.") {
		t.Errorf("CreateApiKeyRequest.expires_at: timestamp.gt_now is not in the description %q", desc)
	}
	if desc, _ := d.at("components", "schemas", "berth.v1.AddMemberRequest", "description").(string); !strings.Contains(desc, "Exactly one of `user_id`, `email` must be set.") {
		t.Errorf("AddMemberRequest: the message oneof rule is not in the description %q", desc)
	}
}
