package storetest

import (
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/berthhq/berth/internal/fault"
	"github.com/berthhq/berth/internal/store"
)

var identityTests = []test{
	{"EmailFromIdentity", testOIDCUserEmail},
	{"SharedDisplayEmail", testSharedDisplayEmail},
	{"DuplicateIdentity", testDuplicateIdentity},
	{"RoleDecision", testOIDCRoleDecision},
	{"ConcurrentFirstUsers", testConcurrentFirstOIDCUsers},
	{"MemberEmail", testOIDCMemberEmail},
}

// issuer is the OIDC provider the suite's identities come from.
const issuer = "https://id.example.com"

// oidcUser creates an account by OIDC login with the given display email and
// a new subject of issuer, the role left to the store unless mods set it.
func (e *env) oidcUser(email string, mods ...func(*store.User)) (*store.User, *store.Identity) {
	e.t.Helper()
	u, id := e.newOIDCUser(email, mods...)
	if err := e.s.CreateUserWithIdentity(e.ctx, u, id); err != nil {
		e.t.Fatalf("create user with identity %s: %v", email, err)
	}
	return u, id
}

// newOIDCUser returns an account and its identity, not stored.
func (e *env) newOIDCUser(email string, mods ...func(*store.User)) (*store.User, *store.Identity) {
	now := e.tick()
	uid := uuid.NewString()
	u := &store.User{ID: uid, Name: "OIDC " + uid[:8], CreatedAt: now, UpdatedAt: now}
	for _, m := range mods {
		m(u)
	}
	return u, &store.Identity{Issuer: issuer, Subject: "sub-" + uuid.NewString(), Email: email, CreatedAt: now}
}

func testOIDCUserEmail(t *testing.T, e *env) {
	u, id := e.newOIDCUser("Ada@Example.com")
	u.Email = "login@example.com" // ignored: an OIDC account has no login email
	must(t, e.s.CreateUserWithIdentity(e.ctx, u, id))
	equal(t, "email written back", u.Email, "ada@example.com")
	equal(t, "identity email", id.Email, "ada@example.com")
	equal(t, "identity user", id.UserID, u.ID)
	equal(t, "first account's role", u.Role, store.RoleAdmin)
	equal(t, "identity time", id.CreatedAt, micro(u.CreatedAt))

	byID, err := e.s.FindUserByID(e.ctx, u.ID)
	must(t, err)
	equal(t, "by id", byID, u)
	byIdentity, err := e.s.FindUserByIdentity(e.ctx, issuer, id.Subject)
	must(t, err)
	equal(t, "by identity", byIdentity, u)

	// Neither the display email nor the ignored one signs in with a password.
	for _, email := range []string{"ada@example.com", "login@example.com"} {
		_, err = e.s.FindUserByEmail(e.ctx, email)
		wantMessage(t, err, fault.ErrNotFound, "user not found")
	}

	// Each login refreshes the display email.
	must(t, e.s.SetIdentityEmail(e.ctx, issuer, id.Subject, "Ada.Lovelace@Example.com"))
	byID, err = e.s.FindUserByID(e.ctx, u.ID)
	must(t, err)
	equal(t, "refreshed email", byID.Email, "ada.lovelace@example.com")
	_, err = e.s.FindUserByEmail(e.ctx, "ada.lovelace@example.com")
	wantFault(t, err, fault.ErrNotFound)

	wantMessage(t, e.s.SetIdentityEmail(e.ctx, issuer, "sub-unknown", "x@example.com"), fault.ErrNotFound, "identity not found")
	wantFault(t, e.s.SetIdentityEmail(e.ctx, "https://other.example.com", id.Subject, "x@example.com"), fault.ErrNotFound)
	_, err = e.s.FindUserByIdentity(e.ctx, issuer, "sub-unknown")
	wantMessage(t, err, fault.ErrNotFound, "user not found")
	_, err = e.s.FindUserByIdentity(e.ctx, "https://other.example.com", id.Subject)
	wantFault(t, err, fault.ErrNotFound)
}

func testSharedDisplayEmail(t *testing.T, e *env) {
	pw := e.user(func(u *store.User) { u.Email = "grace@example.com" })
	a, _ := e.oidcUser("grace@example.com")
	b, _ := e.oidcUser("GRACE@example.com")
	equal(t, "display emails", []string{a.Email, b.Email}, []string{"grace@example.com", "grace@example.com"})
	got, err := e.s.FindUserByEmail(e.ctx, "grace@example.com")
	must(t, err)
	equal(t, "password login finds", got, pw)

	// The other way round: an OIDC account first, a password account with its
	// display email later.
	c, _ := e.oidcUser("hopper@example.com")
	d := e.user(func(u *store.User) { u.Email = "hopper@example.com" })
	got, err = e.s.FindUserByEmail(e.ctx, "hopper@example.com")
	must(t, err)
	equal(t, "password login finds", got, d)

	users, total, err := e.s.ListUsers(e.ctx, store.UserFilter{Search: "grace"})
	must(t, err)
	equal(t, "total", total, 3)
	equal(t, "accounts with the email", users, []*store.User{pw, a, b})
	got, err = e.s.FindUserByID(e.ctx, c.ID)
	must(t, err)
	equal(t, "oidc account", got, c)
}

func testDuplicateIdentity(t *testing.T, e *env) {
	_, id := e.oidcUser("ann@example.com")
	again, dupID := e.newOIDCUser("ann@example.com")
	dupID.Subject = id.Subject
	wantMessage(t, e.s.CreateUserWithIdentity(e.ctx, again, dupID), fault.ErrConflict, "this identity is already linked to an account")
	// The account of the refused identity was rolled back with it.
	_, err := e.s.FindUserByID(e.ctx, again.ID)
	wantFault(t, err, fault.ErrNotFound)
	n, err := e.s.CountUsers(e.ctx)
	must(t, err)
	equal(t, "users", n, 1)

	// The same subject at another provider is another identity.
	other, otherID := e.newOIDCUser("ann@example.com")
	otherID.Issuer, otherID.Subject = "https://other.example.com", id.Subject
	must(t, e.s.CreateUserWithIdentity(e.ctx, other, otherID))
	got, err := e.s.FindUserByIdentity(e.ctx, otherID.Issuer, id.Subject)
	must(t, err)
	equal(t, "other provider's account", got.ID, other.ID)
}

func testOIDCRoleDecision(t *testing.T, e *env) {
	first, _ := e.oidcUser("first@example.com")
	second, _ := e.oidcUser("second@example.com")
	viewer, _ := e.oidcUser("viewer@example.com", func(u *store.User) { u.Role = store.RoleViewer })
	equal(t, "roles", []store.Role{first.Role, second.Role, viewer.Role},
		[]store.Role{store.RoleAdmin, store.RoleMember, store.RoleViewer})
	// A password account after OIDC ones is not the first.
	equal(t, "password account's role", e.user(noRole).Role, store.RoleMember)
	for _, u := range []*store.User{first, second, viewer} {
		got, err := e.s.FindUserByID(e.ctx, u.ID)
		must(t, err)
		equal(t, "stored role", got.Role, u.Role)
	}
}

func testConcurrentFirstOIDCUsers(t *testing.T, e *env) {
	// Password and OIDC sign-ups racing on empty stores: one admin each time.
	const rounds, n = 5, 8
	for round := range rounds {
		r := e
		if round > 0 {
			r = e.fresh()
		}
		warmUp(t, r, n)
		users := make([]*store.User, n)
		errs := make([]error, n)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range n {
			if i%2 == 0 {
				u, id := r.newOIDCUser("racer@example.com")
				users[i] = u
				wg.Go(func() {
					<-start
					errs[i] = r.s.CreateUserWithIdentity(r.ctx, u, id)
				})
				continue
			}
			uid := uuid.NewString()
			now := r.tick()
			users[i] = &store.User{ID: uid, Email: "racer-" + uid[:8] + "@example.com", CreatedAt: now, UpdatedAt: now}
			wg.Go(func() {
				<-start
				errs[i] = r.s.CreateUser(r.ctx, users[i])
			})
		}
		close(start)
		wg.Wait()
		admins := 0
		for i, u := range users {
			must(t, errs[i])
			if u.Role == store.RoleAdmin {
				admins++
			}
		}
		if admins != 1 {
			t.Fatalf("round %d: %d of %d accounts created at once on an empty store became admin, want 1", round, admins, n)
		}
	}
}

func testOIDCMemberEmail(t *testing.T, e *env) {
	owner := e.user()
	w := e.workspace(owner)
	u, _ := e.oidcUser("Dee@Example.com")
	m := e.member(w, u, store.WorkspaceEditor)
	equal(t, "member email", m.Email, "dee@example.com")
	members, err := e.s.ListMembers(e.ctx, w.ID)
	must(t, err)
	equal(t, "members", members, []*store.Member{m})
}
