package task_test

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/berthhq/berth/internal/bus"
	"github.com/berthhq/berth/internal/sandbox"
	"github.com/berthhq/berth/internal/sandbox/process"
	"github.com/berthhq/berth/internal/store"
	"github.com/berthhq/berth/internal/task"
	"github.com/berthhq/berth/internal/testsvc"
)

// panicking is the real process runtime, except that an exec whose argv
// mentions trigger panics, as a bug in a runtime adapter would: the task
// runner's contract is that such a panic ends the one task.
type panicking struct {
	*process.Runtime
	trigger string
}

func (p panicking) Exec(ctx context.Context, id string, spec sandbox.ExecSpec) (int, error) {
	if strings.Contains(strings.Join(spec.Argv, " "), p.trigger) {
		panic("a bug in the runtime")
	}
	return p.Runtime.Exec(ctx, id, spec)
}

// panicRig is a runner on SQLite and the process runtime (wrapped to
// panic on execs that mention "[panic]"), with its registry and its log.
type panicRig struct {
	st   *store.Store
	f    *fixture
	reg  *prometheus.Registry
	logs *syncBuffer
}

// newPanicRig starts the runner, with hook as its fault hook (nil for
// none); it stops when the test ends.
func newPanicRig(t *testing.T, lease time.Duration, hook func(where, taskID string)) *panicRig {
	t.Helper()
	st, err := store.Open(t.Context(), filepath.Join(t.TempDir(), "berth.db"))
	must(t, err)
	t.Cleanup(func() { _ = st.Close() })
	rig := &panicRig{st: st, f: newFixture(t, st), reg: prometheus.NewRegistry(), logs: &syncBuffer{}}

	rt := process.New(process.WithKillGrace(100 * time.Millisecond))
	id, err := rt.Create(t.Context(), sandbox.Spec{WorkspaceID: rig.f.ws.ID, Name: rig.f.ws.Name, HostPath: rig.f.ws.Path})
	must(t, err)
	must(t, rt.Start(t.Context(), id))
	t.Cleanup(func() { _ = rt.Remove(context.Background(), id) })

	logger := slog.New(slog.NewJSONHandler(rig.logs, nil))
	runner := task.NewRunner(st, panicking{Runtime: rt, trigger: "[panic]"}, workspaces{st: st, containerID: id}, bus.New(), rig.reg, logger, time.Now, task.RunnerConfig{
		MaxRunning: 2, MaxPerWorkspace: 1, DefaultTimeout: time.Minute, ClaudeIdle: time.Minute,
		ClaudePath: testsvc.FakeClaude(t), APIKey: "sk-ant-test-panic", Lease: lease,
	})
	if hook != nil {
		task.SetFaultHook(runner, hook)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		runner.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return rig
}

// wait polls a task until it ends.
func (rig *panicRig) wait(t *testing.T, id string) *store.TaskRecord {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	if d, ok := t.Deadline(); ok {
		deadline = d.Add(-10 * time.Second)
	}
	for {
		tr := find(t, rig.st, id)
		if tr.Status.Terminal() {
			return tr
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s still %s", id, tr.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// panics returns berth_panics_total by where.
func (rig *panicRig) panics(t *testing.T) map[string]float64 {
	t.Helper()
	families, err := rig.reg.Gather()
	must(t, err)
	out := map[string]float64{}
	for _, fam := range families {
		if fam.GetName() == "berth_panics_total" {
			for _, m := range fam.GetMetric() {
				out[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
			}
		}
	}
	return out
}

// wantInternal checks that task id failed with code INTERNAL, no cost,
// and a log that ends with the reason, and that the panic was logged at
// ERROR with the task's id and what panicked.
func (rig *panicRig) wantInternal(t *testing.T, got *store.TaskRecord, panicked string) {
	t.Helper()
	var terr task.Failure
	if got.Error != nil {
		terr = *got.Error
	}
	if got.Status != store.TaskFailed || terr.Code != "INTERNAL" || got.CostUSD != 0 || got.Result != nil {
		t.Errorf("panicked task: %s, error %+v, result %+v", got.Status, got.Error, got.Result)
	}
	lines, err := rig.st.ListTaskLogs(t.Context(), got.ID, 0, 1000)
	must(t, err)
	if n := len(lines); n == 0 || !strings.Contains(lines[n-1].Message, "berth failed while running the task") {
		t.Errorf("the panicked task's log does not end with the reason: %+v", lines)
	}
	out := rig.logs.String()
	if !strings.Contains(out, `"level":"ERROR"`) || !strings.Contains(out, `"task":"`+got.ID+`"`) || !strings.Contains(out, panicked) {
		t.Errorf("the panic was not logged with the task id:\n%s", out)
	}
}

// TestPanicEndsOneTask: a panic in a task's run fails that task with code
// INTERNAL, its log closed with the reason, is counted in
// berth_panics_total{where="runner"} and logged at ERROR with the task's
// id; the runner (and the process) go on and run the next task. The panic
// comes from the runtime, through the Runtime interface the runner
// declares: no hook.
func TestPanicEndsOneTask(t *testing.T) {
	t.Parallel()
	rig := newPanicRig(t, 0, nil)
	bad := rig.f.queue(t, rig.st, "please [panic]")
	good := rig.f.queue(t, rig.st, "after the panic")
	rig.wantInternal(t, rig.wait(t, bad.ID), "a bug in the runtime")
	if ok := rig.wait(t, good.ID); ok.Status != store.TaskSucceeded {
		t.Errorf("the task after the panic: %s, %s", ok.Status, ok.Error)
	}
	if p := rig.panics(t); p["runner"] != 1 || p["agent-parser"] != 0 || p["heartbeat"] != 0 {
		t.Errorf("berth_panics_total = %v, want runner 1 and the others 0", p)
	}
}

// TestPanicInParserEndsOneTask: a panic while the CLI's output is parsed
// (in the parser's goroutine; provoked through the test-only fault hook,
// as no stream-json line reaches a panic) stops that CLI and fails its
// task INTERNAL; the next task runs.
func TestPanicInParserEndsOneTask(t *testing.T) {
	t.Parallel()
	var badID atomicString
	rig := newPanicRig(t, 0, func(where, taskID string) {
		if where == "agent-parser" && taskID == badID.Load() {
			panic("a bug in the parser")
		}
	})
	bad := rig.f.queue(t, rig.st, "a long run [slow]")
	badID.Store(bad.ID)
	good := rig.f.queue(t, rig.st, "after the panic")
	got := rig.wait(t, bad.ID)
	rig.wantInternal(t, got, "a bug in the parser")
	// The CLI was stopped: it runs for seconds with [slow], and no turn
	// after the first line was logged.
	for _, l := range mustLogs(t, rig.st, bad.ID) {
		if l.Source == store.LogAssistant {
			t.Errorf("the agent's output was still logged after the panic: %q", l.Message)
		}
	}
	if ok := rig.wait(t, good.ID); ok.Status != store.TaskSucceeded {
		t.Errorf("the task after the panic: %s, %s", ok.Status, ok.Error)
	}
	if p := rig.panics(t); p["agent-parser"] != 1 || p["runner"] != 0 {
		t.Errorf("berth_panics_total = %v, want agent-parser 1", p)
	}
}

// TestPanicInHeartbeat: a panic in the lease heartbeat is counted and
// logged, and the heartbeat beats on; a task runs to success meanwhile.
func TestPanicInHeartbeat(t *testing.T) {
	t.Parallel()
	var beats atomic.Int64
	rig := newPanicRig(t, 300*time.Millisecond, func(where, _ string) {
		if where == "heartbeat" && beats.Add(1) <= 2 {
			panic("a bug in the heartbeat")
		}
	})
	tr := rig.f.queue(t, rig.st, "while the heartbeat panics [slow]")
	if got := rig.wait(t, tr.ID); got.Status != store.TaskSucceeded {
		t.Errorf("task = %s, %s", got.Status, got.Error)
	}
	deadline := time.Now().Add(within(t))
	for beats.Load() < 4 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := beats.Load(); n < 4 {
		t.Errorf("the heartbeat stopped after its panics: %d beats", n)
	}
	if p := rig.panics(t); p["heartbeat"] != 2 {
		t.Errorf("berth_panics_total = %v, want heartbeat 2", p)
	}
	if out := rig.logs.String(); !strings.Contains(out, "a bug in the heartbeat") {
		t.Errorf("the heartbeat's panic was not logged:\n%s", out)
	}
}

// atomicString is a string read by the runner's goroutines.
type atomicString struct{ v atomic.Value }

func (a *atomicString) Store(s string) { a.v.Store(s) }
func (a *atomicString) Load() string {
	s, _ := a.v.Load().(string)
	return s
}

func mustLogs(t *testing.T, st *store.Store, id string) []store.LogEntry {
	t.Helper()
	lines, err := st.ListTaskLogs(t.Context(), id, 0, 1000)
	must(t, err)
	return lines
}

// syncBuffer is a buffer the runner's goroutines may log into at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
