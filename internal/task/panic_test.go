package task_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/berthhq/berth/internal/bus"
	"github.com/berthhq/berth/internal/sandbox"
	"github.com/berthhq/berth/internal/sandbox/process"
	"github.com/berthhq/berth/internal/store"
	"github.com/berthhq/berth/internal/task"
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

// TestPanicEndsOneTask: a panic in a task's run fails that task with code
// INTERNAL, its log closed with the reason, is counted in
// berth_panics_total{where="runner"} and logged at ERROR with the task's
// id; the runner (and the process) go on and run the next task.
func TestPanicEndsOneTask(t *testing.T) {
	t.Parallel()
	st, err := store.Open(t.Context(), filepath.Join(t.TempDir(), "berth.db"))
	must(t, err)
	t.Cleanup(func() { _ = st.Close() })
	f := newFixture(t, st)

	rt := process.New(process.WithKillGrace(100 * time.Millisecond))
	id, err := rt.Create(t.Context(), sandbox.Spec{WorkspaceID: f.ws.ID, Name: f.ws.Name, HostPath: f.ws.Path})
	must(t, err)
	must(t, rt.Start(t.Context(), id))
	t.Cleanup(func() { _ = rt.Remove(context.Background(), id) })

	reg := prometheus.NewRegistry()
	var logs syncBuffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	runner := task.NewRunner(st, panicking{Runtime: rt, trigger: "[panic]"}, workspaces{st: st, containerID: id}, bus.New(), reg, logger, time.Now, task.RunnerConfig{
		MaxRunning: 2, MaxPerWorkspace: 1, DefaultTimeout: time.Minute, ClaudeIdle: time.Minute,
		ClaudePath: claudeBinary(t), APIKey: "sk-ant-test-panic",
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		runner.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })

	bad := f.queue(t, st, "please [panic]")
	good := f.queue(t, st, "after the panic")
	runner.Wake()
	wait := func(id string) *store.TaskRecord {
		deadline := time.Now().Add(2 * time.Minute)
		if d, ok := t.Deadline(); ok {
			deadline = d.Add(-10 * time.Second)
		}
		for {
			tr := find(t, st, id)
			if tr.Status.Terminal() {
				return tr
			}
			if time.Now().After(deadline) {
				t.Fatalf("task %s still %s", id, tr.Status)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	got := wait(bad.ID)
	var terr struct{ Code, Message string }
	must(t, json.Unmarshal(got.Error, &terr))
	if got.Status != store.TaskFailed || terr.Code != "INTERNAL" || got.CostUSD != 0 {
		t.Errorf("panicked task: %s, error %s", got.Status, got.Error)
	}
	lines, err := st.ListTaskLogs(t.Context(), bad.ID, 0, 100)
	must(t, err)
	if n := len(lines); n == 0 || !strings.Contains(lines[n-1].Message, "berth failed while running the task") {
		t.Errorf("the panicked task's log does not end with the reason: %+v", lines)
	}
	if ok := wait(good.ID); ok.Status != store.TaskSucceeded {
		t.Errorf("the task after the panic: %s, %s", ok.Status, ok.Error)
	}

	families, err := reg.Gather()
	must(t, err)
	panics := map[string]float64{}
	for _, fam := range families {
		if fam.GetName() == "berth_panics_total" {
			for _, m := range fam.GetMetric() {
				panics[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
			}
		}
	}
	if panics["runner"] != 1 || panics["agent-parser"] != 0 || panics["heartbeat"] != 0 {
		t.Errorf("berth_panics_total = %v, want runner 1 and the others 0", panics)
	}
	out := logs.String()
	if !strings.Contains(out, `"level":"ERROR"`) || !strings.Contains(out, `"task":"`+bad.ID+`"`) || !strings.Contains(out, "a bug in the runtime") {
		t.Errorf("the panic was not logged with the task id:\n%s", out)
	}
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
