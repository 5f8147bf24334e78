package workspace_test

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/berthhq/berth/internal/access"
	"github.com/berthhq/berth/internal/audit"
	"github.com/berthhq/berth/internal/bus"
	"github.com/berthhq/berth/internal/sandbox/process"
	"github.com/berthhq/berth/internal/store"
	"github.com/berthhq/berth/internal/workspace"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

// fixture is a workspace service on a fresh SQLite store and the process
// runtime, with one owner account and a project directory "p" in its root.
type fixture struct {
	svc     *workspace.Service
	st      *store.Store
	rt      *process.Runtime
	clock   *clock
	owner   access.Principal
	root    string
	project string
	dbPath  string
}

func newFixture(t *testing.T, containers workspace.Containers) *fixture {
	t.Helper()
	ctx := t.Context()
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "berth.db")
	st, err := store.Open(ctx, dbPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	roots, err := workspace.NewRoots([]string{filepath.Join(dir, "ws")})
	if err != nil {
		t.Fatal(err)
	}
	project := filepath.Join(roots[0], "p")
	if err := os.MkdirAll(project, 0o755); err != nil {
		t.Fatal(err)
	}
	c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	containers.Image, containers.Network = "unused", "none"
	rt := process.New()
	svc := workspace.NewService(workspace.Deps{
		Store: st, Roots: roots, Runtime: rt, Bus: bus.New(),
		Audit: audit.NewRecorder(st, logger, c.now), Logger: logger, Now: c.now, Containers: containers,
	})
	owner := &store.User{ID: "11111111-1111-4111-8111-111111111111", Email: "o@example.com", CreatedAt: c.t, UpdatedAt: c.t}
	if err := st.CreateUser(ctx, owner); err != nil {
		t.Fatal(err)
	}
	return &fixture{svc: svc, st: st, rt: rt, clock: c, owner: access.Principal{UserID: owner.ID, Role: owner.Role}, root: roots[0], project: project, dbPath: dbPath}
}

// TestIdleStopRespectsHolds: a running workspace is stopped once idle for
// the timeout, but never while something holds it (a running task, an open
// stream), and API activity restarts the count. This runs on the process
// runtime; the Docker e2e test shows the same stop on a real container.
func TestIdleStopRespectsHolds(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	f := newFixture(t, workspace.Containers{IdleTimeout: time.Minute, StopTimeout: time.Second})
	svc, c, p := f.svc, f.clock, f.owner
	w, err := svc.Create(ctx, p, workspace.Spec{Name: "idle", Path: f.project})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Start(ctx, p, w.ID); err != nil {
		t.Fatal(err)
	}
	stopIdle := func() []string {
		t.Helper()
		stopped, err := svc.StopIdle(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return stopped
	}

	release := svc.Hold(w.ID)
	c.t = c.t.Add(10 * time.Minute)
	if got := stopIdle(); len(got) != 0 {
		t.Fatalf("a held workspace was stopped: %v", got)
	}
	release()
	release() // idempotent
	c.t = c.t.Add(30 * time.Second)
	if got := stopIdle(); len(got) != 0 {
		t.Fatalf("stopped 30s after release: %v", got)
	}
	if _, err := svc.Get(ctx, p, w.ID); err != nil { // activity restarts the count
		t.Fatal(err)
	}
	c.t = c.t.Add(45 * time.Second)
	if got := stopIdle(); len(got) != 0 {
		t.Fatalf("stopped 45s after activity: %v", got)
	}
	c.t = c.t.Add(30 * time.Second)
	if got := stopIdle(); !slices.Equal(got, []string{w.ID}) {
		t.Fatalf("idle workspace not stopped: %v", got)
	}
	got, err := svc.Get(ctx, p, w.ID)
	if err != nil || got.Status != store.WorkspaceStopped {
		t.Fatalf("after idle stop: %v %v", got, err)
	}
}

// TestDiskUsageMeasured: MeasureDisk records a workspace directory's size,
// rounded up to MiB, and reads return it without walking the directory.
func TestDiskUsageMeasured(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	f := newFixture(t, workspace.Containers{})
	svc, p, project := f.svc, f.owner, f.project
	if err := os.MkdirAll(filepath.Join(project, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, size := range map[string]int{"a.bin": 3 << 20, "sub/b.bin": 512 << 10} {
		if err := os.WriteFile(filepath.Join(project, name), make([]byte, size), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	w, err := svc.Create(ctx, p, workspace.Spec{Name: "disk", Path: project})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.MeasureDisk(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := svc.Get(ctx, p, w.ID)
	if err != nil || got.DiskUsageMB != 4 { // 3.5 MiB, rounded up
		t.Fatalf("disk usage = %d MiB, %v", got.DiskUsageMB, err)
	}
}
