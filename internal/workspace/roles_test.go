package workspace_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/berthhq/berth/internal/access"
	"github.com/berthhq/berth/internal/fault"
	"github.com/berthhq/berth/internal/store"
	"github.com/berthhq/berth/internal/workspace"
)

// TestRoleMatrix walks every global role × every relation to a workspace
// (owner, editor, viewer, none) × every workspace permission, deciding each
// call as the server does: the global role's permission first (the access
// interceptor), then the workspace service on a real SQLite store. A
// workspace the caller has no access to is not found, never forbidden.
func TestRoleMatrix(t *testing.T) {
	t.Parallel()
	const (
		ok     = "ok"
		denied = "denied"
		absent = "not found"
	)
	perms := []string{access.PermWorkspaceRead, access.PermWorkspaceUpdate, access.PermWorkspaceOp, access.PermWorkspaceShare, access.PermWorkspaceDelete}
	all := func(o string) []string { return []string{o, o, o, o, o} }
	// Outcomes in the order of perms: read, update, operate, share, delete.
	want := map[store.Role]map[string][]string{
		store.RoleAdmin: {
			"owner":  all(ok),
			"editor": {ok, ok, ok, denied, denied},
			"viewer": {ok, denied, denied, denied, denied},
			"none":   all(ok), // an admin sees every workspace, as WorkspaceAdmin
		},
		store.RoleMember: {
			"owner":  all(ok),
			"editor": {ok, ok, ok, denied, denied},
			"viewer": {ok, denied, denied, denied, denied},
			"none":   all(absent),
		},
		store.RoleViewer: {
			"owner":  {ok, denied, denied, denied, denied},
			"editor": {ok, denied, denied, denied, denied},
			"viewer": {ok, denied, denied, denied, denied},
			"none":   {absent, denied, denied, denied, denied},
		},
	}

	f := newFixture(t, workspace.Containers{})
	ctx := t.Context()
	founder := f.owner // the first account: an admin
	guest := f.addUser(t, store.RoleMember)
	n := 0
	for _, role := range access.Roles() {
		caller := f.addUser(t, role)
		for _, relation := range []string{"owner", "editor", "viewer", "none"} {
			for i, perm := range perms {
				n++
				name := fmt.Sprintf("w%d", n)
				var w *store.Workspace
				var err error
				if relation == "owner" {
					w, err = f.svc.Create(ctx, caller, workspace.Spec{Name: name})
				} else {
					w, err = f.svc.Create(ctx, founder, workspace.Spec{Name: name})
				}
				if err != nil {
					t.Fatal(err)
				}
				if relation == "editor" || relation == "viewer" {
					if _, err := f.svc.AddMember(ctx, founder, w.ID, caller.UserID, "", store.WorkspaceRole(relation)); err != nil {
						t.Fatal(err)
					}
				}
				got := ok
				if !access.Allows(caller.Role, perm) {
					got = denied
				} else {
					err = call(t, f.svc, caller, w.ID, guest.UserID, perm)
					switch {
					case errors.Is(err, fault.ErrPermissionDenied):
						got = denied
					case errors.Is(err, fault.ErrNotFound):
						got = absent
					case err != nil:
						t.Fatalf("%s %s %s: %v", role, relation, perm, err)
					}
				}
				if got != want[role][relation][i] {
					t.Errorf("global %s, workspace %s, %s: %s, want %s", role, relation, perm, got, want[role][relation][i])
				}
			}
		}
	}
}

// call exercises one workspace permission as p on workspace id.
func call(t *testing.T, svc *workspace.Service, p access.Principal, id, other, perm string) error {
	t.Helper()
	ctx := t.Context()
	switch perm {
	case access.PermWorkspaceRead:
		_, err := svc.Get(ctx, p, id)
		return err
	case access.PermWorkspaceUpdate:
		d := "changed"
		_, err := svc.Update(ctx, p, id, workspace.Change{Description: &d})
		return err
	case access.PermWorkspaceOp:
		if _, err := svc.Start(ctx, p, id); err != nil {
			return err
		}
		_, err := svc.Stop(ctx, p, id)
		return err
	case access.PermWorkspaceShare:
		_, err := svc.AddMember(ctx, p, id, other, "", store.WorkspaceViewer)
		return err
	case access.PermWorkspaceDelete:
		return svc.Delete(ctx, p, id, true)
	}
	t.Fatalf("no call for %s", perm)
	return nil
}
