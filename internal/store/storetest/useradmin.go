package storetest

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/berthhq/berth/internal/fault"
	"github.com/berthhq/berth/internal/store"
)

var userAdminTests = []test{
	{"List", testListUsers},
	{"ListPaging", testListUsersPaging},
	{"SetRole", testSetUserRole},
	{"SetRoleLastAdmin", testSetUserRoleLastAdmin},
	{"Disable", testSetUserDisabled},
	{"DisableLastAdmin", testDisableLastAdmin},
	{"ConcurrentDemotions", testConcurrentDemotions},
}

// lastAdmin is the message of a change that would leave no enabled admin.
const lastAdmin = "the last admin cannot be demoted or disabled; make another account admin first"

// listUsers lists accounts and fails the test on an error.
func (e *env) listUsers(f store.UserFilter) ([]*store.User, int64) {
	e.t.Helper()
	users, total, err := e.s.ListUsers(e.ctx, f)
	if err != nil {
		e.t.Fatalf("list users %+v: %v", f, err)
	}
	if users == nil {
		e.t.Fatalf("list users %+v: nil slice", f)
	}
	return users, total
}

// findUser reads an account back and fails the test on an error.
func (e *env) findUser(id string) *store.User {
	e.t.Helper()
	u, err := e.s.FindUserByID(e.ctx, id)
	if err != nil {
		e.t.Fatalf("find user %s: %v", id, err)
	}
	return u
}

// updated is u as a change at now leaves it.
func updated(u *store.User, now time.Time, change func(*store.User)) *store.User {
	c := *u
	c.UpdatedAt = micro(now)
	change(&c)
	return &c
}

func testListUsers(t *testing.T, e *env) {
	ada := e.user(func(u *store.User) { u.Name, u.Email, u.Role = "Ada", "ada@example.com", store.RoleAdmin })
	bob := e.user(func(u *store.User) { u.Name, u.Email = "Bob", "bob_smith@example.com" })
	cy := e.user(func(u *store.User) { u.Name, u.Email, u.Role = "Cy 100%", "cy@other.org", store.RoleViewer })
	dee, _ := e.oidcUser("dee@example.com", func(u *store.User) { u.Name = "Dee" })

	tests := []struct {
		name string
		f    store.UserFilter
		want []*store.User
	}{
		{"all, oldest first", store.UserFilter{}, []*store.User{ada, bob, cy, dee}},
		{"email, any case, display emails too", store.UserFilter{Search: "EXAMPLE.com"}, []*store.User{ada, bob, dee}},
		{"name, any case", store.UserFilter{Search: "BO"}, []*store.User{bob}},
		{"display email of an OIDC account", store.UserFilter{Search: "dee@"}, []*store.User{dee}},
		{"underscore is literal", store.UserFilter{Search: "_"}, []*store.User{bob}},
		{"percent is literal", store.UserFilter{Search: "%"}, []*store.User{cy}},
		{"backslash is literal", store.UserFilter{Search: `\`}, []*store.User{}},
		{"role", store.UserFilter{Role: store.RoleViewer}, []*store.User{cy}},
		{"role and search", store.UserFilter{Role: store.RoleMember, Search: "example"}, []*store.User{bob, dee}},
		{"nothing", store.UserFilter{Search: "zzz"}, []*store.User{}},
	}
	for _, tt := range tests {
		got, total := e.listUsers(tt.f)
		equal(t, tt.name, got, tt.want)
		equal(t, tt.name+": total", total, int64(len(tt.want)))
	}
	_, _, err := e.s.ListUsers(e.ctx, store.UserFilter{Role: "root"})
	wantFault(t, err, fault.ErrInvalid)
}

func testListUsersPaging(t *testing.T, e *env) {
	// Two accounts created at one instant sort by id, whatever order they
	// were made in.
	at := e.tick()
	z := e.user(func(u *store.User) { u.ID, u.CreatedAt, u.UpdatedAt = "z-"+u.ID, at, at })
	a := e.user(func(u *store.User) { u.ID, u.CreatedAt, u.UpdatedAt = "a-"+u.ID, at, at })
	rest := []*store.User{e.user(), e.user(), e.user()}
	all := append([]*store.User{a, z}, rest...)

	got, total := e.listUsers(store.UserFilter{})
	equal(t, "all", got, all)
	equal(t, "total", total, 5)
	var paged []*store.User
	for offset := 0; offset < 6; offset += 2 {
		page, total := e.listUsers(store.UserFilter{Offset: offset, Limit: 2})
		equal(t, "total of a page", total, 5)
		paged = append(paged, page...)
	}
	equal(t, "pages", paged, all)
	page, total := e.listUsers(store.UserFilter{Offset: 10, Limit: 2})
	equal(t, "past the end", page, []*store.User{})
	equal(t, "total past the end", total, 5)
	page, _ = e.listUsers(store.UserFilter{Offset: -3, Limit: 1})
	equal(t, "negative offset", page, all[:1])
}

func testSetUserRole(t *testing.T, e *env) {
	root, bob := e.admin(), e.user()
	now := e.tick()
	got, err := e.s.SetUserRole(e.ctx, bob.ID, store.RoleAdmin, now)
	must(t, err)
	want := updated(bob, now, func(u *store.User) { u.Role = store.RoleAdmin })
	equal(t, "promoted", got, want)
	equal(t, "stored", e.findUser(bob.ID), want)

	// With two admins, one may be demoted.
	now = e.tick()
	got, err = e.s.SetUserRole(e.ctx, root.ID, store.RoleViewer, now)
	must(t, err)
	equal(t, "demoted", got, updated(root, now, func(u *store.User) { u.Role = store.RoleViewer }))

	// The last admin may keep the role.
	now = e.tick()
	got, err = e.s.SetUserRole(e.ctx, bob.ID, store.RoleAdmin, now)
	must(t, err)
	equal(t, "admin kept", got, updated(want, now, func(*store.User) {}))

	_, err = e.s.SetUserRole(e.ctx, uuid.NewString(), store.RoleMember, e.tick())
	wantMessage(t, err, fault.ErrNotFound, "user not found")
	_, err = e.s.SetUserRole(e.ctx, root.ID, "root", e.tick())
	wantFault(t, err, fault.ErrInvalid)
	_, err = e.s.SetUserRole(e.ctx, root.ID, "", e.tick())
	wantFault(t, err, fault.ErrInvalid)
	equal(t, "refused changes change nothing", e.findUser(root.ID).Role, store.RoleViewer)
}

func testSetUserRoleLastAdmin(t *testing.T, e *env) {
	root := e.admin()
	e.user()
	// A disabled admin cannot administer, so it does not count.
	off := e.user(func(u *store.User) { u.Role, u.Disabled = store.RoleAdmin, true })
	for _, role := range []store.Role{store.RoleMember, store.RoleViewer} {
		_, err := e.s.SetUserRole(e.ctx, root.ID, role, e.tick())
		wantMessage(t, err, fault.ErrFailedPrecondition, lastAdmin)
	}
	equal(t, "still", e.findUser(root.ID), root)

	// Demoting the disabled admin leaves the enabled one: allowed.
	_, err := e.s.SetUserRole(e.ctx, off.ID, store.RoleMember, e.tick())
	must(t, err)

	// Once another admin exists, the first can be demoted, and then the
	// other is the last.
	other, err := e.s.SetUserRole(e.ctx, e.user().ID, store.RoleAdmin, e.tick())
	must(t, err)
	_, err = e.s.SetUserRole(e.ctx, root.ID, store.RoleMember, e.tick())
	must(t, err)
	_, err = e.s.SetUserRole(e.ctx, other.ID, store.RoleMember, e.tick())
	wantMessage(t, err, fault.ErrFailedPrecondition, lastAdmin)
	equal(t, "last admin", e.findUser(other.ID), other)
}

func testSetUserDisabled(t *testing.T, e *env) {
	root, bob := e.admin(), e.user()
	bobLive, _ := e.session(bob)
	bobLive2, _ := e.session(bob)
	bobOld, _ := e.session(bob)
	revokedAt := e.tick()
	must(t, e.s.RevokeSession(e.ctx, bobOld.ID, revokedAt))
	rootSess, _ := e.session(root)

	now := e.tick()
	got, err := e.s.SetUserDisabled(e.ctx, bob.ID, true, now)
	must(t, err)
	disabled := updated(bob, now, func(u *store.User) { u.Disabled = true })
	equal(t, "disabled", got, disabled)
	equal(t, "stored", e.findUser(bob.ID), disabled)
	for _, s := range []*store.Session{bobLive, bobLive2} {
		equal(t, "revoked with the account", e.sessionRevokedAt(s.ID), ptr(micro(now)))
	}
	equal(t, "an earlier revocation stays", e.sessionRevokedAt(bobOld.ID), ptr(micro(revokedAt)))
	equal(t, "another account's session", e.sessionRevokedAt(rootSess.ID), (*time.Time)(nil))

	// Enabling does not bring the sessions back.
	now = e.tick()
	got, err = e.s.SetUserDisabled(e.ctx, bob.ID, false, now)
	must(t, err)
	equal(t, "enabled", got, updated(disabled, now, func(u *store.User) { u.Disabled = false }))
	equal(t, "still revoked", e.sessionRevokedAt(bobLive.ID), ptr(micro(disabled.UpdatedAt)))

	_, err = e.s.SetUserDisabled(e.ctx, uuid.NewString(), true, e.tick())
	wantMessage(t, err, fault.ErrNotFound, "user not found")
}

// sessionRevokedAt reads a session's RevokedAt.
func (e *env) sessionRevokedAt(id string) *time.Time {
	e.t.Helper()
	s, err := e.s.FindSession(e.ctx, id)
	if err != nil {
		e.t.Fatalf("find session %s: %v", id, err)
	}
	return s.RevokedAt
}

func testDisableLastAdmin(t *testing.T, e *env) {
	root := e.admin()
	sess, _ := e.session(root)
	_, err := e.s.SetUserDisabled(e.ctx, root.ID, true, e.tick())
	wantMessage(t, err, fault.ErrFailedPrecondition, lastAdmin)
	equal(t, "still enabled", e.findUser(root.ID), root)
	// The refusal rolled back the revocation too.
	equal(t, "session kept", e.sessionRevokedAt(sess.ID), (*time.Time)(nil))

	// With a second admin the first can be disabled; then the second is the
	// last, for disabling and demoting alike.
	second := e.admin()
	_, err = e.s.SetUserDisabled(e.ctx, root.ID, true, e.tick())
	must(t, err)
	_, err = e.s.SetUserDisabled(e.ctx, second.ID, true, e.tick())
	wantMessage(t, err, fault.ErrFailedPrecondition, lastAdmin)
	_, err = e.s.SetUserRole(e.ctx, second.ID, store.RoleMember, e.tick())
	wantMessage(t, err, fault.ErrFailedPrecondition, lastAdmin)
	// Disabling the disabled admin again, or demoting it, takes no admin away.
	_, err = e.s.SetUserDisabled(e.ctx, root.ID, true, e.tick())
	must(t, err)
	_, err = e.s.SetUserRole(e.ctx, root.ID, store.RoleMember, e.tick())
	must(t, err)
	// Re-enabling is always allowed.
	back, err := e.s.SetUserDisabled(e.ctx, root.ID, false, e.tick())
	must(t, err)
	equal(t, "re-enabled", back.Disabled, false)
}

func testConcurrentDemotions(t *testing.T, e *env) {
	// Two admins take each other's admin rights at once, by demoting or
	// disabling: exactly one may succeed. A race is not lost every time, so
	// it is run on several stores.
	const rounds = 10
	for round := range rounds {
		r := e
		if round > 0 {
			r = e.fresh()
		}
		warmUp(t, r, 2)
		a, b := r.admin(), r.admin()
		var (
			errs  [2]error
			start = make(chan struct{})
			wg    sync.WaitGroup
		)
		wg.Go(func() {
			<-start
			_, errs[0] = r.s.SetUserRole(r.ctx, a.ID, store.RoleMember, r.tick())
		})
		wg.Go(func() {
			<-start
			if round%2 == 0 {
				_, errs[1] = r.s.SetUserRole(r.ctx, b.ID, store.RoleMember, r.tick())
			} else {
				_, errs[1] = r.s.SetUserDisabled(r.ctx, b.ID, true, r.tick())
			}
		})
		close(start)
		wg.Wait()
		won := 0
		for _, err := range errs {
			switch {
			case err == nil:
				won++
			case errors.Is(err, fault.ErrFailedPrecondition):
			default:
				t.Fatalf("round %d: %v", round, err)
			}
		}
		if won != 1 {
			t.Fatalf("round %d: %d of 2 admins removing each other at once succeeded, want exactly 1", round, won)
		}
		admins, _ := r.listUsers(store.UserFilter{Role: store.RoleAdmin})
		enabled := 0
		for _, u := range admins {
			if !u.Disabled {
				enabled++
			}
		}
		if enabled != 1 {
			t.Fatalf("round %d: %d enabled admins left, want 1", round, enabled)
		}
	}
}
