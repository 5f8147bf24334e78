package server_test

import (
	"context"
	"testing"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/berthhq/berth/internal/access"
	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
	"github.com/berthhq/berth/internal/store"
)

// berthMethods enumerates every RPC of every berth service from the
// compiled descriptors, so a new RPC joins the matrix by existing.
func berthMethods(t *testing.T) []protoreflect.MethodDescriptor {
	t.Helper()
	var methods []protoreflect.MethodDescriptor
	protoregistry.GlobalFiles.RangeFilesByPackage("berth.v1", func(fd protoreflect.FileDescriptor) bool {
		for i := range fd.Services().Len() {
			svc := fd.Services().Get(i)
			for j := range svc.Methods().Len() {
				methods = append(methods, svc.Methods().Get(j))
			}
		}
		return true
	})
	if len(methods) < 30 {
		t.Fatalf("found only %d methods", len(methods))
	}
	return methods
}

// callDynamic calls a method with an empty request built from its
// descriptor and returns the resulting error (nil on success).
func callDynamic(ctx context.Context, client *connect.Client, md protoreflect.MethodDescriptor) error {
	spec := connect.Spec{
		Schema:    md,
		Procedure: "/" + string(md.Parent().FullName()) + "/" + string(md.Name()),
		StreamType: func() connect.StreamType {
			if md.IsStreamingServer() {
				return connect.StreamTypeServer
			}
			return connect.StreamTypeUnary
		}(),
	}
	if opts, ok := md.Options().(*descriptorpb.MethodOptions); ok && opts.GetIdempotencyLevel() == descriptorpb.MethodOptions_NO_SIDE_EFFECTS {
		spec.IdempotencyLevel = connect.IdempotencyNoSideEffects
	}
	req := dynamicpb.NewMessage(md.Input())
	res := dynamicpb.NewMessage(md.Output())
	if spec.StreamType == connect.StreamTypeUnary {
		return client.CallUnary(ctx, spec, req, res)
	}
	stream, err := client.CallServerStream(ctx, spec, req)
	if err != nil {
		return err
	}
	defer stream.Close()
	return stream.Receive(res)
}

// TestAccessMatrix calls every RPC unauthenticated and as each global role
// (and as an API key of each role, created without manage_keys), and
// checks the outcome against the policy table and access.KeyMay:
// unauthenticated callers get Unauthenticated unless the RPC is public; a
// role the table does not grant, or a key the permission is narrowed for,
// gets PermissionDenied; one it grants gets past authorisation (to
// validation, NotFound, a result, or Unimplemented — anything but
// Unauthenticated or PermissionDenied).
func TestAccessMatrix(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	c := srv.clients(protocols[0])
	ctx := t.Context()
	adminTok := register(t, c, "admin@example.com").GetTokens().GetAccessToken()
	register(t, c, "member@example.com")
	viewer := register(t, c, "viewer@example.com")
	if _, err := c.Admin.SetUserRole(as(ctx, adminTok), &berthv1.SetUserRoleRequest{
		UserId: viewer.GetUser().GetId(), Role: berthv1.Role_ROLE_VIEWER,
	}); err != nil {
		t.Fatal(err)
	}
	login := func(email string) string {
		res, err := c.Auth.Login(ctx, &berthv1.LoginRequest{Email: email, Password: "correct horse battery"})
		if err != nil {
			t.Fatalf("login %s: %v", email, err)
		}
		return res.GetTokens().GetAccessToken()
	}
	apiKey := func(token string, role berthv1.Role) string {
		res, err := c.Auth.CreateApiKey(as(ctx, token), &berthv1.CreateApiKeyRequest{Name: "matrix", Role: role})
		if err != nil {
			t.Fatal(err)
		}
		return res.GetKey()
	}
	emails := map[store.Role]string{store.RoleAdmin: "admin@example.com", store.RoleMember: "member@example.com", store.RoleViewer: "viewer@example.com"}
	client := connect.NewClient(connecthttp.NewTransport(httpClient(false), srv.URL))

	for _, md := range berthMethods(t) {
		rule, ok := access.RuleOf(md)
		if !ok {
			t.Fatalf("%s has no rule", md.FullName())
		}
		err := callDynamic(ctx, client, md)
		if code := connect.CodeOf(err); rule.Public && code == connect.CodeUnauthenticated ||
			!rule.Public && code != connect.CodeUnauthenticated {
			t.Errorf("%s unauthenticated: %v (public=%v)", md.FullName(), err, rule.Public)
		}
		if rule.Public {
			continue
		}
		for _, role := range access.Roles() {
			// A fresh session per call: Logout ends the session it runs in.
			token := login(emails[role])
			for _, cred := range []struct{ kind, value string }{
				{"token", token},
				{"api key", apiKey(token, access.RoleToProto(role))},
			} {
				err := callDynamic(as(ctx, cred.value), client, md)
				code := connect.CodeOf(err)
				allowed := access.Allows(role, rule.Permission)
				if cred.kind == "api key" {
					// These keys were created without manage_keys.
					allowed = allowed && access.KeyMay(access.Principal{Role: role, APIKeyID: "matrix"}, rule.Permission)
				}
				switch {
				case code == connect.CodeUnauthenticated:
					t.Errorf("%s as %s %s: %v", md.FullName(), role, cred.kind, err)
				case allowed && code == connect.CodePermissionDenied:
					t.Errorf("%s as %s %s: denied, but the policy grants %s: %v", md.FullName(), role, cred.kind, rule.Permission, err)
				case !allowed && code != connect.CodePermissionDenied:
					t.Errorf("%s as %s %s: want PermissionDenied for %s, got %v", md.FullName(), role, cred.kind, rule.Permission, err)
				}
			}
		}
	}
}
