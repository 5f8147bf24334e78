package server_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect/v2"

	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
)

// withKey returns a context whose calls carry an API key in X-API-Key.
func withKey(ctx context.Context, key string) context.Context {
	ctx, info := connect.NewClientContext(ctx)
	info.RequestHeader().Set("X-API-Key", key)
	return ctx
}

// TestAPIKeys: keys are shown once, capped at the creator's role, work as
// bearer or X-API-Key, are listed without the secret, and stop working the
// moment they are revoked.
func TestAPIKeys(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	c := srv.clients(protocols[0])
	ctx := t.Context()
	admin := as(ctx, register(t, c, "admin@example.com").GetTokens().GetAccessToken())
	member := register(t, c, "member@example.com")
	memberCtx := as(ctx, member.GetTokens().GetAccessToken())

	_, err := c.Auth.CreateApiKey(memberCtx, &berthv1.CreateApiKeyRequest{Name: "too high", Role: berthv1.Role_ROLE_ADMIN})
	wantCode(t, err, connect.CodePermissionDenied, "FORBIDDEN")
	past := time.Now().Add(-time.Hour)
	_, err = c.Auth.CreateApiKey(memberCtx, &berthv1.CreateApiKeyRequest{Name: "expired", ExpiresAt: timestamp(past)})
	wantCode(t, err, connect.CodeInvalidArgument, "VALIDATION_ERROR")

	created, err := c.Auth.CreateApiKey(memberCtx, &berthv1.CreateApiKeyRequest{Name: "ci"})
	if err != nil {
		t.Fatal(err)
	}
	key := created.GetKey()
	if !strings.HasPrefix(key, "berth_") || len(key) != len("berth_")+43 || created.GetApiKey().GetRole() != berthv1.Role_ROLE_MEMBER ||
		!strings.HasPrefix(key, created.GetApiKey().GetPrefix()) {
		t.Fatalf("created key %q: %v", key, created.GetApiKey())
	}

	for name, keyCtx := range map[string]context.Context{"bearer": as(ctx, key), "x-api-key": withKey(ctx, key)} {
		me, err := c.Auth.GetCurrentUser(keyCtx, &berthv1.GetCurrentUserRequest{})
		if err != nil || me.GetUser().GetId() != member.GetUser().GetId() {
			t.Fatalf("%s: %v %v", name, me, err)
		}
	}
	list, err := c.Auth.ListApiKeys(memberCtx, &berthv1.ListApiKeysRequest{})
	if err != nil || len(list.GetApiKeys()) != 1 || list.GetApiKeys()[0].GetLastUsedAt() == nil {
		t.Fatalf("ListApiKeys = %v, %v", list, err)
	}
	if strings.Contains(list.String(), key) {
		t.Fatal("ListApiKeys reveals the key")
	}
	// Another account sees none of them and cannot revoke them.
	adminKeys, _ := c.Auth.ListApiKeys(admin, &berthv1.ListApiKeysRequest{})
	if len(adminKeys.GetApiKeys()) != 0 {
		t.Errorf("admin sees member's keys: %v", adminKeys)
	}
	_, err = c.Auth.RevokeApiKey(admin, &berthv1.RevokeApiKeyRequest{Id: created.GetApiKey().GetId()})
	wantCode(t, err, connect.CodeNotFound, "NOT_FOUND")

	// A key that differs in its secret part is refused.
	forged := key[:len(key)-4] + "AAAA"
	if forged == key {
		forged = key[:len(key)-4] + "BBBB"
	}
	_, err = c.Auth.GetCurrentUser(as(ctx, forged), &berthv1.GetCurrentUserRequest{})
	wantCode(t, err, connect.CodeUnauthenticated, "UNAUTHORIZED")

	if _, err := c.Auth.RevokeApiKey(memberCtx, &berthv1.RevokeApiKeyRequest{Id: created.GetApiKey().GetId()}); err != nil {
		t.Fatal(err)
	}
	_, err = c.Auth.GetCurrentUser(as(ctx, key), &berthv1.GetCurrentUserRequest{})
	wantCode(t, err, connect.CodeUnauthenticated, "UNAUTHORIZED")

	// A viewer key cannot create tasks (or workspaces), even for a member.
	viewerKey, err := c.Auth.CreateApiKey(memberCtx, &berthv1.CreateApiKeyRequest{Name: "read-only", Role: berthv1.Role_ROLE_VIEWER})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Task.CreateTask(as(ctx, viewerKey.GetKey()), &berthv1.CreateTaskRequest{
		WorkspaceId: "00000000-0000-4000-8000-000000000000", Type: berthv1.TaskType_TASK_TYPE_CLAUDE_CHAT, Prompt: "hi",
	})
	wantCode(t, err, connect.CodePermissionDenied, "FORBIDDEN")
	if _, err := c.Workspace.ListWorkspaces(as(ctx, viewerKey.GetKey()), &berthv1.ListWorkspacesRequest{}); err != nil {
		t.Errorf("viewer key cannot read: %v", err)
	}
}

// TestSessionsEndAtOnce: Logout and DisableUser cut off live access tokens,
// refresh tokens and keys on their next request; a role change applies at
// once; the last admin is protected.
func TestSessionsEndAtOnce(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	c := srv.clients(protocols[0])
	ctx := t.Context()
	adminReg := register(t, c, "admin@example.com")
	admin := as(ctx, adminReg.GetTokens().GetAccessToken())
	bob := register(t, c, "bob@example.com")
	bobCtx := as(ctx, bob.GetTokens().GetAccessToken())

	// Logout: the access token stops working although it has not expired.
	if _, err := c.Auth.GetCurrentUser(bobCtx, &berthv1.GetCurrentUserRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Auth.Logout(bobCtx, &berthv1.LogoutRequest{}); err != nil {
		t.Fatal(err)
	}
	_, err := c.Auth.GetCurrentUser(bobCtx, &berthv1.GetCurrentUserRequest{})
	wantCode(t, err, connect.CodeUnauthenticated, "UNAUTHORIZED")

	login, err := c.Auth.Login(ctx, &berthv1.LoginRequest{Email: "bob@example.com", Password: "correct horse battery"})
	if err != nil {
		t.Fatal(err)
	}
	bobCtx = as(ctx, login.GetTokens().GetAccessToken())
	key, err := c.Auth.CreateApiKey(bobCtx, &berthv1.CreateApiKeyRequest{Name: "k"})
	if err != nil {
		t.Fatal(err)
	}
	keyCtx := as(ctx, key.GetKey())
	if _, err := c.Workspace.ListWorkspaces(keyCtx, &berthv1.ListWorkspacesRequest{}); err != nil {
		t.Fatal(err)
	}

	// A role change applies to live tokens and keys at once.
	if _, err := c.Admin.SetUserRole(admin, &berthv1.SetUserRoleRequest{UserId: bob.GetUser().GetId(), Role: berthv1.Role_ROLE_VIEWER}); err != nil {
		t.Fatal(err)
	}
	for _, cc := range []context.Context{bobCtx, keyCtx} {
		_, err = c.Workspace.CreateWorkspace(cc, &berthv1.CreateWorkspaceRequest{Name: "x", Path: srv.mkdir(t, "x")})
		wantCode(t, err, connect.CodePermissionDenied, "FORBIDDEN")
	}
	if _, err := c.Admin.SetUserRole(admin, &berthv1.SetUserRoleRequest{UserId: bob.GetUser().GetId(), Role: berthv1.Role_ROLE_MEMBER}); err != nil {
		t.Fatal(err)
	}

	// DisableUser: token, refresh token and key all stop on the next request.
	if _, err := c.Admin.DisableUser(admin, &berthv1.DisableUserRequest{UserId: bob.GetUser().GetId()}); err != nil {
		t.Fatal(err)
	}
	_, err = c.Auth.GetCurrentUser(bobCtx, &berthv1.GetCurrentUserRequest{})
	wantCode(t, err, connect.CodeUnauthenticated, "UNAUTHORIZED")
	_, err = c.Auth.GetCurrentUser(keyCtx, &berthv1.GetCurrentUserRequest{})
	wantCode(t, err, connect.CodeUnauthenticated, "UNAUTHORIZED")
	_, err = c.Auth.RefreshToken(ctx, &berthv1.RefreshTokenRequest{RefreshToken: login.GetTokens().GetRefreshToken()})
	wantCode(t, err, connect.CodeUnauthenticated, "UNAUTHORIZED")
	_, err = c.Auth.Login(ctx, &berthv1.LoginRequest{Email: "bob@example.com", Password: "correct horse battery"})
	wantCode(t, err, connect.CodeUnauthenticated, "UNAUTHORIZED")

	// Re-enabled: keys work again, old sessions stay ended, login works.
	if _, err := c.Admin.EnableUser(admin, &berthv1.EnableUserRequest{UserId: bob.GetUser().GetId()}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Auth.GetCurrentUser(keyCtx, &berthv1.GetCurrentUserRequest{}); err != nil {
		t.Errorf("key after enable: %v", err)
	}
	_, err = c.Auth.GetCurrentUser(bobCtx, &berthv1.GetCurrentUserRequest{})
	wantCode(t, err, connect.CodeUnauthenticated, "UNAUTHORIZED")

	// The admin cannot disable themself, and the last admin cannot be demoted.
	_, err = c.Admin.DisableUser(admin, &berthv1.DisableUserRequest{UserId: adminReg.GetUser().GetId()})
	wantCode(t, err, connect.CodeFailedPrecondition, "CONFLICT")
	_, err = c.Admin.SetUserRole(admin, &berthv1.SetUserRoleRequest{UserId: adminReg.GetUser().GetId(), Role: berthv1.Role_ROLE_MEMBER})
	wantCode(t, err, connect.CodeFailedPrecondition, "CONFLICT")

	users, err := c.Admin.ListUsers(admin, &berthv1.ListUsersRequest{Search: "bob"})
	if err != nil || users.GetPagination().GetTotal() != 1 || users.GetUsers()[0].GetDisabled() {
		t.Errorf("ListUsers = %v, %v", users, err)
	}
}

// TestSharing: owners share workspaces as editor or viewer; each role gets
// exactly its rights, and outsiders get NotFound.
func TestSharing(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	c := srv.clients(protocols[0])
	ctx := t.Context()
	register(t, c, "admin@example.com")
	owner := as(ctx, register(t, c, "owner@example.com").GetTokens().GetAccessToken())
	editorReg := register(t, c, "editor@example.com")
	viewerReg := register(t, c, "viewer@example.com")
	outsider := as(ctx, register(t, c, "outsider@example.com").GetTokens().GetAccessToken())
	editor := as(ctx, editorReg.GetTokens().GetAccessToken())
	viewer := as(ctx, viewerReg.GetTokens().GetAccessToken())

	res, err := c.Workspace.CreateWorkspace(owner, &berthv1.CreateWorkspaceRequest{Name: "shared"})
	if err != nil {
		t.Fatal(err)
	}
	id := res.GetWorkspace().GetId()
	// In this order: ListMembers lists members oldest first.
	// The editor by id; the viewer by email, as an owner who is no admin
	// (and so cannot list accounts) knows them.
	if _, err := c.Workspace.AddMember(owner, &berthv1.AddMemberRequest{WorkspaceId: id, UserId: editorReg.GetUser().GetId(), Role: berthv1.WorkspaceRole_WORKSPACE_ROLE_EDITOR}); err != nil {
		t.Fatal(err)
	}
	added, err := c.Workspace.AddMember(owner, &berthv1.AddMemberRequest{WorkspaceId: id, Email: "Viewer@example.com", Role: berthv1.WorkspaceRole_WORKSPACE_ROLE_VIEWER})
	if err != nil || added.GetMember().GetUserId() != viewerReg.GetUser().GetId() {
		t.Fatalf("AddMember by email = %v, %v", added, err)
	}
	_, err = c.Workspace.AddMember(owner, &berthv1.AddMemberRequest{WorkspaceId: id, Email: "nobody@example.com", Role: berthv1.WorkspaceRole_WORKSPACE_ROLE_VIEWER})
	wantCode(t, err, connect.CodeNotFound, "NOT_FOUND")
	for _, bad := range []*berthv1.AddMemberRequest{
		{WorkspaceId: id, Role: berthv1.WorkspaceRole_WORKSPACE_ROLE_VIEWER},
		{WorkspaceId: id, UserId: editorReg.GetUser().GetId(), Email: "editor@example.com", Role: berthv1.WorkspaceRole_WORKSPACE_ROLE_VIEWER},
		{WorkspaceId: id, Email: "not an address", Role: berthv1.WorkspaceRole_WORKSPACE_ROLE_VIEWER},
	} {
		_, err = c.Workspace.AddMember(owner, bad)
		wantCode(t, err, connect.CodeInvalidArgument, "VALIDATION_ERROR")
	}
	_, err = c.Workspace.AddMember(owner, &berthv1.AddMemberRequest{WorkspaceId: id, UserId: viewerReg.GetUser().GetId(), Role: berthv1.WorkspaceRole_WORKSPACE_ROLE_EDITOR})
	wantCode(t, err, connect.CodeAlreadyExists, "CONFLICT")
	_, err = c.Workspace.AddMember(owner, &berthv1.AddMemberRequest{WorkspaceId: id, UserId: "00000000-0000-4000-8000-000000000000", Role: berthv1.WorkspaceRole_WORKSPACE_ROLE_EDITOR})
	wantCode(t, err, connect.CodeNotFound, "NOT_FOUND")
	_, err = c.Workspace.AddMember(owner, &berthv1.AddMemberRequest{WorkspaceId: id, UserId: editorReg.GetUser().GetId(), Role: berthv1.WorkspaceRole_WORKSPACE_ROLE_OWNER})
	wantCode(t, err, connect.CodeInvalidArgument, "VALIDATION_ERROR")

	members, err := c.Workspace.ListMembers(viewer, &berthv1.ListMembersRequest{WorkspaceId: id})
	if err != nil {
		t.Fatal(err)
	}
	var roles []berthv1.WorkspaceRole
	for _, m := range members.GetMembers() {
		roles = append(roles, m.GetRole())
	}
	if !slices.Equal(roles, []berthv1.WorkspaceRole{berthv1.WorkspaceRole_WORKSPACE_ROLE_OWNER, berthv1.WorkspaceRole_WORKSPACE_ROLE_EDITOR, berthv1.WorkspaceRole_WORKSPACE_ROLE_VIEWER}) {
		t.Errorf("ListMembers = %v", members)
	}
	// A viewer sees their own address and nobody else's; the owner sees all.
	if m := members.GetMembers(); m[0].GetEmail() != "" || m[1].GetEmail() != "" || m[2].GetEmail() != "viewer@example.com" {
		t.Errorf("the viewer's ListMembers shows others' addresses: %v", members)
	}
	if all, err := c.Workspace.ListMembers(owner, &berthv1.ListMembersRequest{WorkspaceId: id}); err != nil ||
		all.GetMembers()[0].GetEmail() != "owner@example.com" || all.GetMembers()[1].GetEmail() != "editor@example.com" {
		t.Errorf("the owner's ListMembers = %v, %v", all, err)
	}

	// The viewer reads but does not change; the editor changes but neither
	// deletes nor shares; the outsider sees nothing.
	if _, err := c.Workspace.GetWorkspace(viewer, &berthv1.GetWorkspaceRequest{Id: id}); err != nil {
		t.Errorf("viewer get: %v", err)
	}
	_, err = c.Workspace.UpdateWorkspace(viewer, &berthv1.UpdateWorkspaceRequest{Id: id, Description: new("v")})
	wantCode(t, err, connect.CodePermissionDenied, "FORBIDDEN")
	_, err = c.Workspace.StartWorkspace(viewer, &berthv1.StartWorkspaceRequest{Id: id})
	wantCode(t, err, connect.CodePermissionDenied, "FORBIDDEN")
	if _, err := c.Workspace.UpdateWorkspace(editor, &berthv1.UpdateWorkspaceRequest{Id: id, Description: new("edited")}); err != nil {
		t.Errorf("editor update: %v", err)
	}
	_, err = c.Workspace.DeleteWorkspace(editor, &berthv1.DeleteWorkspaceRequest{Id: id})
	wantCode(t, err, connect.CodePermissionDenied, "FORBIDDEN")
	_, err = c.Workspace.AddMember(editor, &berthv1.AddMemberRequest{WorkspaceId: id, UserId: viewerReg.GetUser().GetId(), Role: berthv1.WorkspaceRole_WORKSPACE_ROLE_EDITOR})
	wantCode(t, err, connect.CodePermissionDenied, "FORBIDDEN")
	_, err = c.Workspace.GetWorkspace(outsider, &berthv1.GetWorkspaceRequest{Id: id})
	wantCode(t, err, connect.CodeNotFound, "NOT_FOUND")
	_, err = c.Workspace.ListMembers(outsider, &berthv1.ListMembersRequest{WorkspaceId: id})
	wantCode(t, err, connect.CodeNotFound, "NOT_FOUND")
	list, _ := c.Workspace.ListWorkspaces(editor, &berthv1.ListWorkspacesRequest{})
	if list.GetPagination().GetTotal() != 1 {
		t.Errorf("editor's list: %v", list)
	}

	// A member can leave; the owner removes the other; then both are outsiders.
	if _, err := c.Workspace.RemoveMember(viewer, &berthv1.RemoveMemberRequest{WorkspaceId: id, UserId: viewerReg.GetUser().GetId()}); err != nil {
		t.Errorf("leave: %v", err)
	}
	_, err = c.Workspace.RemoveMember(editor, &berthv1.RemoveMemberRequest{WorkspaceId: id, UserId: viewerReg.GetUser().GetId()})
	wantCode(t, err, connect.CodePermissionDenied, "FORBIDDEN") // an editor may not remove others
	if _, err := c.Workspace.RemoveMember(owner, &berthv1.RemoveMemberRequest{WorkspaceId: id, UserId: editorReg.GetUser().GetId()}); err != nil {
		t.Fatal(err)
	}
	for _, cc := range []context.Context{viewer, editor} {
		_, err = c.Workspace.GetWorkspace(cc, &berthv1.GetWorkspaceRequest{Id: id})
		wantCode(t, err, connect.CodeNotFound, "NOT_FOUND")
	}
}

// TestAuditLog: security events are recorded with actor, target, address
// and request id, and can be filtered.
func TestAuditLog(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	c := srv.clients(protocols[0])
	ctx := t.Context()
	adminReg := register(t, c, "admin@example.com")
	admin := as(ctx, adminReg.GetTokens().GetAccessToken())
	bob := register(t, c, "bob@example.com")
	if _, err := c.Auth.Register(ctx, &berthv1.RegisterRequest{Email: "bob@example.com", Password: "another horse battery"}); err == nil {
		t.Fatal("a second account with bob's email")
	}

	_, _ = c.Auth.Login(ctx, &berthv1.LoginRequest{Email: "bob@example.com", Password: "wrong password!"})
	if _, err := c.Auth.Login(ctx, &berthv1.LoginRequest{Email: "bob@example.com", Password: "correct horse battery"}); err != nil {
		t.Fatal(err)
	}
	key, err := c.Auth.CreateApiKey(admin, &berthv1.CreateApiKeyRequest{Name: "k"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Auth.RevokeApiKey(admin, &berthv1.RevokeApiKeyRequest{Id: key.GetApiKey().GetId()}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Admin.SetUserRole(admin, &berthv1.SetUserRoleRequest{UserId: bob.GetUser().GetId(), Role: berthv1.Role_ROLE_VIEWER}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Admin.DisableUser(admin, &berthv1.DisableUserRequest{UserId: bob.GetUser().GetId()}); err != nil {
		t.Fatal(err)
	}
	ws, err := c.Workspace.CreateWorkspace(admin, &berthv1.CreateWorkspaceRequest{Name: "w", Path: srv.mkdir(t, "w")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Workspace.AddMember(admin, &berthv1.AddMemberRequest{WorkspaceId: ws.GetWorkspace().GetId(), UserId: bob.GetUser().GetId(), Role: berthv1.WorkspaceRole_WORKSPACE_ROLE_VIEWER}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Workspace.RemoveMember(admin, &berthv1.RemoveMemberRequest{WorkspaceId: ws.GetWorkspace().GetId(), UserId: bob.GetUser().GetId()}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Workspace.DeleteWorkspace(admin, &berthv1.DeleteWorkspaceRequest{Id: ws.GetWorkspace().GetId()}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Auth.Logout(admin, &berthv1.LogoutRequest{}); err != nil {
		t.Fatal(err)
	}
	fresh, err := c.Auth.Login(ctx, &berthv1.LoginRequest{Email: "admin@example.com", Password: "correct horse battery"})
	if err != nil {
		t.Fatal(err)
	}
	admin = as(ctx, fresh.GetTokens().GetAccessToken())

	events, err := c.Admin.ListAuditEvents(admin, &berthv1.ListAuditEventsRequest{PageSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, e := range events.GetEvents() {
		seen[e.GetAction()+"/"+e.GetOutcome()]++
		if e.GetRequestId() == "" || e.GetSourceAddress() != "127.0.0.1" || e.GetTime() == nil {
			t.Errorf("event lacks context: %v", e)
		}
	}
	for _, want := range []string{
		"auth.register/success", "auth.register/failure",
		"auth.login/failure", "auth.login/success", "auth.logout/success", "api_key.create/success", "api_key.revoke/success",
		"user.role/success", "user.disable/success", "workspace.member_add/success", "workspace.member_remove/success", "workspace.delete/success",
	} {
		if seen[want] == 0 {
			t.Errorf("no %s event (have %v)", want, seen)
		}
	}
	if seen["auth.register/success"] != 2 {
		t.Errorf("%d auth.register successes, want 2 (admin and bob)", seen["auth.register/success"])
	}
	byActor, err := c.Admin.ListAuditEvents(admin, &berthv1.ListAuditEventsRequest{Action: "user.role", ActorId: adminReg.GetUser().GetId()})
	if err != nil || byActor.GetPagination().GetTotal() != 1 || byActor.GetEvents()[0].GetTargetId() != bob.GetUser().GetId() ||
		byActor.GetEvents()[0].GetDetails()["to"] != "viewer" {
		t.Errorf("filtered audit = %v, %v", byActor, err)
	}
}

// TestLoginThrottle: repeated failures for one account slow it down with
// RATE_LIMIT_EXCEEDED, even for the right password, without revealing
// whether the account exists.
func TestLoginThrottle(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	c := srv.clients(protocols[0])
	ctx := t.Context()
	register(t, c, "target@example.com")
	for _, email := range []string{"target@example.com", "ghost@example.com"} {
		for range 6 {
			_, err := c.Auth.Login(ctx, &berthv1.LoginRequest{Email: email, Password: "wrong password!"})
			wantCode(t, err, connect.CodeUnauthenticated, "UNAUTHORIZED")
		}
		_, err := c.Auth.Login(ctx, &berthv1.LoginRequest{Email: email, Password: "correct horse battery"})
		wantCode(t, err, connect.CodeResourceExhausted, "RATE_LIMIT_EXCEEDED")
	}
}
