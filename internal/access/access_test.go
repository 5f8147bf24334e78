package access_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/berthhq/berth/internal/access"
	"github.com/berthhq/berth/internal/fault"
	"github.com/berthhq/berth/internal/store"
)

// allPerms is every permission the policy knows, in the order of the rows
// below.
var allPerms = []string{
	access.PermAccountSelf, access.PermAPIKeyManage,
	access.PermWorkspaceRead, access.PermWorkspaceCreate, access.PermWorkspaceUpdate, access.PermWorkspaceDelete,
	access.PermWorkspaceOp, access.PermWorkspaceShare, access.PermWorkspaceImport,
	access.PermTaskRead, access.PermTaskCreate, access.PermTaskCancel,
	access.PermStatsRead, access.PermAdminUsers, access.PermAdminAudit,
}

// TestPolicy spells out, independently of the policy table, what each
// global role may do.
func TestPolicy(t *testing.T) {
	t.Parallel()
	const Y, N = true, false
	want := map[store.Role][]bool{
		//                self apikey wsRead wsCreate wsUpdate wsDelete wsOp wsShare wsImport taskRead taskCreate taskCancel stats adminUsers adminAudit
		store.RoleAdmin:  {Y, Y, Y, Y, Y, Y, Y, Y, Y, Y, Y, Y, Y, Y, Y},
		store.RoleMember: {Y, Y, Y, Y, Y, Y, Y, Y, N, Y, Y, Y, Y, N, N},
		store.RoleViewer: {Y, Y, Y, N, N, N, N, N, N, Y, N, N, Y, N, N},
		"":               {N, N, N, N, N, N, N, N, N, N, N, N, N, N, N},
		"root":           {N, N, N, N, N, N, N, N, N, N, N, N, N, N, N},
	}
	for role, row := range want {
		for i, perm := range allPerms {
			if got := access.Allows(role, perm); got != row[i] {
				t.Errorf("Allows(%q, %s) = %v, want %v", role, perm, got, row[i])
			}
		}
	}
	for _, perm := range allPerms {
		if !access.Known(perm) {
			t.Errorf("%s is not known", perm)
		}
	}
	if access.Known("workspace.typo") {
		t.Error("an unknown permission is known")
	}
	// Ranks order the roles: a higher one holds every permission of a lower.
	roles := access.Roles()
	for i := 1; i < len(roles); i++ {
		hi, lo := roles[i-1], roles[i]
		if access.Rank(hi) <= access.Rank(lo) {
			t.Errorf("rank(%s) <= rank(%s)", hi, lo)
		}
		for _, perm := range allPerms {
			if access.Allows(lo, perm) && !access.Allows(hi, perm) {
				t.Errorf("%s may %s but %s may not", lo, perm, hi)
			}
		}
	}
	if access.Rank("root") != 0 {
		t.Error("an unknown role ranks above 0")
	}
}

// TestKeyMay: only managing keys is narrowed for API keys, and only a key
// made with manage_keys that does not act as a viewer may.
func TestKeyMay(t *testing.T) {
	t.Parallel()
	for _, role := range access.Roles() {
		for _, c := range []struct {
			p    access.Principal
			want bool
		}{
			{access.Principal{Role: role, SessionID: "s"}, true},
			{access.Principal{Role: role, APIKeyID: "k"}, false},
			{access.Principal{Role: role, APIKeyID: "k", ManageKeys: true}, role != store.RoleViewer},
		} {
			if got := access.KeyMay(c.p, access.PermAPIKeyManage); got != c.want {
				t.Errorf("%s key=%q manage=%v: KeyMay = %v, want %v", role, c.p.APIKeyID, c.p.ManageKeys, got, c.want)
			}
			for _, perm := range allPerms {
				if perm != access.PermAPIKeyManage && !access.KeyMay(c.p, perm) {
					t.Errorf("KeyMay narrowed %s", perm)
				}
			}
		}
	}
}

// TestViewerSeesItsWorkspaces: a principal's Viewer is what the store
// enforces inside its queries, on a real SQLite database: every global
// role × relation to a workspace (owner, editor, viewer, none) reads it
// with the expected workspace role, and a workspace without access is not
// found (never forbidden) and not listed.
func TestViewerSeesItsWorkspaces(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "berth.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	n := 0
	user := func(role store.Role) access.Principal {
		t.Helper()
		n++
		u := &store.User{ID: fmt.Sprintf("00000000-0000-4000-8000-%012d", n), Email: fmt.Sprintf("u%d@example.com", n), Role: role, CreatedAt: now, UpdatedAt: now}
		if err := st.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
		return access.Principal{UserID: u.ID, Role: u.Role}
	}
	founder := user(store.RoleAdmin)
	workspaceOf := func(owner access.Principal) *store.Workspace {
		t.Helper()
		n++
		w := &store.Workspace{
			ID: fmt.Sprintf("10000000-0000-4000-8000-%012d", n), OwnerID: owner.UserID, Name: fmt.Sprintf("w%d", n),
			Path: fmt.Sprintf("/srv/ws/%d", n), Status: store.WorkspaceStopped, CreatedAt: now, UpdatedAt: now,
		}
		if err := st.CreateWorkspace(ctx, w); err != nil {
			t.Fatal(err)
		}
		return w
	}
	want := map[store.Role]map[string]store.WorkspaceRole{
		store.RoleAdmin:  {"owner": store.WorkspaceOwner, "editor": store.WorkspaceEditor, "viewer": store.WorkspaceViewer, "none": store.WorkspaceAdmin},
		store.RoleMember: {"owner": store.WorkspaceOwner, "editor": store.WorkspaceEditor, "viewer": store.WorkspaceViewer, "none": ""},
		store.RoleViewer: {"owner": store.WorkspaceOwner, "editor": store.WorkspaceEditor, "viewer": store.WorkspaceViewer, "none": ""},
	}
	for _, role := range access.Roles() {
		caller := user(role)
		for _, relation := range []string{"owner", "editor", "viewer", "none"} {
			var w *store.Workspace
			if relation == "owner" {
				w = workspaceOf(caller)
			} else {
				w = workspaceOf(founder)
			}
			if relation == "editor" || relation == "viewer" {
				if err := st.AddMember(ctx, &store.Member{WorkspaceID: w.ID, UserID: caller.UserID, Role: store.WorkspaceRole(relation), CreatedAt: now}); err != nil {
					t.Fatal(err)
				}
			}
			expected := want[role][relation]
			got, err := st.FindWorkspace(ctx, w.ID, caller.Viewer())
			switch {
			case expected == "" && !errors.Is(err, fault.ErrNotFound):
				t.Errorf("global %s, %s: FindWorkspace = %v, want not found", role, relation, err)
			case expected != "" && err != nil:
				t.Errorf("global %s, %s: %v", role, relation, err)
			case expected != "" && got.AccessRole != expected:
				t.Errorf("global %s, %s: workspace role %q, want %q", role, relation, got.AccessRole, expected)
			}
		}
		// Listing shows exactly what FindWorkspace finds.
		list, total, err := st.ListWorkspaces(ctx, store.WorkspaceFilter{Viewer: caller.Viewer()})
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range list {
			if _, err := st.FindWorkspace(ctx, w.ID, caller.Viewer()); err != nil {
				t.Errorf("global %s lists %s but cannot read it: %v", role, w.Name, err)
			}
		}
		if role != store.RoleAdmin && total != 3 {
			t.Errorf("global %s lists %d workspaces, want its 3 (owner, editor, viewer)", role, total)
		}
	}
	if p := (access.Principal{UserID: "u", Role: store.RoleAdmin}); !p.Viewer().Admin || !p.IsAdmin() {
		t.Error("an admin principal's viewer is not admin")
	}
	if p := (access.Principal{UserID: "u", Role: store.RoleMember}); p.Viewer().Admin || p.IsAdmin() || p.Viewer().UserID != "u" {
		t.Error("a member principal's viewer is admin or anonymous")
	}
}

// TestPrincipalContext checks WithPrincipal's context: PrincipalFrom finds
// the innermost principal and nothing where there is none, and the
// context answers every other value, and ends, as its parent does.
func TestPrincipalContext(t *testing.T) {
	type otherKey struct{}
	parent, cancel := context.WithCancel(context.WithValue(t.Context(), otherKey{}, "other"))
	if p, ok := access.PrincipalFrom(parent); ok {
		t.Fatalf("a principal without WithPrincipal: %+v", p)
	}
	outer := access.Principal{UserID: "u1", Role: store.RoleViewer}
	inner := access.Principal{UserID: "u2", Role: store.RoleAdmin, SessionID: "s", Method: access.MethodToken}
	ctx := access.WithPrincipal(access.WithPrincipal(parent, outer), inner)
	if p, ok := access.PrincipalFrom(ctx); !ok || p != inner {
		t.Errorf("PrincipalFrom = %+v, %v; want %+v", p, ok, inner)
	}
	if v := ctx.Value(otherKey{}); v != "other" {
		t.Errorf("the parent's value: %v", v)
	}
	cancel()
	<-ctx.Done()
	if !errors.Is(ctx.Err(), context.Canceled) {
		t.Errorf("Err: %v", ctx.Err())
	}
}
