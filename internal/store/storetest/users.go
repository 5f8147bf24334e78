package storetest

import (
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/berthhq/berth/internal/fault"
	"github.com/berthhq/berth/internal/store"
)

var migrationTests = []test{
	{"Idempotent", testMigrateIdempotent},
}

var userTests = []test{
	{"FirstIsAdmin", testFirstUserIsAdmin},
	{"FirstWithRoleKeepsIt", testFirstUserWithRole},
	{"ConcurrentFirstUsers", testConcurrentFirstUsers},
	{"ClosedRegistration", testClosedRegistration},
	{"ConcurrentClosedRegistration", testConcurrentClosedRegistration},
	{"DuplicateEmail", testDuplicateEmail},
	{"Find", testFindUser},
	{"LastLogin", testUserLastLogin},
}

func testMigrateIdempotent(t *testing.T, e *env) {
	v, err := e.s.SchemaVersion(e.ctx)
	must(t, err)
	if v < 1 {
		t.Fatalf("schema version = %d on a migrated store, want at least 1", v)
	}
	for range 2 {
		n, err := e.s.Migrate(e.ctx)
		must(t, err)
		if n != 0 {
			t.Fatalf("Migrate on a migrated store applied %d migrations, want 0", n)
		}
	}
	again, err := e.s.SchemaVersion(e.ctx)
	must(t, err)
	if again != v {
		t.Fatalf("schema version = %d after Migrate, was %d", again, v)
	}
	must(t, e.s.Ping(e.ctx))
}

// noRole leaves the role for the store to decide.
func noRole(u *store.User) { u.Role = "" }

func testFirstUserIsAdmin(t *testing.T, e *env) {
	n, err := e.s.CountUsers(e.ctx)
	must(t, err)
	if n != 0 {
		t.Fatalf("CountUsers on an empty store = %d", n)
	}
	first := e.user(noRole)
	second := e.user(noRole)
	third := e.user(noRole)
	viewer := e.user(func(u *store.User) { u.Role = store.RoleViewer })
	equal(t, "first role", first.Role, store.RoleAdmin)
	equal(t, "second role", second.Role, store.RoleMember)
	equal(t, "third role", third.Role, store.RoleMember)
	equal(t, "explicit role", viewer.Role, store.RoleViewer)
	for _, u := range []*store.User{first, second, third, viewer} {
		got, err := e.s.FindUserByID(e.ctx, u.ID)
		must(t, err)
		equal(t, "stored role of "+u.Email, got.Role, u.Role)
	}
	n, err = e.s.CountUsers(e.ctx)
	must(t, err)
	equal(t, "users", n, 4)
}

func testFirstUserWithRole(t *testing.T, e *env) {
	first := e.user(func(u *store.User) { u.Role = store.RoleViewer })
	equal(t, "first role", first.Role, store.RoleViewer)
	// An account exists, so the next undecided one is a member.
	equal(t, "second role", e.user(noRole).Role, store.RoleMember)
}

func testConcurrentFirstUsers(t *testing.T, e *env) {
	// A race is not lost every time, so it is run on several empty stores.
	const rounds, n = 10, 8
	for round := range rounds {
		r := e
		if round > 0 {
			r = e.fresh()
		}
		r.raceFirstUsers(t, round, n)
	}
}

// raceFirstUsers creates n users at once on the env's empty store, leaving
// each role to the store, and checks exactly one became admin.
func (e *env) raceFirstUsers(t *testing.T, round, n int) {
	t.Helper()
	warmUp(t, e, n)
	users := make([]*store.User, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		id := uuid.NewString()
		now := e.tick()
		users[i] = &store.User{ID: id, Email: "racer-" + id[:8] + "@example.com", Name: "Racer", CreatedAt: now, UpdatedAt: now}
		wg.Go(func() {
			<-start
			errs[i] = e.s.CreateUser(e.ctx, users[i])
		})
	}
	close(start)
	wg.Wait()
	admins := 0
	for i, u := range users {
		must(t, errs[i])
		stored, err := e.s.FindUserByID(e.ctx, u.ID)
		must(t, err)
		equal(t, "stored role", stored.Role, u.Role)
		switch u.Role {
		case store.RoleAdmin:
			admins++
		case store.RoleMember:
		default:
			t.Fatalf("round %d: user %d has role %q", round, i, u.Role)
		}
	}
	if admins != 1 {
		t.Fatalf("round %d: %d of %d users created at once on an empty store became admin, want exactly 1", round, admins, n)
	}
}

func testClosedRegistration(t *testing.T, e *env) {
	now := e.tick()
	first := &store.User{ID: uuid.NewString(), Email: "first@example.com", Name: "First", CreatedAt: now, UpdatedAt: now}
	must(t, e.s.CreateFirstUser(e.ctx, first))
	equal(t, "first role", first.Role, store.RoleAdmin)
	second := &store.User{ID: uuid.NewString(), Email: "second@example.com", Name: "Second", CreatedAt: now, UpdatedAt: now}
	wantMessage(t, e.s.CreateFirstUser(e.ctx, second), fault.ErrPermissionDenied,
		"registration is closed on this server; ask an administrator for an account")
	_, err := e.s.FindUserByID(e.ctx, second.ID)
	wantFault(t, err, fault.ErrNotFound)
	// The closed rule is only CreateFirstUser's: CreateUser (an admin
	// adding an account) still works.
	must(t, e.s.CreateUser(e.ctx, second))
	equal(t, "second role", second.Role, store.RoleMember)
}

func testConcurrentClosedRegistration(t *testing.T, e *env) {
	// 20 registrations at once on an empty store with registration closed:
	// exactly one account, the admin. Run on several empty stores, as a
	// race is not lost every time.
	const rounds, n = 5, 20
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
			id := uuid.NewString()
			now := r.tick()
			users[i] = &store.User{ID: id, Email: "closed-" + id[:8] + "@example.com", Name: "Racer", CreatedAt: now, UpdatedAt: now}
			wg.Go(func() {
				<-start
				errs[i] = r.s.CreateFirstUser(r.ctx, users[i])
			})
		}
		close(start)
		wg.Wait()
		created := 0
		for i, err := range errs {
			if err == nil {
				created++
				equal(t, "role of the one account", users[i].Role, store.RoleAdmin)
				continue
			}
			wantFault(t, err, fault.ErrPermissionDenied)
		}
		count, err := r.s.CountUsers(r.ctx)
		must(t, err)
		if created != 1 || count != 1 {
			t.Fatalf("round %d: %d of %d registrations succeeded and %d accounts exist, want exactly 1", round, created, n, count)
		}
	}
}

func testDuplicateEmail(t *testing.T, e *env) {
	u := e.user(func(u *store.User) { u.Email = "Ada@Example.com" })
	equal(t, "stored email", u.Email, "ada@example.com")
	for _, email := range []string{"ada@example.com", "ADA@EXAMPLE.COM", "Ada@Example.com"} {
		now := e.tick()
		dup := &store.User{ID: uuid.NewString(), Email: email, Name: "Other", CreatedAt: now, UpdatedAt: now}
		wantMessage(t, e.s.CreateUser(e.ctx, dup), fault.ErrConflict, "an account with this email already exists")
		_, err := e.s.FindUserByID(e.ctx, dup.ID)
		wantFault(t, err, fault.ErrNotFound)
	}
}

func testFindUser(t *testing.T, e *env) {
	u := e.user(func(u *store.User) {
		u.Email = "Grace@Example.com"
		u.Disabled = true
	})
	// The record CreateUser leaves is the one reads return.
	byID, err := e.s.FindUserByID(e.ctx, u.ID)
	must(t, err)
	equal(t, "by id", byID, u)
	if byID.CreatedAt != micro(byID.CreatedAt) || byID.CreatedAt.Location().String() != "UTC" {
		t.Fatalf("CreatedAt %v is not UTC at microsecond precision", byID.CreatedAt)
	}
	for _, email := range []string{"grace@example.com", "GRACE@example.COM"} {
		byEmail, err := e.s.FindUserByEmail(e.ctx, email)
		must(t, err)
		equal(t, "by email "+email, byEmail, u)
	}
	plain := e.user()
	got, err := e.s.FindUserByID(e.ctx, plain.ID)
	must(t, err)
	equal(t, "plain", got, plain)

	_, err = e.s.FindUserByID(e.ctx, uuid.NewString())
	wantMessage(t, err, fault.ErrNotFound, "user not found")
	_, err = e.s.FindUserByEmail(e.ctx, "nobody@example.com")
	wantMessage(t, err, fault.ErrNotFound, "user not found")
}

func testUserLastLogin(t *testing.T, e *env) {
	u := e.user()
	if u.LastLoginAt != nil {
		t.Fatalf("new user has LastLoginAt %v", u.LastLoginAt)
	}
	at := e.tick()
	must(t, e.s.SetUserLastLogin(e.ctx, u.ID, at))
	got, err := e.s.FindUserByID(e.ctx, u.ID)
	must(t, err)
	if got.LastLoginAt == nil || !got.LastLoginAt.Equal(micro(at)) {
		t.Fatalf("LastLoginAt = %v, want %v", got.LastLoginAt, micro(at))
	}
	equal(t, "UpdatedAt", got.UpdatedAt, u.UpdatedAt)
	wantFault(t, e.s.SetUserLastLogin(e.ctx, uuid.NewString(), at), fault.ErrNotFound)
}

// warmUp reads from n goroutines at once, so that a store with a connection
// pool has its connections open before a race: otherwise the first racer can
// finish while the others still connect, and the race never happens.
func warmUp(t *testing.T, e *env, n int) {
	t.Helper()
	start := make(chan struct{})
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			_, errs[i] = e.s.CountStats(e.ctx, store.Viewer{}, true)
		})
	}
	close(start)
	wg.Wait()
	for _, err := range errs {
		must(t, err)
	}
}
