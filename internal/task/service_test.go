package task_test

import (
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	_ "modernc.org/sqlite" // the test's own connection to the store's file, for faults the store cannot be asked for

	"github.com/berthhq/berth/internal/access"
	"github.com/berthhq/berth/internal/bus"
	"github.com/berthhq/berth/internal/fault"
	"github.com/berthhq/berth/internal/sandbox"
	"github.com/berthhq/berth/internal/sandbox/process"
	"github.com/berthhq/berth/internal/store"
	"github.com/berthhq/berth/internal/task"
	"github.com/berthhq/berth/internal/testsvc"
)

// serviceRig is a task.Service as the server wires it, on a real SQLite
// file and the process runtime, running the stand-in claude.
type serviceRig struct {
	st     *store.Store
	dbPath string
	svc    *task.Service
	runner *task.Runner
	log    *syncBuffer // the runner's log
	owner  access.Principal
	ws     *store.Workspace
	bus    *bus.Bus
}

// newServiceRig starts a runner and its service; cfg's zero fields get the
// rig's defaults. Everything stops when the test ends.
func newServiceRig(t *testing.T, cfg task.RunnerConfig) *serviceRig {
	t.Helper()
	return newHookedServiceRig(t, cfg, nil)
}

// newHookedServiceRig is newServiceRig with hook as the runner's fault
// hook (see task.SetFaultHook).
func newHookedServiceRig(t *testing.T, cfg task.RunnerConfig, hook func(where, taskID string)) *serviceRig {
	t.Helper()
	rig := &serviceRig{dbPath: filepath.Join(t.TempDir(), "berth.db"), log: &syncBuffer{}}
	st, err := store.Open(t.Context(), rig.dbPath)
	must(t, err)
	t.Cleanup(func() { _ = st.Close() })
	rig.st = st
	now := time.Now()
	u := &store.User{ID: uuid.NewString(), Email: "svc@example.com", Name: "Svc", Role: store.RoleMember, CreatedAt: now, UpdatedAt: now}
	must(t, st.CreateUser(t.Context(), u))
	rig.owner = access.Principal{UserID: u.ID, Role: store.RoleMember}
	rig.ws = &store.Workspace{ID: uuid.NewString(), OwnerID: u.ID, Name: "svc", Path: t.TempDir(),
		Status: store.WorkspaceRunning, CreatedAt: now, UpdatedAt: now}
	must(t, st.CreateWorkspace(t.Context(), rig.ws))

	rt := process.New(process.WithKillGrace(100 * time.Millisecond))
	id, err := rt.Create(t.Context(), sandbox.Spec{WorkspaceID: rig.ws.ID, Name: rig.ws.Name, HostPath: rig.ws.Path})
	must(t, err)
	must(t, rt.Start(t.Context(), id))
	t.Cleanup(func() { _ = rt.Remove(context.Background(), id) })

	cfg.ClaudePath = testsvc.FakeClaude(t)
	cfg.APIKey = "sk-ant-test-service"
	if cfg.MaxRunning == 0 {
		cfg.MaxRunning = 4
	}
	if cfg.DefaultTimeout == 0 {
		cfg.DefaultTimeout = 10 * time.Minute
	}
	if cfg.ClaudeIdle == 0 {
		cfg.ClaudeIdle = 10 * time.Minute
	}
	logger := slog.New(slog.NewTextHandler(rig.log, nil))
	rig.bus = bus.New()
	rig.runner = task.NewRunner(st, rt, workspaces{st: st, containerID: id}, rig.bus, prometheus.NewRegistry(), logger, time.Now, cfg)
	if hook != nil {
		task.SetFaultHook(rig.runner, hook)
	}
	rig.svc = task.NewService(st, rig.runner, task.Budget{}, task.Limits{}, time.Now, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		rig.runner.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return rig
}

// within is how long a test may wait for a task: most of what is left of
// the test's deadline, so a loaded machine slows the test, not fails it.
func within(t *testing.T) time.Duration {
	if d, ok := t.Deadline(); ok {
		return time.Until(d) * 9 / 10
	}
	return 10 * time.Minute
}

// create creates a task through the service, failing the test on an error.
func (rig *serviceRig) create(t *testing.T, spec task.Spec) *store.TaskRecord {
	t.Helper()
	if spec.WorkspaceID == "" {
		spec.WorkspaceID = rig.ws.ID
	}
	tr, err := rig.svc.Create(t.Context(), rig.owner, spec)
	must(t, err)
	return tr
}

// wait polls a task until cond holds and returns it as it then is.
func (rig *serviceRig) wait(t *testing.T, id, what string, cond func(*store.TaskRecord) bool) *store.TaskRecord {
	t.Helper()
	var got *store.TaskRecord
	eventually(t, what, func() bool {
		tr, err := rig.svc.Get(t.Context(), rig.owner, id)
		must(t, err)
		got = tr
		return cond(tr)
	})
	return got
}

// ended waits for a task to end.
func (rig *serviceRig) ended(t *testing.T, id string) *store.TaskRecord {
	t.Helper()
	return rig.wait(t, id, "task "+id+" ends", func(tr *store.TaskRecord) bool { return tr.Status.Terminal() })
}

// wantSeqs checks a task's log is numbered 1, 2, 3 … with no gap.
func wantSeqs(t *testing.T, st *store.Store, id string) []store.LogEntry {
	t.Helper()
	entries := logs(t, st, id)
	for i, e := range entries {
		if e.Seq != int64(i+1) {
			t.Fatalf("log line %d has seq %d: %v", i, e.Seq, entries)
		}
	}
	return entries
}

func TestServiceRunsClaudeTask(t *testing.T) {
	t.Parallel()
	rig := newServiceRig(t, task.RunnerConfig{ClaudeMaxTurns: 8})
	tr := rig.create(t, task.Spec{Type: store.TaskClaudeChat, Prompt: "summarise the project", Tags: []string{"a"},
		Metadata: map[string]string{"k": "v"}, Config: task.Config{SystemPrompt: "be brief", AllowedTools: []string{"Read"}}})
	if tr.Status != store.TaskQueued || tr.Priority != store.TaskPriorityMedium {
		t.Fatalf("created %s with priority %d, want queued, medium", tr.Status, tr.Priority)
	}
	// The record holds the values in effect.
	if tr.Config.MaxTurns != 8 || tr.Config.Timeout != 600 || tr.Config.SystemPrompt != "be brief" {
		t.Errorf("stored config %+v, want max turns 8 and timeout 600 filled in", tr.Config)
	}
	got := rig.ended(t, tr.ID)
	if got.Status != store.TaskSucceeded || got.Error != nil {
		t.Fatalf("task %s with %v, want succeeded", got.Status, got.Error)
	}
	r := got.Result
	if r == nil || !r.Success || !strings.Contains(r.Summary, "SUMMARY.md") {
		t.Fatalf("result %+v", r)
	}
	if n, ok := r.Details["num_turns"].(float64); !ok || n < 1 {
		t.Errorf("result details %v, want num_turns", r.Details)
	}
	if got.Progress == nil || got.Progress.Total != 8 || got.Progress.Percentage != 100 {
		t.Errorf("progress %+v, want finished of 8 turns", got.Progress)
	}
	if got.CostUSD <= 0 || got.SessionID == "" || got.SessionID != r.Details["session_id"] {
		t.Errorf("cost %v, session %q (details %v)", got.CostUSD, got.SessionID, r.Details["session_id"])
	}
	if got.Tags[0] != "a" || got.Metadata["k"] != "v" {
		t.Errorf("tags %v, metadata %v", got.Tags, got.Metadata)
	}
	entries := wantSeqs(t, rig.st, tr.ID)
	if len(entries) < 3 || !strings.HasPrefix(entries[0].Message, "task started") || entries[len(entries)-1].Message != "task succeeded" {
		t.Errorf("log %v", entries)
	}
	// What the API shows is what is stored, converted once.
	pb := task.ToProto(got)
	if pb.GetResult().GetDetails().GetFields()["num_turns"].GetNumberValue() != r.Details["num_turns"] ||
		pb.GetConfig().GetMaxTurns() != 8 || pb.GetProgress().GetTotal() != 8 {
		t.Errorf("proto %v", pb)
	}
}

func TestServiceCancel(t *testing.T) {
	t.Parallel()
	rig := newServiceRig(t, task.RunnerConfig{MaxRunning: 1})
	running := rig.create(t, task.Spec{Type: store.TaskClaudeChat, Prompt: "wait [hang]"})
	rig.wait(t, running.ID, "the hanging task runs with a session", func(tr *store.TaskRecord) bool {
		return tr.Status == store.TaskRunning && tr.SessionID != ""
	})
	// The one slot is taken: this one stays queued.
	queued := rig.create(t, task.Spec{Type: store.TaskGitOperation, Git: &task.GitOp{Operation: "status"}})
	got, err := rig.svc.Cancel(t.Context(), rig.owner, queued.ID)
	must(t, err)
	if got.Status != store.TaskCancelled || got.Error == nil || got.Error.Code != "CANCELLED" || got.StartedAt != nil {
		t.Fatalf("cancelled queued task: %s, %+v, started %v", got.Status, got.Error, got.StartedAt)
	}

	got, err = rig.svc.Cancel(t.Context(), rig.owner, running.ID)
	must(t, err)
	got = rig.ended(t, got.ID)
	if got.Status != store.TaskCancelled || got.Error.Code != "CANCELLED" || !strings.Contains(got.Error.Message, "while running") {
		t.Fatalf("cancelled running task: %s, %+v", got.Status, got.Error)
	}
	if got.SessionID == "" {
		t.Error("the cancelled run's session id was not kept")
	}
	wantSeqs(t, rig.st, running.ID)

	_, err = rig.svc.Cancel(t.Context(), rig.owner, running.ID)
	if !errors.Is(err, fault.ErrFailedPrecondition) {
		t.Errorf("cancel an ended task: %v, want FailedPrecondition", err)
	}
	stranger := access.Principal{UserID: uuid.NewString(), Role: store.RoleMember}
	if _, err := rig.svc.Cancel(t.Context(), stranger, running.ID); !errors.Is(err, fault.ErrNotFound) {
		t.Errorf("cancel by a stranger: %v, want NotFound", err)
	}
}

func TestServiceTimeout(t *testing.T) {
	t.Parallel()
	rig := newServiceRig(t, task.RunnerConfig{})
	tr := rig.create(t, task.Spec{Type: store.TaskClaudeChat, Prompt: "wait [hang]", Config: task.Config{Timeout: 1}})
	got := rig.ended(t, tr.ID)
	if got.Status != store.TaskTimedOut || got.Error == nil || got.Error.Code != "TIMED_OUT" || got.Result != nil {
		t.Fatalf("task %s with %+v, result %+v; want timed out", got.Status, got.Error, got.Result)
	}
	entries := wantSeqs(t, rig.st, tr.ID)
	if last := entries[len(entries)-1]; last.Level != store.LogError || !strings.Contains(last.Message, "time limit of 1s") {
		t.Errorf("last line %+v", last)
	}
}

func TestServiceValidatesSpec(t *testing.T) {
	t.Parallel()
	rig := newServiceRig(t, task.RunnerConfig{})
	claude := func(mod func(*task.Spec)) task.Spec {
		s := task.Spec{WorkspaceID: rig.ws.ID, Type: store.TaskClaudeChat, Prompt: "hi"}
		mod(&s)
		return s
	}
	for _, c := range []struct {
		name  string
		spec  task.Spec
		field string
	}{
		{"no workspace", claude(func(s *task.Spec) { s.WorkspaceID = "" }), "workspace_id"},
		{"no type", claude(func(s *task.Spec) { s.Type = "" }), "type"},
		{"unknown type", claude(func(s *task.Spec) { s.Type = "shell" }), "type"},
		{"no prompt", claude(func(s *task.Spec) { s.Prompt = "" }), "prompt"},
		{"huge prompt", claude(func(s *task.Spec) { s.Prompt = strings.Repeat("x", 100001) }), "prompt"},
		{"priority", claude(func(s *task.Spec) { s.Priority = 4 }), "priority"},
		{"empty tag", claude(func(s *task.Spec) { s.Tags = []string{""} }), "tags"},
		{"metadata key", claude(func(s *task.Spec) { s.Metadata = map[string]string{"": "v"} }), "metadata"},
		{"max turns", claude(func(s *task.Spec) { s.Config.MaxTurns = 51 }), "config.max_turns"},
		{"timeout", claude(func(s *task.Spec) { s.Config.Timeout = 3601 }), "config.timeout"},
		{"budget", claude(func(s *task.Spec) { s.Config.MaxBudgetUSD = -1 }), "config.max_budget_usd"},
		{"working dir", claude(func(s *task.Spec) { s.Config.WorkingDir = "../up" }), "config.working_dir"},
		{"absolute working dir", claude(func(s *task.Spec) { s.Config.WorkingDir = "/etc" }), "config.working_dir"},
		{"continue id", claude(func(s *task.Spec) { s.ContinueTaskID = "nope" }), "continue_task_id"},
		{"continue unknown", claude(func(s *task.Spec) { s.ContinueTaskID = uuid.NewString() }), "continue_task_id"},
		{"git without op", claude(func(s *task.Spec) { s.Type, s.Prompt = store.TaskGitOperation, "" }), "git"},
		{"git option injection", claude(func(s *task.Spec) {
			s.Type, s.Git = store.TaskGitOperation, &task.GitOp{Operation: "checkout", Ref: "--orphan"}
		}), "git.ref"},
		{"git env", claude(func(s *task.Spec) {
			s.Type, s.Git, s.Config.Environment = store.TaskGitOperation, &task.GitOp{Operation: "status"}, map[string]string{"A": "b"}
		}), "config.environment"},
		{"git continue", claude(func(s *task.Spec) {
			s.Type, s.Git, s.ContinueTaskID = store.TaskGitOperation, &task.GitOp{Operation: "status"}, uuid.NewString()
		}), "continue_task_id"},
		{"build without build", claude(func(s *task.Spec) { s.Type = store.TaskDockerBuild }), "docker_build"},
		{"build context", claude(func(s *task.Spec) {
			s.Type, s.DockerBuild = store.TaskDockerBuild, &task.DockerBuild{ContextDir: "../x"}
		}), "docker_build.context_dir"},
	} {
		_, err := rig.svc.Create(t.Context(), rig.owner, c.spec)
		f, ok := errors.AsType[*fault.Error](err)
		if !errors.Is(err, fault.ErrInvalid) || !ok || !hasViolation(f, c.field) {
			t.Errorf("%s: %v, want InvalidArgument on %s", c.name, err, c.field)
		}
	}
	_, err := rig.svc.Create(t.Context(), rig.owner, claude(func(s *task.Spec) { s.WorkspaceID = uuid.NewString() }))
	if !errors.Is(err, fault.ErrNotFound) {
		t.Errorf("unknown workspace: %v, want NotFound", err)
	}
	list, total, err := rig.svc.List(t.Context(), rig.owner, task.Query{})
	must(t, err)
	if total != 0 || len(list) != 0 {
		t.Errorf("refused specs stored %d tasks", total)
	}
}

// hasViolation reports whether f names field.
func hasViolation(f *fault.Error, field string) bool {
	for _, v := range f.Violations {
		if v.Field == field || strings.HasPrefix(v.Field, field+"[") {
			return true
		}
	}
	return false
}

func TestServiceContinueTask(t *testing.T) {
	t.Parallel()
	rig := newServiceRig(t, task.RunnerConfig{MaxRunning: 1})
	first := rig.ended(t, rig.create(t, task.Spec{Type: store.TaskClaudeChat, Prompt: "start"}).ID)
	if first.Status != store.TaskSucceeded || first.SessionID == "" {
		t.Fatalf("first task %s, session %q", first.Status, first.SessionID)
	}
	next := rig.create(t, task.Spec{Type: store.TaskClaudeChat, Prompt: "go on", ContinueTaskID: first.ID})
	if next.ContinueTaskID != first.ID {
		t.Fatalf("continue_task_id stored as %q", next.ContinueTaskID)
	}
	got := rig.ended(t, next.ID)
	if got.Status != store.TaskSucceeded || !strings.Contains(got.Result.Summary, "Resumed session "+first.SessionID) {
		t.Fatalf("continued task %s, result %+v, want the first task's session resumed", got.Status, got.Result)
	}

	// A task without an agent session cannot be continued.
	git := rig.ended(t, rig.create(t, task.Spec{Type: store.TaskGitOperation, Git: &task.GitOp{Operation: "init"}}).ID)
	if git.Status != store.TaskSucceeded || git.SessionID != "" {
		t.Fatalf("git task %s, session %q", git.Status, git.SessionID)
	}
	_, err := rig.svc.Create(t.Context(), rig.owner, task.Spec{WorkspaceID: rig.ws.ID, Type: store.TaskClaudeChat, Prompt: "x", ContinueTaskID: git.ID})
	if f, ok := errors.AsType[*fault.Error](err); !ok || !errors.Is(err, fault.ErrInvalid) || !hasViolation(f, "continue_task_id") {
		t.Errorf("continue a task without a session: %v, want InvalidArgument on continue_task_id", err)
	}

	// A session that is gone by the time the task runs fails it with
	// NO_SESSION: the one slot is held while the session is removed.
	hold := rig.create(t, task.Spec{Type: store.TaskClaudeChat, Prompt: "hold the slot [hang]"})
	rig.wait(t, hold.ID, "the slot is held", func(tr *store.TaskRecord) bool { return tr.Status == store.TaskRunning })
	late := rig.create(t, task.Spec{Type: store.TaskClaudeChat, Prompt: "x", ContinueTaskID: first.ID})
	exec(t, openRaw(t, rig.dbPath), `UPDATE tasks SET session_id = NULL WHERE id = ?`, first.ID)
	_, err = rig.svc.Cancel(t.Context(), rig.owner, hold.ID)
	must(t, err)
	got = rig.ended(t, late.ID)
	if got.Status != store.TaskFailed || got.Error == nil || got.Error.Code != "NO_SESSION" {
		t.Errorf("continue a task whose session is gone: %s, %+v; want failed, NO_SESSION", got.Status, got.Error)
	}
}

// openRaw opens the store's SQLite file beside the store, for what a test
// must do to the database that the store offers no call for.
func openRaw(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	must(t, err)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func exec(t *testing.T, db *sql.DB, query string, args ...any) {
	t.Helper()
	if _, err := db.ExecContext(t.Context(), query, args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

// TestSessionWriteFailure makes the database refuse the session id write
// the runner makes while the agent runs: the failure is logged with the
// task, the session id is written with the task's end, and the task can be
// continued.
func TestSessionWriteFailure(t *testing.T) {
	t.Parallel()
	rig := newServiceRig(t, task.RunnerConfig{})
	db := openRaw(t, rig.dbPath)
	exec(t, db, `CREATE TRIGGER refuse_session BEFORE UPDATE OF session_id ON tasks
		WHEN OLD.status = 'running' AND NEW.status = 'running'
		BEGIN SELECT RAISE(ABORT, 'session writes refused by the test'); END`)
	exec(t, db, `CREATE TRIGGER refuse_progress BEFORE UPDATE OF progress ON tasks
		WHEN OLD.status = 'running' AND NEW.status = 'running'
		BEGIN SELECT RAISE(ABORT, 'progress writes refused by the test'); END`)
	first := rig.ended(t, rig.create(t, task.Spec{Type: store.TaskClaudeChat, Prompt: "start"}).ID)
	if first.Status != store.TaskSucceeded || first.SessionID == "" {
		t.Fatalf("task %s with session %q, want succeeded with its session written at the end", first.Status, first.SessionID)
	}
	if first.Progress != nil {
		t.Errorf("progress %+v was stored although every write was refused", first.Progress)
	}
	log := rig.log.String()
	for _, want := range []string{"recording the agent session id failed", "recording a task's progress failed", "task=" + first.ID, "session writes refused by the test"} {
		if !strings.Contains(log, want) {
			t.Errorf("the runner's log lacks %q:\n%s", want, log)
		}
	}
	next := rig.ended(t, rig.create(t, task.Spec{Type: store.TaskClaudeChat, Prompt: "go on", ContinueTaskID: first.ID}).ID)
	if next.Status != store.TaskSucceeded || !strings.Contains(next.Result.Summary, "Resumed session "+first.SessionID) {
		t.Errorf("continued task %s, %+v, %+v", next.Status, next.Error, next.Result)
	}
}

// TestLastLogSeqFailure makes the store unable to say where a task's log
// goes on: the task fails without a line rather than numbering its log
// from 1 again over the lines it has; once the store answers, a requeued
// run goes on after them.
func TestLastLogSeqFailure(t *testing.T) {
	t.Parallel()
	rig := newServiceRig(t, task.RunnerConfig{})
	db := openRaw(t, rig.dbPath)
	earlier := []store.LogEntry{}
	tr := &store.TaskRecord{ID: uuid.NewString(), WorkspaceID: rig.ws.ID, CreatedBy: rig.owner.UserID, Type: store.TaskClaudeChat,
		Status: store.TaskSucceeded, Priority: store.TaskPriorityMedium, Prompt: "again", CreatedAt: time.Now()}
	must(t, rig.st.CreateTaskRecord(t.Context(), tr))
	for seq := int64(1); seq <= 3; seq++ {
		earlier = append(earlier, store.LogEntry{TaskID: tr.ID, Seq: seq, Time: time.Now().UTC(), Level: store.LogInfo, Source: store.LogSystem, Message: "an earlier run"})
	}
	must(t, rig.st.AppendTaskLogs(t.Context(), earlier))

	exec(t, db, `ALTER TABLE task_logs RENAME TO task_logs_away`)
	exec(t, db, `UPDATE tasks SET status = 'queued' WHERE id = ?`, tr.ID)
	rig.runner.Wake()
	got := rig.ended(t, tr.ID)
	if got.Status != store.TaskFailed || got.Error == nil || got.Error.Code != "LOG_UNAVAILABLE" {
		t.Fatalf("task %s with %+v, want failed, LOG_UNAVAILABLE", got.Status, got.Error)
	}
	if !strings.Contains(rig.log.String(), "reading a task's last log line failed") {
		t.Errorf("the failure was not logged:\n%s", rig.log.String())
	}
	exec(t, db, `ALTER TABLE task_logs_away RENAME TO task_logs`)
	entries := wantSeqs(t, rig.st, tr.ID)
	if len(entries) != 3 {
		t.Fatalf("log after the failed start: %v, want the 3 earlier lines only", entries)
	}

	exec(t, db, `UPDATE tasks SET status = 'queued', completed_at = NULL, error = NULL WHERE id = ?`, tr.ID)
	rig.runner.Wake()
	got = rig.ended(t, tr.ID)
	if got.Status != store.TaskSucceeded {
		t.Fatalf("requeued task %s with %+v", got.Status, got.Error)
	}
	entries = wantSeqs(t, rig.st, tr.ID)
	if len(entries) <= 4 || entries[3].Message == "an earlier run" || !strings.HasPrefix(entries[3].Message, "task started") {
		t.Errorf("the requeued run's log does not go on after the earlier lines: %v", entries)
	}
}
