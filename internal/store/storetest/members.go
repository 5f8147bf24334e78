package storetest

import (
	"testing"

	"github.com/google/uuid"

	"github.com/berthhq/berth/internal/fault"
	"github.com/berthhq/berth/internal/store"
)

var memberTests = []test{
	{"AddListRemove", testMembers},
	{"Refused", testMembersRefused},
}

func testMembers(t *testing.T, e *env) {
	owner := e.user()
	w := e.workspace(owner)
	members, err := e.s.ListMembers(e.ctx, w.ID)
	must(t, err)
	if members == nil || len(members) != 0 {
		t.Fatalf("members of a new workspace = %#v, want an empty slice", members)
	}

	// Ids and names sort opposite to the order they are added in, so the
	// order checked is by time.
	person := func(idPrefix, name string) *store.User {
		return e.user(func(u *store.User) { u.ID, u.Name = idPrefix+u.ID, name })
	}
	ann := person("m-", "Ann")
	bob := person("a-", "Bob")
	cy := person("z-", "Cy")
	mc := e.member(w, cy, store.WorkspaceViewer)
	ma := e.member(w, ann, store.WorkspaceEditor)
	mb := e.member(w, bob, store.WorkspaceViewer)
	equal(t, "email filled in", ma.Email, ann.Email)
	equal(t, "name filled in", ma.Name, "Ann")

	members, err = e.s.ListMembers(e.ctx, w.ID)
	must(t, err)
	equal(t, "members", members, []*store.Member{mc, ma, mb})

	must(t, e.s.RemoveMember(e.ctx, w.ID, ann.ID))
	wantMessage(t, e.s.RemoveMember(e.ctx, w.ID, ann.ID), fault.ErrNotFound, "member not found")
	members, err = e.s.ListMembers(e.ctx, w.ID)
	must(t, err)
	equal(t, "members after removal", members, []*store.Member{mc, mb})
	_, err = e.s.FindWorkspace(e.ctx, w.ID, viewerOf(ann))
	wantFault(t, err, fault.ErrNotFound)

	// Re-adding after removal works, with the new role.
	again := e.member(w, ann, store.WorkspaceViewer)
	got, err := e.s.FindWorkspace(e.ctx, w.ID, viewerOf(ann))
	must(t, err)
	equal(t, "role after re-adding", got.AccessRole, again.Role)
}

func testMembersRefused(t *testing.T, e *env) {
	owner, friend := e.user(), e.user()
	w := e.workspace(owner)
	e.member(w, friend, store.WorkspaceViewer)
	add := func(workspaceID, userID string) error {
		return e.s.AddMember(e.ctx, &store.Member{WorkspaceID: workspaceID, UserID: userID, Role: store.WorkspaceEditor, CreatedAt: e.tick()})
	}
	wantMessage(t, add(w.ID, friend.ID), fault.ErrConflict, "the user is already a member of this workspace")
	wantFault(t, add(w.ID, owner.ID), fault.ErrConflict)
	wantMessage(t, add(w.ID, uuid.NewString()), fault.ErrNotFound, "user not found")
	wantMessage(t, add(uuid.NewString(), friend.ID), fault.ErrNotFound, "workspace not found")

	got, err := e.s.FindWorkspace(e.ctx, w.ID, viewerOf(friend))
	must(t, err)
	equal(t, "role kept", got.AccessRole, store.WorkspaceViewer)
	members, err := e.s.ListMembers(e.ctx, w.ID)
	must(t, err)
	equal(t, "members", len(members), 1)
}
