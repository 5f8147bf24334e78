package task_test

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/berthhq/berth/internal/bus"
	"github.com/berthhq/berth/internal/event"
	"github.com/berthhq/berth/internal/sandbox"
	"github.com/berthhq/berth/internal/sandbox/process"
	"github.com/berthhq/berth/internal/store"
	"github.com/berthhq/berth/internal/task"
	"github.com/berthhq/berth/internal/testsvc"
)

// engine opens stores of one kind; each call is another pool on the same
// database, as another server instance would have.
type engine struct {
	name string
	// database returns an opener for stores on one new database.
	database func(t *testing.T) func(t *testing.T) *store.Store
}

var engines = []engine{
	{"sqlite", func(t *testing.T) func(t *testing.T) *store.Store {
		path := filepath.Join(t.TempDir(), "berth.db")
		return func(t *testing.T) *store.Store {
			s, err := store.Open(t.Context(), path)
			if err != nil {
				t.Fatalf("open sqlite: %v", err)
			}
			t.Cleanup(func() { _ = s.Close() })
			return s
		}
	}},
	{"postgres", func(t *testing.T) func(t *testing.T) *store.Store {
		url := testsvc.Postgres(t)
		return func(t *testing.T) *store.Store {
			s, err := store.OpenPostgres(t.Context(), url, 4)
			if err != nil {
				t.Fatalf("open postgres: %v", err)
			}
			t.Cleanup(func() { _ = s.Close() })
			return s
		}
	}},
}

// forEngine runs fn as a parallel subtest on each engine.
func forEngine(t *testing.T, fn func(t *testing.T, open func(t *testing.T) *store.Store)) {
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			t.Parallel()
			fn(t, e.database(t))
		})
	}
}

// fixture is a user and a workspace, whose directory is the project of
// every instance's container.
type fixture struct {
	user *store.User
	ws   *store.Workspace
}

func newFixture(t *testing.T, st *store.Store) *fixture {
	t.Helper()
	now := time.Now()
	u := &store.User{ID: uuid.NewString(), Email: "lease@example.com", Name: "Lease", CreatedAt: now, UpdatedAt: now}
	must(t, st.CreateUser(t.Context(), u))
	w := &store.Workspace{ID: uuid.NewString(), OwnerID: u.ID, Name: "leases", Path: t.TempDir(),
		Status: store.WorkspaceRunning, CreatedAt: now, UpdatedAt: now}
	must(t, st.CreateWorkspace(t.Context(), w))
	return &fixture{user: u, ws: w}
}

// queue stores a queued claude_chat task with the given prompt.
func (f *fixture) queue(t *testing.T, st *store.Store, prompt string) *store.TaskRecord {
	t.Helper()
	tr := &store.TaskRecord{ID: uuid.NewString(), WorkspaceID: f.ws.ID, CreatedBy: f.user.ID,
		Type: store.TaskClaudeChat, Status: store.TaskQueued, Priority: store.TaskPriorityMedium,
		Prompt: prompt, CreatedAt: time.Now()}
	must(t, st.CreateTaskRecord(t.Context(), tr))
	return tr
}

// workspaces is the runner's view of the workspace service: the fixture's
// workspace, always running in the instance's container.
type workspaces struct {
	st          *store.Store
	containerID string
}

func (w workspaces) EnsureRunning(ctx context.Context, id string) (*store.Workspace, error) {
	ws, err := w.st.FindWorkspace(ctx, id, store.Viewer{Admin: true})
	if err != nil {
		return nil, err
	}
	ws.ContainerID = w.containerID
	return ws, nil
}

func (workspaces) Hold(string) func() { return func() {} }

// instance is one server instance's runner: its own store pool, bus,
// metrics and process runtime, like a separate berth process.
type instance struct {
	st     *store.Store
	bus    *bus.Bus
	reg    *prometheus.Registry
	runner *task.Runner
	events *bus.Subscription // the fixture workspace's events
	cancel context.CancelFunc
	done   chan struct{}
}

// startInstance starts a runner on st for the fixture's workspace, after
// Recover when recover is true. It stops when the test ends.
func startInstance(t *testing.T, st *store.Store, f *fixture, cfg task.RunnerConfig, recover bool) *instance {
	t.Helper()
	in := newInstance(t, st, f, cfg, recover)
	in.start(t)
	return in
}

// newInstance makes a runner on st for the fixture's workspace and runs
// Recover when recover is true, as a server does before it serves; start
// runs it.
func newInstance(t *testing.T, st *store.Store, f *fixture, cfg task.RunnerConfig, recover bool) *instance {
	t.Helper()
	rt := process.New(process.WithKillGrace(100 * time.Millisecond))
	id, err := rt.Create(t.Context(), sandbox.Spec{WorkspaceID: f.ws.ID, Name: f.ws.Name, HostPath: f.ws.Path})
	must(t, err)
	must(t, rt.Start(t.Context(), id))
	t.Cleanup(func() { _ = rt.Remove(context.Background(), id) })

	cfg.ClaudePath = testsvc.FakeClaude(t)
	cfg.APIKey = "sk-ant-test-lease"
	cfg.DefaultTimeout = time.Minute
	cfg.ClaudeIdle = time.Minute
	in := &instance{st: st, bus: bus.New(), reg: prometheus.NewRegistry(), done: make(chan struct{})}
	in.events = in.bus.Subscribe("workspace:"+f.ws.ID, 10000)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	in.runner = task.NewRunner(st, rt, workspaces{st: st, containerID: id}, in.bus, in.reg, logger, time.Now, cfg)
	if recover {
		must(t, in.runner.Recover(t.Context()))
	}
	return in
}

// start runs the instance's runner until stop, or the end of the test.
func (in *instance) start(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	in.cancel = cancel
	go func() {
		defer close(in.done)
		in.runner.Run(ctx)
	}()
	t.Cleanup(in.stop)
}

// stop ends the instance's Run, as a shutdown does, and waits for it.
func (in *instance) stop() {
	in.cancel()
	<-in.done
}

// statuses drains the status events published so far: each task's states,
// in order.
func (in *instance) statuses() map[string][]store.TaskStatus {
	got := map[string][]store.TaskStatus{}
	events, _ := in.events.Take()
	for _, v := range events {
		if ev, ok := v.(event.TaskChanged); ok {
			got[ev.TaskID] = append(got[ev.TaskID], ev.Status)
		}
	}
	return got
}

// running is the instance's berth_tasks_running gauge.
func (in *instance) running(t *testing.T) float64 {
	t.Helper()
	families, err := in.reg.Gather()
	must(t, err)
	for _, f := range families {
		if f.GetName() == "berth_tasks_running" {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatal("no berth_tasks_running gauge")
	return 0
}

// find reads a task as an admin.
func find(t *testing.T, st *store.Store, id string) *store.TaskRecord {
	t.Helper()
	tr, _, err := st.FindTask(t.Context(), id, store.Viewer{Admin: true})
	must(t, err)
	return tr
}

// logs reads a task's whole stored log.
func logs(t *testing.T, st *store.Store, id string) []store.LogEntry {
	t.Helper()
	entries, err := st.ListTaskLogs(t.Context(), id, 0, 0)
	must(t, err)
	return entries
}

// errorCode is the code of a task's stored error document.
func errorCode(t *testing.T, tr *store.TaskRecord) string {
	t.Helper()
	if tr.Error == nil {
		t.Fatalf("task %s has no error document", tr.ID)
	}
	return tr.Error.Code
}

// eventually polls cond until it holds, failing the test after within(t),
// which derives from the test's deadline.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	wait := within(t)
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, wait)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
