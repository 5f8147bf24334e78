package server_test

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/berthhq/berth/internal/access"
	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
)

// keyRPCBodies are valid requests for every RPC that manages API keys, so
// that a refusal is about the caller and not about the request. A new key
// RPC fails TestKeysCannotManageKeys until it is given one here.
var keyRPCBodies = map[string]string{
	"CreateApiKey": `{"name":"minted"}`,
	"ListApiKeys":  `{}`,
	"RevokeApiKey": `{"id":"%s"}`,
}

// keyRPCs walks the AuthService descriptor for the RPCs that need the
// apikey.manage permission.
func keyRPCs(t *testing.T) []string {
	t.Helper()
	d, err := protoregistry.GlobalFiles.FindDescriptorByName("berth.v1.AuthService")
	if err != nil {
		t.Fatal(err)
	}
	svc := d.(protoreflect.ServiceDescriptor)
	var names []string
	for i := range svc.Methods().Len() {
		m := svc.Methods().Get(i)
		if rule, ok := access.RuleOf(m); ok && rule.Permission == access.PermAPIKeyManage {
			names = append(names, string(m.Name()))
		}
	}
	if len(names) < 3 {
		t.Fatalf("found only the key RPCs %v", names)
	}
	return names
}

// TestKeysCannotManageKeys: a viewer key — even one that asks for
// manage_keys — and a key created without manage_keys get PERMISSION_DENIED
// on every key RPC, and leave the account's keys as they were.
func TestKeysCannotManageKeys(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	c := srv.clients(protocols[0])
	session := as(t.Context(), register(t, c, "owner@example.com").GetTokens().GetAccessToken())

	_, err := c.Auth.CreateApiKey(session, &berthv1.CreateApiKeyRequest{Name: "viewer manager", Role: berthv1.Role_ROLE_VIEWER, ManageKeys: true})
	wantCode(t, err, connect.CodeInvalidArgument, "VALIDATION_ERROR")
	viewer, err := c.Auth.CreateApiKey(session, &berthv1.CreateApiKeyRequest{Name: "viewer", Role: berthv1.Role_ROLE_VIEWER})
	if err != nil {
		t.Fatal(err)
	}
	plain, err := c.Auth.CreateApiKey(session, &berthv1.CreateApiKeyRequest{Name: "plain"})
	if err != nil {
		t.Fatal(err)
	}
	if plain.GetApiKey().GetManageKeys() || plain.GetApiKey().GetParentId() != "" {
		t.Fatalf("a plain key: %v", plain.GetApiKey())
	}
	before, err := c.Auth.ListApiKeys(session, &berthv1.ListApiKeysRequest{})
	if err != nil {
		t.Fatal(err)
	}

	for who, key := range map[string]string{"viewer key": viewer.GetKey(), "key without manage_keys": plain.GetKey()} {
		for _, rpc := range keyRPCs(t) {
			body, ok := keyRPCBodies[rpc]
			if !ok {
				t.Fatalf("AuthService.%s needs apikey.manage: give it a valid request in keyRPCBodies", rpc)
			}
			// Each may try to revoke the other key.
			other := plain.GetApiKey().GetId()
			if key == plain.GetKey() {
				other = viewer.GetApiKey().GetId()
			}
			body = strings.ReplaceAll(body, "%s", other)
			res := call(t, srv, "/berth.v1.AuthService/"+rpc, key, "", body)
			if res.StatusCode != http.StatusForbidden {
				t.Errorf("%s calling %s: status %d, want 403 (PERMISSION_DENIED)", who, rpc, res.StatusCode)
			}
		}
		// And through the generated client, for the code and reason.
		_, err := c.Auth.CreateApiKey(as(t.Context(), key), &berthv1.CreateApiKeyRequest{Name: "minted"})
		wantCode(t, err, connect.CodePermissionDenied, "FORBIDDEN")
	}
	after, err := c.Auth.ListApiKeys(session, &berthv1.ListApiKeysRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(after.GetApiKeys()) != len(before.GetApiKeys()) {
		t.Fatalf("keys before %d, after %d", len(before.GetApiKeys()), len(after.GetApiKeys()))
	}
	for _, k := range after.GetApiKeys() {
		if k.GetRevokedAt() != nil {
			t.Errorf("key %s was revoked", k.GetName())
		}
	}
	// Both keys still work for what their role allows.
	for _, key := range []string{viewer.GetKey(), plain.GetKey()} {
		if _, err := c.Auth.GetCurrentUser(as(t.Context(), key), &berthv1.GetCurrentUserRequest{}); err != nil {
			t.Errorf("GetCurrentUser: %v", err)
		}
	}
}

// TestKeysMadeByKeys: a key created with manage_keys may create keys, which
// never outlive it (a later or missing expiry is lowered to its own), end
// when it expires (on the server's clock) and end — with every key below
// them — when it is revoked.
func TestKeysMadeByKeys(t *testing.T) {
	t.Parallel()
	var offset atomic.Int64
	now := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	srv := startServerClock(t, now).srv
	c := srv.clients(protocols[0])
	ctx := t.Context()
	register(t, c, "admin@example.com") // the first account is the admin
	reg := register(t, c, "minter@example.com")
	session := as(ctx, reg.GetTokens().GetAccessToken())

	works := func(what, key string) {
		t.Helper()
		if _, err := c.Auth.GetCurrentUser(as(ctx, key), &berthv1.GetCurrentUserRequest{}); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	ended := func(what, key string) {
		t.Helper()
		_, err := c.Auth.GetCurrentUser(as(ctx, key), &berthv1.GetCurrentUserRequest{})
		wantCode(t, err, connect.CodeUnauthenticated, "UNAUTHORIZED")
		// On the SSE routes too: 401, not 500.
		res, body := get(t, srv, "/api/v1/workspaces/00000000-0000-4000-8000-000000000001/events", "", map[string]string{"Authorization": "Bearer " + key})
		if res.StatusCode != http.StatusUnauthorized || body["code"] != "unauthenticated" {
			t.Fatalf("%s on SSE: %d %v, want 401", what, res.StatusCode, body)
		}
	}

	// A manager that expires in 70s.
	expiry := now().Add(70 * time.Second)
	manager, err := c.Auth.CreateApiKey(session, &berthv1.CreateApiKeyRequest{Name: "manager", ManageKeys: true, ExpiresAt: timestamp(expiry)})
	if err != nil {
		t.Fatal(err)
	}
	mgr := as(ctx, manager.GetKey())
	managerExpiry := manager.GetApiKey().GetExpiresAt().AsTime()

	_, err = c.Auth.CreateApiKey(mgr, &berthv1.CreateApiKeyRequest{Name: "too high", Role: berthv1.Role_ROLE_ADMIN})
	wantCode(t, err, connect.CodePermissionDenied, "FORBIDDEN")
	forever, err := c.Auth.CreateApiKey(mgr, &berthv1.CreateApiKeyRequest{Name: "asks for no expiry"})
	if err != nil {
		t.Fatal(err)
	}
	later, err := c.Auth.CreateApiKey(mgr, &berthv1.CreateApiKeyRequest{Name: "asks for a day", ExpiresAt: timestamp(now().Add(24 * time.Hour))})
	if err != nil {
		t.Fatal(err)
	}
	sooner := now().Add(30 * time.Second).Truncate(time.Microsecond)
	short, err := c.Auth.CreateApiKey(mgr, &berthv1.CreateApiKeyRequest{Name: "asks for 30s", ExpiresAt: timestamp(sooner)})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []*berthv1.CreateApiKeyResponse{forever, later} {
		if got := k.GetApiKey().GetExpiresAt(); got == nil || got.AsTime().After(managerExpiry) {
			t.Errorf("key %q made by a key expiring at %v expires at %v", k.GetApiKey().GetName(), managerExpiry, got)
		}
	}
	if got := short.GetApiKey().GetExpiresAt().AsTime(); !got.Equal(sooner) {
		t.Errorf("an earlier expiry was changed: %v, want %v", got, sooner)
	}
	for _, k := range []*berthv1.CreateApiKeyResponse{forever, later, short} {
		if k.GetApiKey().GetParentId() != manager.GetApiKey().GetId() {
			t.Errorf("key %q has parent %q, want the manager", k.GetApiKey().GetName(), k.GetApiKey().GetParentId())
		}
	}
	works("a key made by a key", forever.GetKey())
	// It did not ask for manage_keys, so it cannot mint keys itself.
	_, err = c.Auth.CreateApiKey(as(ctx, forever.GetKey()), &berthv1.CreateApiKeyRequest{Name: "grandchild"})
	wantCode(t, err, connect.CodePermissionDenied, "FORBIDDEN")
	if list, err := c.Auth.ListApiKeys(mgr, &berthv1.ListApiKeysRequest{}); err != nil || len(list.GetApiKeys()) != 4 {
		t.Fatalf("the manager lists %v, %v", list, err)
	}

	// 71 seconds later the manager and every key it made have expired.
	offset.Store(int64(71 * time.Second))
	ended("the expired manager", manager.GetKey())
	ended("a key that asked for no expiry", forever.GetKey())
	ended("a key that asked for a day", later.GetKey())
	offset.Store(0)

	// Revocation cascades: session → manager → sub-manager → leaf.
	root, err := c.Auth.CreateApiKey(session, &berthv1.CreateApiKeyRequest{Name: "root", ManageKeys: true})
	if err != nil {
		t.Fatal(err)
	}
	sub, err := c.Auth.CreateApiKey(as(ctx, root.GetKey()), &berthv1.CreateApiKeyRequest{Name: "sub", ManageKeys: true})
	if err != nil {
		t.Fatal(err)
	}
	if sub.GetApiKey().GetExpiresAt() != nil {
		t.Errorf("a key made by a key that never expires got an expiry: %v", sub.GetApiKey().GetExpiresAt())
	}
	leaf, err := c.Auth.CreateApiKey(as(ctx, sub.GetKey()), &berthv1.CreateApiKeyRequest{Name: "leaf"})
	if err != nil {
		t.Fatal(err)
	}
	sibling, err := c.Auth.CreateApiKey(session, &berthv1.CreateApiKeyRequest{Name: "sibling"})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{root.GetKey(), sub.GetKey(), leaf.GetKey(), sibling.GetKey()} {
		works("before the revocation", k) // also puts each in the auth cache
	}
	if _, err := c.Auth.RevokeApiKey(session, &berthv1.RevokeApiKeyRequest{Id: root.GetApiKey().GetId()}); err != nil {
		t.Fatal(err)
	}
	ended("the revoked root", root.GetKey())
	ended("a key the root made", sub.GetKey())
	ended("a key made by a key the root made", leaf.GetKey())
	works("a key of the same account outside the tree", sibling.GetKey())
	list, err := c.Auth.ListApiKeys(session, &berthv1.ListApiKeysRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range list.GetApiKeys() {
		switch k.GetName() {
		case "root", "sub", "leaf":
			if k.GetRevokedAt() == nil {
				t.Errorf("%s is not listed as revoked", k.GetName())
			}
		}
	}
}

// TestKeyRevokesItsOwnTree: a manager key can revoke a key it made, and
// a logout with a key is refused (a key has no session; revoke it).
func TestKeyRevokesItsOwnTree(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	c := srv.clients(protocols[0])
	ctx := t.Context()
	session := as(ctx, register(t, c, "tree@example.com").GetTokens().GetAccessToken())
	manager, err := c.Auth.CreateApiKey(session, &berthv1.CreateApiKeyRequest{Name: "manager", ManageKeys: true})
	if err != nil {
		t.Fatal(err)
	}
	mgr := as(ctx, manager.GetKey())
	child, err := c.Auth.CreateApiKey(mgr, &berthv1.CreateApiKeyRequest{Name: "child"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Auth.RevokeApiKey(mgr, &berthv1.RevokeApiKeyRequest{Id: child.GetApiKey().GetId()}); err != nil {
		t.Fatal(err)
	}
	_, err = c.Auth.GetCurrentUser(as(ctx, child.GetKey()), &berthv1.GetCurrentUserRequest{})
	wantCode(t, err, connect.CodeUnauthenticated, "UNAUTHORIZED")
	_, err = c.Auth.Logout(mgr, &berthv1.LogoutRequest{})
	wantCode(t, err, connect.CodeFailedPrecondition, "CONFLICT")
	if _, err := c.Auth.GetCurrentUser(mgr, &berthv1.GetCurrentUserRequest{}); err != nil {
		t.Fatalf("the manager stopped working: %v", err)
	}
}
