// Package storetest is the conformance suite every store.Store passes,
// whatever engine is behind it: the SQLite tests run it on a fresh database
// file, the Postgres tests run it on a fresh database. It works only through
// the Store's exported methods, so it holds every engine to one behaviour.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/berthhq/berth/internal/fault"
	"github.com/berthhq/berth/internal/store"
	"github.com/berthhq/berth/internal/taskdoc"
)

// Run runs the suite. open must return a new, empty, migrated store on each
// call and close it through t.Cleanup. Every subtest opens its own store, so
// they all run in parallel.
func Run(t *testing.T, open func(t *testing.T) *store.Store) {
	groups := []struct {
		name  string
		tests []test
	}{
		{"Migrations", migrationTests},
		{"Users", userTests},
		{"UserAdmin", userAdminTests},
		{"Identities", identityTests},
		{"Sessions", sessionTests},
		{"BrowserSessions", browserSessionTests},
		{"APIKeys", apiKeyTests},
		{"StreamTickets", streamTicketTests},
		{"Audit", auditTests},
		{"Workspaces", workspaceTests},
		{"Members", memberTests},
		{"Stats", statsTests},
		{"Tasks", taskTests},
		{"TaskReads", taskReadTests},
		{"TaskQueue", taskQueueTests},
		{"TaskLogs", taskLogTests},
		{"Quotas", quotaTests},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			t.Parallel()
			for _, tt := range g.tests {
				t.Run(tt.name, func(t *testing.T) {
					t.Parallel()
					tt.fn(t, newEnv(t, open))
				})
			}
		})
	}
}

// test is one subtest of the suite, given a fresh store.
type test struct {
	name string
	fn   func(t *testing.T, e *env)
}

// env is one subtest's store with a clock and factories for test data.
type env struct {
	t    *testing.T
	s    *store.Store
	ctx  context.Context
	n    atomic.Int64
	open func(t *testing.T) *store.Store
}

// epoch is the suite's clock start. Its nanoseconds check that times come
// back at the stored precision, microseconds, in UTC.
var epoch = time.Date(2026, time.March, 1, 12, 0, 0, 123456789, time.UTC)

func newEnv(t *testing.T, open func(t *testing.T) *store.Store) *env {
	return &env{t: t, s: open(t), ctx: t.Context(), open: open}
}

// fresh returns an env on another new, empty store, sharing this one's clock
// position, for tests that need several empty stores.
func (e *env) fresh() *env {
	f := &env{t: e.t, s: e.open(e.t), ctx: e.ctx, open: e.open}
	f.n.Store(e.n.Load())
	return f
}

// tick returns the next instant of the test's clock, one second after the
// previous one, so records made one after another sort by creation.
func (e *env) tick() time.Time {
	return epoch.Add(time.Duration(e.n.Add(1)) * time.Second)
}

// micro is t as the store gives it back.
func micro(t time.Time) time.Time {
	return t.Truncate(time.Microsecond).UTC()
}

// user creates an account with defaults — a member with a unique email — as
// changed by mods.
func (e *env) user(mods ...func(*store.User)) *store.User {
	e.t.Helper()
	now := e.tick()
	id := uuid.NewString()
	// #nosec G101 -- G101: test data, not a credential
	u := &store.User{
		ID:           id,
		Email:        "user-" + id[:8] + "@example.com",
		Name:         "User " + id[:8],
		PasswordHash: "$argon2id$v=19$m=65536,t=1,p=4$c2FsdA$aGFzaA",
		Role:         store.RoleMember,
		CreatedAt:    now,
		UpdatedAt:    now,
	}
	for _, m := range mods {
		m(u)
	}
	if err := e.s.CreateUser(e.ctx, u); err != nil {
		e.t.Fatalf("create user %s: %v", u.Email, err)
	}
	return u
}

// admin creates an admin account.
func (e *env) admin() *store.User {
	e.t.Helper()
	return e.user(func(u *store.User) { u.Role = store.RoleAdmin })
}

// workspace creates a workspace of owner with defaults, as changed by mods.
func (e *env) workspace(owner *store.User, mods ...func(*store.Workspace)) *store.Workspace {
	e.t.Helper()
	w := e.newWorkspace(owner, mods...)
	if err := e.s.CreateWorkspace(e.ctx, w); err != nil {
		e.t.Fatalf("create workspace %s: %v", w.Name, err)
	}
	return w
}

// newWorkspace returns a workspace with defaults, not stored.
func (e *env) newWorkspace(owner *store.User, mods ...func(*store.Workspace)) *store.Workspace {
	now := e.tick()
	id := uuid.NewString()
	name := "ws-" + id[:8]
	w := &store.Workspace{
		ID:          id,
		OwnerID:     owner.ID,
		Name:        name,
		Description: "the " + name + " project",
		Path:        "/srv/berth/" + name,
		Status:      store.WorkspaceStopped,
		GitURL:      "https://git.example.com/" + name + ".git",
		Branch:      "main",
		Tags:        []string{"go", "api"},
		Metadata:    map[string]string{"team": "core"},
		Image:       "berth/base:latest",
		MemoryMB:    2048,
		CPUs:        1.5,
		Pids:        256,
		CreatedAt:   now,
		UpdatedAt:   now,
	}
	for _, m := range mods {
		m(w)
	}
	return w
}

// named sets a workspace's name.
func named(name string) func(*store.Workspace) {
	return func(w *store.Workspace) { w.Name = name }
}

// member shares w with u in the given role.
func (e *env) member(w *store.Workspace, u *store.User, role store.WorkspaceRole) *store.Member {
	e.t.Helper()
	m := &store.Member{WorkspaceID: w.ID, UserID: u.ID, Role: role, CreatedAt: e.tick()}
	if err := e.s.AddMember(e.ctx, m); err != nil {
		e.t.Fatalf("add member %s to %s: %v", u.Email, w.Name, err)
	}
	return m
}

// task creates a task in w with the given status, as changed by mods.
func (e *env) task(w *store.Workspace, status store.TaskStatus, mods ...func(*store.TaskRecord)) *store.TaskRecord {
	e.t.Helper()
	now := e.tick()
	tr := &store.TaskRecord{
		ID:          uuid.NewString(),
		WorkspaceID: w.ID,
		CreatedBy:   w.OwnerID,
		Type:        store.TaskClaudeChat,
		Status:      status,
		Priority:    store.TaskPriorityMedium,
		Prompt:      "add a test",
		Config:      &taskdoc.Config{MaxTurns: 5},
		CreatedAt:   now,
	}
	if status != store.TaskQueued {
		tr.StartedAt = &now
	}
	for _, m := range mods {
		m(tr)
	}
	if err := e.s.CreateTaskRecord(e.ctx, tr); err != nil {
		e.t.Fatalf("create task in %s: %v", w.Name, err)
	}
	return tr
}

// costing sets a task's cost.
func costing(usd float64) func(*store.TaskRecord) {
	return func(tr *store.TaskRecord) { tr.CostUSD = usd }
}

// viewerOf is how u reads.
func viewerOf(u *store.User) store.Viewer {
	return store.Viewer{UserID: u.ID, Admin: u.Role == store.RoleAdmin}
}

// wantFault fails the test unless err is a fault of the given kind.
func wantFault(t *testing.T, err, kind error) {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Fatalf("error = %v, want a %v fault", err, kind)
	}
	if _, ok := fault.Message(err); !ok {
		t.Fatalf("error %v is %v but not a fault with a message", err, kind)
	}
}

// wantMessage fails the test unless err is a fault of the given kind with
// exactly the given public message.
func wantMessage(t *testing.T, err, kind error, msg string) {
	t.Helper()
	wantFault(t, err, kind)
	if got, _ := fault.Message(err); got != msg {
		t.Fatalf("message = %q, want %q", got, msg)
	}
}

// must fails the test on an error.
func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// equal fails the test unless got and want are deeply equal.
func equal[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\n got  %s\n want %s", what, show(got), show(want))
	}
}

// show prints a value, following one level of pointers, also in each
// element of a slice.
func show(v any) string {
	rv := reflect.ValueOf(v)
	switch {
	case rv.Kind() == reflect.Pointer && !rv.IsNil():
		return fmt.Sprintf("&%+v", rv.Elem().Interface())
	case rv.Kind() == reflect.Slice && rv.Type().Elem().Kind() == reflect.Pointer:
		parts := make([]string, rv.Len())
		for i := range parts {
			parts[i] = show(rv.Index(i).Interface())
		}
		return "[" + strings.Join(parts, "\n       ") + "]"
	}
	return fmt.Sprintf("%+v", v)
}

// ptr returns a pointer to v.
func ptr[T any](v T) *T { return &v }
