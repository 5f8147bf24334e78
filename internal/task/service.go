// Package task runs work in workspaces: it queues tasks, runs them under
// concurrency limits and time limits with the claude, git and docker-build
// executors, keeps their logs durably (through internal/tasklog), and
// recovers tasks a dead process left running.
//
// A docker_build writes only its own workspace's image repository and reads
// its context beneath the workspace directory (see image.go): a member who
// can build must not be able to replace an image other workspaces run, nor
// read host files into an image.
//
// The domain speaks its own types: a Spec asks for a task (types.go,
// spec.go), and a task's Config, GitOp, DockerBuild, Progress, Result and
// Failure are plain structs (defined in internal/taskdoc so the store can
// decode them once per read). handler.go is the one place that translates
// between them and the generated API messages.
//
// Reading order: service.go (create, get, list, cancel, logs, follow);
// runner.go (the queue loop), lease.go (claims, leases, recovery),
// execute.go (one run: log, time limit, outcome), executor.go and one file
// per executor (claude.go, git.go, build.go).
package task

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/berthhq/berth/internal/access"
	"github.com/berthhq/berth/internal/fault"
	"github.com/berthhq/berth/internal/gitop"
	"github.com/berthhq/berth/internal/page"
	"github.com/berthhq/berth/internal/store"
	"github.com/berthhq/berth/internal/stream"
)

// Service is the task API's domain logic.
type Service struct {
	store   *store.Store
	runner  *Runner
	budget  Budget
	now     func() time.Time
	streams *stream.Metrics
	admit   func(ctx context.Context, userID string) error // nil: no limit (Limits.Admit)
	queued  int64                                          // Limits.Queued
}

// Budget caps what one user's claude_chat tasks may cost per period.
type Budget struct {
	USD    float64 // 0 = no budget
	Period time.Duration
}

// NewService returns a Service that queues tasks for runner and refuses
// them past limits. streams counts what its log followers do; it may be
// nil.
func NewService(st *store.Store, runner *Runner, budget Budget, limits Limits, now func() time.Time, streams *stream.Metrics) *Service {
	return &Service{store: st, runner: runner, budget: budget, admit: limits.Admit, queued: limits.Queued, now: now, streams: streams}
}

// Create checks spec, checks the caller may run tasks in its workspace,
// stores the task QUEUED and wakes the runner. It returns at once; the
// task's life never depends on the caller's connection. Every front —
// CreateTask, the WebSocket task.create command, a workspace's first
// clone — creates tasks here.
func (s *Service) Create(ctx context.Context, p access.Principal, spec Spec) (*store.TaskRecord, error) {
	if err := spec.validate(); err != nil {
		return nil, err
	}
	w, err := s.store.FindWorkspace(ctx, spec.WorkspaceID, p.Viewer())
	if err != nil {
		return nil, err
	}
	if w.AccessRole == store.WorkspaceViewer {
		return nil, fault.New(fault.ErrPermissionDenied, "your role in this workspace (viewer) does not allow running tasks")
	}
	if w.Status == store.WorkspaceArchived {
		return nil, fault.New(fault.ErrFailedPrecondition, "the workspace is archived; unarchive it to run tasks")
	}
	cfg := spec.Config
	cfg.AllowedTools = slices.Clone(cfg.AllowedTools)
	cfg.Environment = maps.Clone(cfg.Environment)
	// The record keeps the values in effect, not zeros meaning "the
	// server's default": what GetTask shows is what the run gets.
	if cfg.Timeout == 0 {
		cfg.Timeout = int(s.runner.cfg.DefaultTimeout / time.Second)
	}
	if spec.Type == store.TaskClaudeChat && cfg.MaxTurns == 0 {
		cfg.MaxTurns = s.runner.maxTurns()
	}
	if _, err := workingDir(cfg.WorkingDir); err != nil {
		return nil, err
	}
	if err := s.checkEnv(spec.Type, cfg.Environment); err != nil {
		return nil, err
	}
	t := &store.TaskRecord{
		ID:          uuid.NewString(),
		WorkspaceID: w.ID,
		CreatedBy:   p.UserID,
		Type:        spec.Type,
		Status:      store.TaskQueued,
		Priority:    spec.Priority,
		Prompt:      spec.Prompt,
		Config:      &cfg,
		Tags:        slices.Clone(spec.Tags),
		Metadata:    maps.Clone(spec.Metadata),
		CreatedAt:   s.now().UTC(),
	}
	if t.Priority == 0 {
		t.Priority = store.TaskPriorityMedium
	}
	if t.Tags == nil {
		t.Tags = []string{}
	}
	if t.Metadata == nil {
		t.Metadata = map[string]string{}
	}
	switch spec.Type {
	case store.TaskClaudeChat:
		if err := s.checkBudget(ctx, p); err != nil {
			return nil, err
		}
		if id := spec.ContinueTaskID; id != "" {
			prev, _, err := s.store.FindTask(ctx, id, p.Viewer())
			if err != nil {
				return nil, fault.Invalid("continue_task_id", "no such task")
			}
			if prev.Type != store.TaskClaudeChat || prev.SessionID == "" || prev.WorkspaceID != w.ID {
				return nil, fault.Invalid("continue_task_id", "must name a claude_chat task of the same workspace that has an agent session")
			}
			t.ContinueTaskID = id
		}
	case store.TaskGitOperation:
		if _, err := gitop.Argv(gitOp(spec.Git)); err != nil {
			var ge *gitop.Error
			if errors.As(err, &ge) {
				return nil, fault.Invalid("git."+ge.Field, ge.Reason)
			}
			return nil, fault.Invalid("git", err.Error())
		}
		g := *spec.Git
		g.Paths = slices.Clone(g.Paths)
		t.Git = &g
	case store.TaskDockerBuild:
		b := spec.DockerBuild
		if _, err := workingDir(b.ContextDir); err != nil {
			return nil, fault.Invalid("docker_build.context_dir", "must be a relative path inside the workspace")
		}
		if err := checkDockerfile(b.Dockerfile); err != nil {
			return nil, err
		}
		tag, err := buildTag(w.ID, t.ID, b.Tag)
		if err != nil {
			return nil, err
		}
		// Stored with the full tag, so the task says what it will write.
		t.DockerBuild = &DockerBuild{ContextDir: b.ContextDir, Dockerfile: b.Dockerfile, Tag: tag}
	}
	if spec.ContinueTaskID != "" && spec.Type != store.TaskClaudeChat {
		return nil, fault.Invalid("continue_task_id", "only claude_chat tasks continue a session")
	}
	if s.admit != nil {
		// Last, so that only a task that would be stored is counted.
		if err := s.admit(ctx, p.UserID); err != nil {
			return nil, err
		}
	}
	// Before the task is stored: the runner may claim it at once.
	s.runner.trace.remember(ctx, t.ID)
	created := make(chan struct{})
	s.runner.creating.Store(t.ID, created)
	defer func() {
		s.runner.creating.Delete(t.ID)
		close(created)
	}()
	if err := s.store.CreateTaskRecordWithin(ctx, t, s.queued); err != nil {
		s.runner.trace.forget(t.ID)
		return nil, err
	}
	if s.runner.faultHook != nil {
		s.runner.faultHook("task-stored", t.ID)
	}
	// Watchers of the workspace see the task queued (status QUEUED: the
	// runner publishes every later change itself).
	s.runner.published(t)
	s.runner.Wake()
	return t, nil
}

func (s *Service) checkBudget(ctx context.Context, p access.Principal) error {
	if s.budget.USD <= 0 {
		return nil
	}
	spent, err := s.store.SumTaskCost(ctx, p.UserID, s.now().Add(-s.budget.Period))
	if err != nil {
		return err
	}
	if spent >= s.budget.USD {
		return fault.New(fault.ErrResourceExhausted, "your agent budget of $%.2f per %s is spent ($%.2f used); new claude_chat tasks are refused until older ones age out",
			s.budget.USD, s.budget.Period, spent)
	}
	return nil
}

// Get returns a task the caller may see.
func (s *Service) Get(ctx context.Context, p access.Principal, id string) (*store.TaskRecord, error) {
	t, _, err := s.store.FindTask(ctx, id, p.Viewer())
	return t, err
}

// Query selects a page of tasks.
type Query struct {
	Page        page.Request
	WorkspaceID string
	Status      store.TaskStatus
	Type        store.TaskType
}

// List returns a page of the tasks the caller may see, newest first.
func (s *Service) List(ctx context.Context, p access.Principal, q Query) ([]*store.TaskRecord, int64, error) {
	return s.store.ListTasks(ctx, store.TaskFilter{
		Viewer: p.Viewer(), WorkspaceID: q.WorkspaceID, Status: q.Status, Type: q.Type,
		Offset: q.Page.Offset(), Limit: q.Page.Size,
	})
}

// cancelWait bounds how long CancelTask waits for a running task's
// processes to be gone before answering.
const cancelWait = 20 * time.Second

// Cancel cancels a queued task (it never starts) or a running one (its
// processes are stopped: TERM, then KILL after a grace period) and returns
// it as it ends. A finished task is FailedPrecondition.
func (s *Service) Cancel(ctx context.Context, p access.Principal, id string) (*store.TaskRecord, error) {
	t, role, err := s.store.FindTask(ctx, id, p.Viewer())
	if err != nil {
		return nil, err
	}
	if role == store.WorkspaceViewer {
		return nil, fault.New(fault.ErrPermissionDenied, "your role in this workspace (viewer) does not allow cancelling tasks")
	}
	switch t.Status {
	case store.TaskQueued:
		done, err := s.store.FinishTask(ctx, id, []store.TaskStatus{store.TaskQueued}, store.TaskCancelled, store.TaskFinish{
			Error:       &Failure{Code: "CANCELLED", Message: "cancelled before it started"},
			CompletedAt: new(s.now().UTC()),
		})
		if err == nil {
			s.runner.published(done)
			return done, nil
		}
		if !errors.Is(err, fault.ErrFailedPrecondition) {
			return nil, err
		}
		// It started meanwhile: cancel the run.
	case store.TaskRunning:
	default:
		return nil, fault.New(fault.ErrFailedPrecondition, "the task already ended (%s)", t.Status)
	}
	finished := s.runner.Cancel(id)
	if finished == nil {
		return nil, fault.New(fault.ErrUnavailable, "the task is running on another server instance; try again")
	}
	select {
	case <-finished:
	case <-time.After(cancelWait):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	t, _, err = s.store.FindTask(ctx, id, p.Viewer())
	return t, err
}

// Logs pages a task's stored log by sequence number.
func (s *Service) Logs(ctx context.Context, p access.Principal, id string, afterSeq int64, limit int) ([]store.LogEntry, bool, error) {
	if _, _, err := s.store.FindTask(ctx, id, p.Viewer()); err != nil {
		return nil, false, err
	}
	if limit <= 0 {
		limit = 100
	}
	entries, err := s.store.ListTaskLogs(ctx, id, afterSeq, limit+1)
	if err != nil {
		return nil, false, err
	}
	more := len(entries) > limit
	if more {
		entries = entries[:limit]
	}
	return entries, more, nil
}

// Follow sends a task the caller may see from fromSeq on: its stored log,
// then live lines, status and progress, then an end event once it is
// finished and every line was sent (see stream.Task). Ending the follow
// does nothing to the task. send and loop run on the caller's goroutine
// (see stream.Loop).
func (s *Service) Follow(ctx context.Context, p access.Principal, id string, fromSeq int64, send func(stream.TaskEvent) error, loop stream.Loop) error {
	if _, _, err := s.store.FindTask(ctx, id, p.Viewer()); err != nil {
		return err
	}
	return s.follower().Follow(ctx, id, fromSeq, send, loop)
}

// OpenFollow is Follow a step at a time, for a transport that holds no
// goroutine while the task is quiet: it checks that the caller may see
// the task, then does what stream.Task.Open does — the stored log, the
// task's state, and the end when the task is finished (done) — and
// returns the follower, which the caller steps whenever wake was called
// and closes when done with it. send runs on the goroutine of OpenFollow
// or of a Step.
func (s *Service) OpenFollow(ctx context.Context, p access.Principal, id string, fromSeq int64, send func(stream.TaskEvent) error, wake func()) (f *stream.TaskFollower, done bool, err error) {
	if _, _, err := s.store.FindTask(ctx, id, p.Viewer()); err != nil {
		return nil, false, err
	}
	return s.follower().Open(ctx, id, fromSeq, send, wake)
}

// follower is the stream follower of the service's tasks.
func (s *Service) follower() stream.Task {
	return stream.Task{Store: s.store, Bus: s.runner.bus, Metrics: s.streams, State: s.state}
}

// workingDir turns a task's working_dir (relative to the workspace) into a
// path inside the container; "" is the workspace itself.
func workingDir(dir string) (string, error) {
	if dir == "" || dir == "." {
		return "/workspace", nil
	}
	if strings.HasPrefix(dir, "/") || strings.HasPrefix(dir, "-") {
		return "", fault.Invalid("config.working_dir", "must be a relative path inside the workspace")
	}
	for _, part := range strings.Split(dir, "/") {
		if part == ".." {
			return "", fault.Invalid("config.working_dir", `must not contain ".." elements`)
		}
	}
	return "/workspace/" + strings.TrimSuffix(dir, "/"), nil
}

// gitOp is a git_operation's operation as internal/gitop checks and runs it.
func gitOp(g *GitOp) gitop.Op {
	if g == nil {
		return gitop.Op{}
	}
	return gitop.Op{Operation: string(g.Operation), URL: g.URL, Ref: g.Ref, Message: g.Message, Paths: g.Paths}
}
