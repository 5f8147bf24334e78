package workspace_test

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/berthhq/berth/internal/access"
	"github.com/berthhq/berth/internal/audit"
	"github.com/berthhq/berth/internal/bus"
	"github.com/berthhq/berth/internal/cache"
	"github.com/berthhq/berth/internal/fault"
	"github.com/berthhq/berth/internal/sandbox"
	"github.com/berthhq/berth/internal/store"
	"github.com/berthhq/berth/internal/workspace"
)

// addUser stores an account with the global role and returns it as a
// principal.
func (f *fixture) addUser(t *testing.T, role store.Role) access.Principal {
	t.Helper()
	id := uuid.NewString()
	u := &store.User{ID: id, Email: id + "@example.com", Role: role, CreatedAt: f.clock.t, UpdatedAt: f.clock.t}
	if err := f.st.CreateUser(t.Context(), u); err != nil {
		t.Fatal(err)
	}
	if u.Role != role {
		t.Fatalf("stored role %q, want %q", u.Role, role)
	}
	return access.Principal{UserID: id, Role: role}
}

// TestCreateManaged: without a path berth makes a directory for the
// workspace inside a root, owned by the workspace alone, with its stopped
// container.
func TestCreateManaged(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	f := newFixture(t, workspace.Containers{})
	member := f.addUser(t, store.RoleMember)
	w, err := f.svc.Create(ctx, member, workspace.Spec{Name: "  made  ", Tags: []string{"a", "a", "b"}})
	if err != nil {
		t.Fatal(err)
	}
	if !w.Managed || w.Name != "made" || w.Status != store.WorkspaceStopped || w.ContainerID == "" || w.AccessRole != store.WorkspaceOwner {
		t.Fatalf("created %+v", w)
	}
	if !slices.Equal(w.Tags, []string{"a", "b"}) {
		t.Errorf("tags %v, want [a b]", w.Tags)
	}
	if !strings.HasPrefix(w.Path, f.root+string(filepath.Separator)) {
		t.Errorf("path %s is not inside the root %s", w.Path, f.root)
	}
	if fi, err := os.Stat(w.Path); err != nil || !fi.IsDir() {
		t.Fatalf("the directory berth made: %v", err)
	}
	info, err := f.rt.Inspect(ctx, w.ContainerID)
	if err != nil || info.WorkspaceID != w.ID || info.State == sandbox.StateRunning {
		t.Fatalf("container %+v, %v", info, err)
	}
	if _, err := f.svc.Create(ctx, member, workspace.Spec{Name: " \t"}); !errors.Is(err, fault.ErrInvalid) {
		t.Errorf("blank name: %v, want invalid", err)
	}
}

// TestImportNeedsPermission: naming an existing host directory is for
// admins; a member is refused before anything is made.
func TestImportNeedsPermission(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	f := newFixture(t, workspace.Containers{})
	member := f.addUser(t, store.RoleMember)
	if _, err := f.svc.Create(ctx, member, workspace.Spec{Name: "imp", Path: f.project}); !errors.Is(err, fault.ErrPermissionDenied) {
		t.Fatalf("member import: %v, want permission denied", err)
	}
	list, n, err := f.svc.List(ctx, member, workspace.Query{})
	if err != nil || n != 0 || len(list) != 0 {
		t.Fatalf("after a refused import: %d workspaces, %v", n, err)
	}
	admin := f.addUser(t, store.RoleAdmin)
	w, err := f.svc.Create(ctx, admin, workspace.Spec{Name: "imp", Path: f.project})
	if err != nil {
		t.Fatal(err)
	}
	if w.Managed || w.Path != f.project {
		t.Fatalf("imported %+v", w)
	}
}

// TestOverlapRefused: no two workspaces share a directory or nest one in
// another, imported or made.
func TestOverlapRefused(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	f := newFixture(t, workspace.Containers{})
	admin := f.addUser(t, store.RoleAdmin)
	nested := filepath.Join(f.project, "inner")
	if err := os.MkdirAll(nested, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Create(ctx, admin, workspace.Spec{Name: "outer", Path: f.project}); err != nil {
		t.Fatal(err)
	}
	for name, path := range map[string]string{"same": f.project, "inside": nested} {
		if _, err := f.svc.Create(ctx, admin, workspace.Spec{Name: name, Path: path}); !errors.Is(err, fault.ErrConflict) {
			t.Errorf("%s: %v, want conflict", name, err)
		}
	}
	// Around: the root itself contains the project.
	if _, err := f.svc.Create(ctx, admin, workspace.Spec{Name: "around", Path: f.root}); err == nil {
		t.Error("a directory around another workspace's was accepted")
	}
	_, n, err := f.svc.List(ctx, admin, workspace.Query{})
	if err != nil || n != 1 {
		t.Fatalf("%d workspaces after the refusals, %v; want 1", n, err)
	}
}

// TestStartStop runs a workspace's container up and down on the process
// runtime: the record and the runtime agree at each step, and repeating a
// move is no error.
func TestStartStop(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	f := newFixture(t, workspace.Containers{StopTimeout: time.Second})
	p := f.owner
	w, err := f.svc.Create(ctx, p, workspace.Spec{Name: "run"})
	if err != nil {
		t.Fatal(err)
	}
	state := func(id string) sandbox.State {
		t.Helper()
		info, err := f.rt.Inspect(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return info.State
	}
	for range 2 {
		started, err := f.svc.Start(ctx, p, w.ID)
		if err != nil {
			t.Fatal(err)
		}
		if started.Status != store.WorkspaceRunning || started.ContainerID != w.ContainerID || state(w.ContainerID) != sandbox.StateRunning {
			t.Fatalf("after Start: %s in %s (runtime %s)", started.Status, started.ContainerID, state(w.ContainerID))
		}
	}
	for range 2 {
		stopped, err := f.svc.Stop(ctx, p, w.ID)
		if err != nil {
			t.Fatal(err)
		}
		if stopped.Status != store.WorkspaceStopped || state(w.ContainerID) == sandbox.StateRunning {
			t.Fatalf("after Stop: %s (runtime %s)", stopped.Status, state(w.ContainerID))
		}
	}
	// A container removed outside berth is replaced by the next start.
	if err := f.rt.Remove(ctx, w.ContainerID); err != nil {
		t.Fatal(err)
	}
	restarted, err := f.svc.Start(ctx, p, w.ID)
	if err != nil {
		t.Fatal(err)
	}
	if restarted.ContainerID == w.ContainerID || restarted.Status != store.WorkspaceRunning || state(restarted.ContainerID) != sandbox.StateRunning {
		t.Fatalf("restart after removal: %+v", restarted)
	}
}

// TestDeleteDirectory: delete_directory removes the directory berth made;
// an imported directory is never deleted (the request is refused and
// nothing is touched), and a plain delete keeps it.
func TestDeleteDirectory(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	f := newFixture(t, workspace.Containers{})
	p := f.owner
	made, err := f.svc.Create(ctx, p, workspace.Spec{Name: "made"})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(made.Path, "file"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.Delete(ctx, p, made.ID, true); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(made.Path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the made directory is still there: %v", err)
	}
	if _, err := f.svc.Get(ctx, p, made.ID); !errors.Is(err, fault.ErrNotFound) {
		t.Errorf("deleted workspace: %v, want not found", err)
	}
	if _, err := f.rt.Inspect(ctx, made.ContainerID); !errors.Is(err, sandbox.ErrNotFound) {
		t.Errorf("its container: %v, want removed", err)
	}

	imported, err := f.svc.Create(ctx, p, workspace.Spec{Name: "imported", Path: f.project})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.svc.Delete(ctx, p, imported.ID, true); !errors.Is(err, fault.ErrFailedPrecondition) {
		t.Fatalf("deleting an imported directory: %v, want failed precondition", err)
	}
	if _, err := f.svc.Get(ctx, p, imported.ID); err != nil {
		t.Fatalf("the refused delete touched the record: %v", err)
	}
	if err := f.svc.Delete(ctx, p, imported.ID, false); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(f.project); err != nil || !fi.IsDir() {
		t.Errorf("a plain delete removed the imported directory: %v", err)
	}
}

// TestActivityPruned: the idle bookkeeping keeps only running workspaces:
// an idle sweep drops the rest (ids touched but never started included),
// a stop or a delete drops its workspace at once, and with idle stop off
// nothing is recorded.
func TestActivityPruned(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	f := newFixture(t, workspace.Containers{IdleTimeout: time.Hour, StopTimeout: time.Second})
	svc, p := f.svc, f.owner
	running, err := svc.Create(ctx, p, workspace.Spec{Name: "running"})
	if err != nil {
		t.Fatal(err)
	}
	stopped, err := svc.Create(ctx, p, workspace.Spec{Name: "stopped"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Start(ctx, p, running.ID); err != nil {
		t.Fatal(err)
	}
	for range 100 {
		svc.Touch(uuid.NewString())
	}
	release := svc.Hold(stopped.ID)
	release()
	if n := len(svc.Tracked()); n < 102 {
		t.Fatalf("tracked %d before the sweep", n)
	}
	if idle, err := svc.StopIdle(ctx); err != nil || len(idle) != 0 {
		t.Fatalf("StopIdle: %v, %v", idle, err)
	}
	if got := svc.Tracked(); !slices.Equal(got, []string{running.ID}) {
		t.Fatalf("after the sweep tracked %d ids, want only the running workspace", len(got))
	}
	if _, err := svc.Stop(ctx, p, running.ID); err != nil {
		t.Fatal(err)
	}
	if got := svc.Tracked(); len(got) != 0 {
		t.Fatalf("after Stop tracked %v", got)
	}
	if _, err := svc.Start(ctx, p, running.ID); err != nil {
		t.Fatal(err)
	}
	if got := svc.Tracked(); !slices.Equal(got, []string{running.ID}) {
		t.Fatalf("after Start tracked %v", got)
	}
	if err := svc.Delete(ctx, p, running.ID, true); err != nil {
		t.Fatal(err)
	}
	if got := svc.Tracked(); len(got) != 0 {
		t.Fatalf("after Delete tracked %v", got)
	}

	off := newFixture(t, workspace.Containers{})
	w, err := off.svc.Create(ctx, off.owner, workspace.Spec{Name: "w"})
	if err != nil {
		t.Fatal(err)
	}
	off.svc.Touch(w.ID)
	off.svc.Hold(w.ID)()
	if got := off.svc.Tracked(); len(got) != 0 {
		t.Fatalf("idle stop off, yet tracked %v", got)
	}
}

// TestRecordsCache: with Deps.Records, Get reads through the cache, and a
// write through the service retires the cached copy before it returns.
func TestRecordsCache(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	f := newFixture(t, workspace.Containers{})
	records, err := cache.New("workspaces", cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	roots, err := workspace.NewRoots([]string{f.root})
	if err != nil {
		t.Fatal(err)
	}
	svc := workspace.NewService(workspace.Deps{
		Store: f.st, Roots: roots, Runtime: f.rt, Bus: bus.New(), Audit: audit.NewRecorder(f.st, logger, f.clock.now),
		Logger: logger, Now: f.clock.now, Containers: workspace.Containers{Image: "unused"}, Records: records,
	})
	w, err := svc.Create(ctx, f.owner, workspace.Spec{Name: "cached"})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := svc.Get(ctx, f.owner, w.ID); err != nil {
			t.Fatal(err)
		}
	}
	if hits, _ := records.Stats(); hits == 0 {
		t.Fatal("Get never read from Deps.Records")
	}
	d := "changed"
	if _, err := svc.Update(ctx, f.owner, w.ID, workspace.Change{Description: &d}); err != nil {
		t.Fatal(err)
	}
	got, err := svc.Get(ctx, f.owner, w.ID)
	if err != nil || got.Description != d {
		t.Fatalf("after Update Get returned %q, %v; want the new description", got.Description, err)
	}
}

// TestOwnedQuota: Deps.MaxOwned caps what a member may own; admins are
// exempt.
func TestOwnedQuota(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	f := newFixture(t, workspace.Containers{})
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	roots, err := workspace.NewRoots([]string{f.root})
	if err != nil {
		t.Fatal(err)
	}
	svc := workspace.NewService(workspace.Deps{
		Store: f.st, Roots: roots, Runtime: f.rt, Bus: bus.New(), Audit: audit.NewRecorder(f.st, logger, f.clock.now),
		Logger: logger, Now: f.clock.now, Containers: workspace.Containers{Image: "unused"}, MaxOwned: 1,
	})
	member := f.addUser(t, store.RoleMember)
	if _, err := svc.Create(ctx, member, workspace.Spec{Name: "one"}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Create(ctx, member, workspace.Spec{Name: "two"}); !errors.Is(err, fault.ErrResourceExhausted) {
		t.Fatalf("second workspace: %v, want resource exhausted", err)
	}
	for _, name := range []string{"a1", "a2"} {
		if _, err := svc.Create(ctx, f.owner, workspace.Spec{Name: name}); err != nil {
			t.Fatalf("admin %s: %v", name, err)
		}
	}
}
