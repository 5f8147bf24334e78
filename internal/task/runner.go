package task

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/berthhq/berth/internal/agent"
	"github.com/berthhq/berth/internal/bus"
	"github.com/berthhq/berth/internal/fault"
	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
	"github.com/berthhq/berth/internal/gitop"
	"github.com/berthhq/berth/internal/sandbox"
	"github.com/berthhq/berth/internal/store"
	"github.com/berthhq/berth/internal/taskenv"
	"github.com/berthhq/berth/internal/tasklog"
	"github.com/berthhq/berth/internal/telemetry"
)

// Runtime is what the runner needs of the container runtime.
type Runtime interface {
	Exec(ctx context.Context, containerID string, spec sandbox.ExecSpec) (int, error)
	// StopTagged stops every process of the execs tagged tag in the
	// container, whichever instance started them.
	StopTagged(ctx context.Context, containerID, user, tag string) error
	// Build builds an image from spec.Context and returns its id.
	Build(ctx context.Context, spec sandbox.BuildSpec) (string, error)
}

// Workspaces is what the runner needs of the workspace service.
type Workspaces interface {
	// EnsureRunning starts the workspace if needed and returns it running.
	EnsureRunning(ctx context.Context, id string) (*store.Workspace, error)
	// Hold keeps the workspace from idling out until release.
	Hold(id string) (release func())
}

// RunnerConfig tunes the runner.
type RunnerConfig struct {
	MaxRunning      int
	MaxPerWorkspace int
	DefaultTimeout  time.Duration
	ClaudePath      string
	ClaudeIdle      time.Duration // the watchdog: no agent output for this long ends the run
	ClaudeMaxTurns  int           // --max-turns when a task's config sets none (DefaultMaxTurns when 0)
	APIKey          string        // ANTHROPIC_API_KEY for the claude CLI
	LogRetention    time.Duration

	// Builds are the settings a docker_build runs under when its workspace
	// sets none of its own.
	Builds BuildDefaults

	// Lease is how long a task this runner claimed stays its own without a
	// heartbeat; DefaultLease when 0. The runner renews the lease of each
	// task it runs every Lease/3, and stops a run whose lease it lost. Every
	// runner sweeps every Lease/2 (and once at start, in Recover) for
	// RUNNING tasks whose lease ran out — their runner died — and ends them
	// FAILED with code INTERRUPTED. A shorter lease notices a dead instance
	// sooner; every instance sharing a store should use the same one, and
	// their clocks must agree to well within it.
	Lease time.Duration
	// Exclusive says the runner is the only one on its store: every task
	// RUNNING when it starts was left behind by a process that is gone, so
	// Recover ends them all at once instead of waiting for their leases to
	// run out. A runner on the embedded SQLite store always is; set it for
	// a Postgres store only when no other instance shares the database.
	Exclusive bool
	// Env is the rule a task's config.environment must pass, checked when
	// a task is created and again when it runs; the default rule
	// (taskenv.New(nil, nil)) when nil.
	Env *taskenv.Rule

	// MaxPerUser caps one user's tasks running at once across the runners
	// sharing the store (0: no cap); a user at the cap is passed over, so
	// another user's task starts.
	MaxPerUser int
	// MaxLogBytes caps the message bytes of one task's log (0: no cap):
	// past it the task goes on, its further output is dropped, and its
	// result or error notes the truncation.
	MaxLogBytes int64
}

// DefaultMaxTurns is RunnerConfig.ClaudeMaxTurns when it is not set.
const DefaultMaxTurns = 50

// maxTurns is the --max-turns of a claude_chat task that asks for none.
func (r *Runner) maxTurns() int {
	if r.cfg.ClaudeMaxTurns > 0 {
		return r.cfg.ClaudeMaxTurns
	}
	return DefaultMaxTurns
}

// DefaultLease is RunnerConfig.Lease when it is not set.
const DefaultLease = 30 * time.Second

// interruptedCode is the TaskError code of a task whose run ended because
// its server stopped or died.
const interruptedCode = "INTERRUPTED"

// Errors that end a run, told apart by the run's context cause.
var (
	errCancelled = errors.New("cancelled by a user")
	errTimedOut  = errors.New("timed out")
	errShutdown  = errors.New("the server shut down")
	errAgentIdle = errors.New("the agent printed nothing for too long")
	errLeaseLost = errors.New("the runner lost the task's lease")
	errInternal  = errors.New("berth failed while running the task")
)

// internalError is the TaskError of a run that a panic in berth ended.
func internalError() *berthv1.TaskError {
	return &berthv1.TaskError{Code: "INTERNAL", Message: "berth failed while running the task (an internal error, logged on the server); its processes were stopped"}
}

// Runner takes queued tasks by priority then age, under a global and a
// per-workspace limit, and runs each with its own context and time limit.
type Runner struct {
	store   *store.Store
	rt      Runtime
	ws      Workspaces
	bus     *bus.Bus
	logger  *slog.Logger
	now     func() time.Time
	cfg     RunnerConfig
	lease   time.Duration
	owner   string // this runner, on leases: unique to it
	metrics *metrics
	panics  *telemetry.Panics
	env     *taskenv.Rule
	// faultHook, when set (by tests, before Run, through export_test.go),
	// is called where a bug could panic in goroutines no real input
	// reaches: "agent-parser" (with the task's id) for each line of the
	// CLI's output, and "heartbeat" at each renewal.
	faultHook func(where, taskID string)

	wake chan struct{}

	mu      sync.Mutex
	running map[string]*run
	wg      sync.WaitGroup
}

// run is one task running here.
type run struct {
	cancel context.CancelCauseFunc
	done   chan struct{}
	// leaseUntil is when the task's lease, as last written, runs out; only
	// the heartbeat reads and writes it.
	leaseUntil time.Time
	// ending is set once the run has decided how the task ended and is
	// recording it: a lease renewal refused from then on is expected.
	ending atomic.Bool
}

// NewRunner returns a Runner; Run starts it.
func NewRunner(st *store.Store, rt Runtime, ws Workspaces, b *bus.Bus, reg prometheus.Registerer, logger *slog.Logger, now func() time.Time, cfg RunnerConfig) *Runner {
	lease := cfg.Lease
	if lease <= 0 {
		lease = DefaultLease
	}
	cfg.Exclusive = cfg.Exclusive || st.Engine() == "sqlite"
	env := cfg.Env
	if env == nil {
		env, _ = taskenv.New(nil, nil) // no patterns: no error
	}
	return &Runner{
		store: st, rt: rt, ws: ws, bus: b, logger: logger, now: now, cfg: cfg,
		lease:   lease,
		owner:   ownerID(),
		metrics: newMetrics(reg),
		panics:  telemetry.NewPanics(reg, "runner", "agent-parser", "heartbeat"),
		env:     env,
		wake:    make(chan struct{}, 1),
		running: make(map[string]*run),
	}
}

// ownerID names a runner on the leases it holds: the host and process, for
// operators reading the tasks table, and a random UUID, which alone makes
// it unique — to this Runner, even among several in one process.
func ownerID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	return fmt.Sprintf("%s/%d/%s", host, os.Getpid(), uuid.NewString())
}

// Wake tells the runner that a task was queued.
func (r *Runner) Wake() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Recover ends the tasks a dead process left RUNNING: FAILED with code
// INTERRUPTED; their stored logs stay as they are. Queued tasks simply run.
// An Exclusive runner ends every RUNNING task; otherwise only those whose
// lease ran out are ended, as the periodic sweep in Run does, since the
// others belong to live instances.
func (r *Runner) Recover(ctx context.Context) error {
	if !r.cfg.Exclusive {
		return r.sweep(ctx)
	}
	ids, err := r.store.FailInterrupted(ctx, "", r.now().UTC(), encode(&berthv1.TaskError{
		Code: interruptedCode, Message: "the server stopped while the task ran; its logs up to then are kept",
	}))
	if err != nil {
		return err
	}
	for _, id := range ids {
		r.logger.Warn("task interrupted by a server stop", "task", id)
		if t, _, err := r.store.FindTask(ctx, id, store.Viewer{Admin: true}); err == nil {
			r.published(t)
		}
	}
	return nil
}

// sweep ends the RUNNING tasks whose lease ran out, whichever instance held
// it — that instance stopped renewing it, so it died — as FAILED with code
// INTERRUPTED, and publishes each change.
func (r *Runner) sweep(ctx context.Context) error {
	// Never this runner's own tasks: it is alive, and a run whose lease
	// lapsed under load (renewals slowed down) stops itself if another
	// instance may take it (see renew).
	ended, err := r.store.FailExpiredLeases(ctx, r.now().UTC(), encode(&berthv1.TaskError{
		Code:    interruptedCode,
		Message: "the server instance running the task stopped answering; its logs up to then are kept",
	}), r.owner)
	if err != nil {
		return err
	}
	for _, t := range ended {
		r.logger.Warn("task interrupted: the lease of the instance running it ran out", "task", t.ID)
		r.metrics.finished.WithLabelValues(string(t.Type), string(t.Status)).Inc()
		r.published(t)
		r.stopOrphans(ctx, t)
	}
	return nil
}

// stopOrphans stops, in the background, what the dead instance had
// started for task t in its workspace's container: the processes of its
// execs, all tagged with the task's id. The container, shared by every
// instance, outlives the instance.
func (r *Runner) stopOrphans(ctx context.Context, t *store.TaskRecord) {
	w, err := r.store.FindWorkspace(ctx, t.WorkspaceID, store.Viewer{Admin: true})
	if err != nil || w.ContainerID == "" {
		return
	}
	r.wg.Go(func() {
		defer r.panics.Recover(r.logger, "runner", nil, "task", t.ID)
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if err := r.rt.StopTagged(ctx, w.ContainerID, "", t.ID); err != nil {
			r.logger.Warn("stopping an interrupted task's processes failed", "task", t.ID, "error", err.Error())
		}
	})
}

// Run runs queued tasks until ctx ends; then it stops the running ones
// (they end FAILED with code INTERRUPTED) and waits for them. Meanwhile it
// renews the leases of the tasks it runs and sweeps for tasks whose lease
// ran out (see RunnerConfig.Lease).
func (r *Runner) Run(ctx context.Context) {
	// The heartbeat goes on until the runs have ended, shutdown included:
	// a run that is still stopping keeps its lease.
	beat, stopBeat := context.WithCancel(context.WithoutCancel(ctx))
	beating := make(chan struct{})
	go func() {
		defer close(beating)
		r.heartbeat(beat)
	}()
	defer func() {
		stopBeat()
		<-beating
	}()

	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	sweep := time.NewTicker(r.lease / 2)
	defer sweep.Stop()
	retention := time.NewTicker(time.Hour)
	defer retention.Stop()
	for {
		r.fill(ctx)
		select {
		case <-ctx.Done():
			r.mu.Lock()
			for _, ru := range r.running {
				ru.cancel(errShutdown)
			}
			r.mu.Unlock()
			r.wg.Wait()
			return
		case <-r.wake:
		case <-tick.C:
		case <-sweep.C:
			if err := r.sweep(ctx); err != nil && ctx.Err() == nil {
				r.logger.Warn("sweeping for tasks whose lease ran out failed", "error", err.Error())
			}
		case <-retention.C:
			if r.cfg.LogRetention > 0 {
				if n, err := r.store.DeleteTaskLogsBefore(ctx, r.now().Add(-r.cfg.LogRetention)); err != nil {
					r.logger.Warn("deleting old task logs failed", "error", err.Error())
				} else if n > 0 {
					r.logger.Info("deleted old task logs", "lines", n)
				}
			}
		}
	}
}

// heartbeat renews the leases of the tasks running here every lease/3
// until ctx ends.
func (r *Runner) heartbeat(ctx context.Context) {
	tick := time.NewTicker(r.lease / 3)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			r.renewRecovering(ctx)
		}
	}
}

// renewRecovering renews, and stops a panic in it: the heartbeat goes on
// at the next tick (a run whose lease then runs out is stopped by the
// rules in renew) instead of taking the process down.
func (r *Runner) renewRecovering(ctx context.Context) {
	defer r.panics.Recover(r.logger, "heartbeat", nil)
	if r.faultHook != nil {
		r.faultHook("heartbeat", "")
	}
	r.renew(ctx)
}

// renew extends the lease of every task running here by r.lease. A run
// whose lease is refused — another instance's sweep ended the task, or it
// was ended by other means — is stopped: only one instance ever runs a
// task. So is one whose renewals have failed until its lease ran out, as
// another instance may end it any moment.
func (r *Runner) renew(ctx context.Context) {
	r.mu.Lock()
	runs := make(map[string]*run, len(r.running))
	maps.Copy(runs, r.running)
	r.mu.Unlock()
	for id, ru := range runs {
		now := r.now()
		until := now.Add(r.lease)
		err := r.store.RenewLease(ctx, id, r.owner, until)
		switch {
		case err == nil:
			ru.leaseUntil = until
		case ru.ending.Load() || ctx.Err() != nil:
		case errors.Is(err, fault.ErrFailedPrecondition), errors.Is(err, fault.ErrNotFound):
			r.logger.Warn("stopping a task whose lease this instance lost", "task", id, "error", err.Error())
			ru.cancel(errLeaseLost)
		case !now.Before(ru.leaseUntil) && !r.cfg.Exclusive:
			// (An Exclusive runner has no one to hand the task to: it keeps
			// running it, and renews again.)
			r.logger.Error("stopping a task whose lease ran out: renewing it failed", "task", id, "error", err.Error())
			ru.cancel(errLeaseLost)
		default:
			r.logger.Warn("renewing a task's lease failed; trying again", "task", id, "error", err.Error())
		}
	}
}

// fill claims queued tasks while slots are free.
func (r *Runner) fill(ctx context.Context) {
	var skip []string
	for ctx.Err() == nil {
		r.mu.Lock()
		free := r.cfg.MaxRunning - len(r.running)
		r.mu.Unlock()
		if free <= 0 {
			return
		}
		now := r.now().UTC()
		t, err := r.store.ClaimTask(ctx, r.owner, now, now.Add(r.lease), r.cfg.MaxPerWorkspace, r.cfg.MaxPerUser, skip)
		if errors.Is(err, fault.ErrNotFound) {
			r.measureQueue(ctx)
			return
		}
		if err != nil {
			r.logger.Error("claiming a task failed", "error", err.Error())
			return
		}
		skip = append(skip, t.ID)
		r.start(ctx, t)
	}
}

// measureQueue updates the queue-depth gauge.
func (r *Runner) measureQueue(ctx context.Context) {
	_, queued, err := r.store.ListTasks(ctx, store.TaskFilter{Viewer: store.Viewer{Admin: true}, Status: store.TaskQueued, Limit: 1})
	if err == nil {
		r.metrics.queued.Set(float64(queued))
	}
}

func (r *Runner) start(parent context.Context, t *store.TaskRecord) {
	ctx, cancel := context.WithCancelCause(context.WithoutCancel(parent))
	ru := &run{cancel: cancel, done: make(chan struct{}), leaseUntil: *t.LeaseExpiresAt}
	r.mu.Lock()
	r.running[t.ID] = ru
	r.metrics.running.Set(float64(len(r.running)))
	r.mu.Unlock()
	r.wg.Go(func() {
		defer func() {
			cancel(nil)
			r.mu.Lock()
			delete(r.running, t.ID)
			r.metrics.running.Set(float64(len(r.running)))
			r.mu.Unlock()
			close(ru.done)
			r.Wake()
		}()
		// A panic in an executor ends its task in execute (see dispatch);
		// one while execute records the end still must not end the
		// process: the task is failed here, as well as the store allows.
		defer r.panics.Recover(r.logger, "runner", func(any) { r.failPanicked(t) }, "task", t.ID)
		r.execute(ctx, t, ru)
	})
	// Shutdown reaches runs through their own cancel (see Run), so a run
	// is never cut off by the claim loop's context alone.
}

// failPanicked ends task t FAILED with code INTERNAL after a panic outside
// its executor, if it is still RUNNING.
func (r *Runner) failPanicked(t *store.TaskRecord) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done, err := r.store.FinishTask(ctx, t.ID, []store.TaskStatus{store.TaskRunning}, store.TaskFailed, store.TaskFinish{
		CompletedAt: new(r.now().UTC()), Error: encode(internalError()),
	})
	if err != nil {
		if !errors.Is(err, fault.ErrFailedPrecondition) {
			r.logger.Error("recording the end of a task berth failed on failed", "task", t.ID, "error", err.Error())
		}
		return
	}
	r.metrics.finished.WithLabelValues(string(t.Type), string(store.TaskFailed)).Inc()
	r.published(done)
}

// Cancel stops a task running here and returns a channel closed when it
// has ended; nil when it is not running here.
func (r *Runner) Cancel(id string) <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	ru, ok := r.running[id]
	if !ok {
		return nil
	}
	ru.cancel(errCancelled)
	return ru.done
}

// outcome is how an executor ended.
type outcome struct {
	result *berthv1.TaskResult
	err    *berthv1.TaskError
	cost   *float64
}

func (r *Runner) execute(ctx context.Context, t *store.TaskRecord, ru *run) {
	started := r.now()
	r.metrics.started.WithLabelValues(string(t.Type)).Inc()
	r.published(t)
	cfg := decode[berthv1.TaskConfig](t.Config)
	if cfg == nil {
		cfg = &berthv1.TaskConfig{}
	}
	timeout := r.cfg.DefaultTimeout
	if cfg.GetTimeout() > 0 {
		timeout = time.Duration(cfg.GetTimeout()) * time.Second
	}
	runCtx, cancelTimeout := context.WithTimeoutCause(ctx, timeout, errTimedOut)
	defer cancelTimeout()

	last, err := r.store.LastLogSeq(ctx, t.ID)
	if err != nil {
		r.logger.Error("reading a task's last log line failed", "task", t.ID, "error", err.Error())
	}
	logs := tasklog.NewWriter(r.store, r.bus, t.ID, last+1, tasklog.Options{Now: r.now, MaxBytes: r.cfg.MaxLogBytes})
	logs.Log("info", "system", fmt.Sprintf("task started: %s, time limit %s", t.Type, timeout), nil)

	release := r.ws.Hold(t.WorkspaceID)
	defer release()
	out := r.dispatch(runCtx, t, cfg, logs)

	status := store.TaskSucceeded
	switch cause := context.Cause(runCtx); {
	case errors.Is(cause, errCancelled):
		status, out.err = store.TaskCancelled, &berthv1.TaskError{Code: "CANCELLED", Message: "cancelled while running; its processes were stopped"}
	case errors.Is(cause, errTimedOut):
		status, out.err = store.TaskTimedOut, &berthv1.TaskError{Code: "TIMED_OUT", Message: fmt.Sprintf("ran past its time limit of %s; its processes were stopped", timeout)}
	case errors.Is(cause, errShutdown):
		status, out.err = store.TaskFailed, &berthv1.TaskError{Code: interruptedCode, Message: "the server shut down while the task ran"}
	case errors.Is(cause, errLeaseLost):
		status, out.err = store.TaskFailed, &berthv1.TaskError{Code: interruptedCode, Message: "the server instance running the task lost its lease on it; its processes were stopped"}
	case out.err != nil:
		status = store.TaskFailed
	}
	if logs.Truncated() {
		noteTruncated(&out, r.cfg.MaxLogBytes)
	}
	ru.ending.Store(true)
	if out.err != nil {
		logs.Log("error", "system", "task "+string(status)+": "+out.err.GetMessage(), nil)
	} else {
		logs.Log("info", "system", "task succeeded", nil)
	}
	if err := logs.Close(); err != nil {
		r.logger.Error("writing a task's log failed", "task", t.ID, "error", err.Error())
	}
	r.metrics.lines.Add(float64(logs.LastSeq() - last))
	fin := store.TaskFinish{CompletedAt: new(r.now().UTC()), CostUSD: out.cost}
	if out.result != nil && status == store.TaskSucceeded {
		fin.Result = encode(out.result)
	}
	if out.err != nil {
		fin.Error = encode(out.err)
	}
	done, err := r.store.FinishTask(context.WithoutCancel(ctx), t.ID, []store.TaskStatus{store.TaskRunning}, status, fin)
	if errors.Is(context.Cause(runCtx), errLeaseLost) && errors.Is(err, fault.ErrFailedPrecondition) {
		// Whoever took the lease away ended the task already.
		r.logger.Info("a task whose lease was lost stopped here", "task", t.ID)
		return
	}
	if err != nil {
		r.logger.Error("recording a task's end failed", "task", t.ID, "status", string(status), "error", err.Error())
		return
	}
	r.metrics.finished.WithLabelValues(string(t.Type), string(status)).Inc()
	r.metrics.duration.WithLabelValues(string(t.Type)).Observe(r.now().Sub(started).Seconds())
	if out.cost != nil {
		r.metrics.cost.Add(*out.cost)
	}
	r.published(done)
}

// dispatch starts the task's workspace and runs the task's executor. A
// panic in either ends the task, not the process: it is logged and
// counted, the task's processes are stopped, and the outcome is an
// INTERNAL error; execute then records it and closes the log as always.
func (r *Runner) dispatch(ctx context.Context, t *store.TaskRecord, cfg *berthv1.TaskConfig, logs *tasklog.Writer) (out outcome) {
	var w *store.Workspace
	defer r.panics.Recover(r.logger, "runner", func(any) {
		out = outcome{err: internalError()}
		if w != nil && w.ContainerID != "" {
			stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			if err := r.rt.StopTagged(stopCtx, w.ContainerID, "", t.ID); err != nil {
				r.logger.Warn("stopping the processes of a task whose run panicked failed", "task", t.ID, "error", err.Error())
			}
		}
	}, "task", t.ID)
	w, err := r.ws.EnsureRunning(ctx, t.WorkspaceID)
	if err != nil {
		msg := err.Error()
		if m, ok := fault.Message(err); ok {
			msg = m
		}
		return outcome{err: &berthv1.TaskError{Code: "WORKSPACE_UNAVAILABLE", Message: "the workspace could not be started: " + msg}}
	}
	if err := checkWorkDir(w.Path, cfg.GetWorkingDir()); err != nil {
		return outcome{err: &berthv1.TaskError{Code: "WORKING_DIR", Message: err.Error()}}
	}
	switch t.Type {
	case store.TaskClaudeChat:
		return r.runClaude(ctx, t, cfg, w, logs)
	case store.TaskGitOperation:
		return r.runGit(ctx, t, cfg, w, logs)
	case store.TaskDockerBuild:
		return r.runBuild(ctx, t, w, logs)
	}
	return outcome{err: &berthv1.TaskError{Code: "UNKNOWN_TYPE", Message: "unknown task type " + string(t.Type)}}
}

// StatusEvent is published on a task's and its workspace's bus topics when
// a task's status or progress changes.
type StatusEvent struct {
	Task *store.TaskRecord
}

// published announces a task's new state.
func (r *Runner) published(t *store.TaskRecord) {
	if r.bus == nil || t == nil {
		return
	}
	// A copy: the runner goes on updating its own record while readers
	// hold the event.
	ev := StatusEvent{Task: new(*t)}
	r.bus.Publish("task:"+t.ID, ev)
	r.bus.Publish("workspace:"+t.WorkspaceID, ev)
}

// runClaude runs the claude CLI headless and turns its stream-json output
// into log lines, progress and the result.
func (r *Runner) runClaude(ctx context.Context, t *store.TaskRecord, cfg *berthv1.TaskConfig, w *store.Workspace, logs *tasklog.Writer) outcome {
	maxTurns := int(cfg.GetMaxTurns())
	if maxTurns == 0 {
		maxTurns = r.maxTurns() // a task stored before records said what is in effect
	}
	opts := agent.Options{
		Prompt: t.Prompt, SystemPrompt: cfg.GetSystemPrompt(), Model: cfg.GetModel(), MaxTurns: maxTurns,
		AllowedTools: cfg.GetAllowedTools(), MaxBudgetUSD: cfg.GetMaxBudgetUsd(),
	}
	if t.ContinueTaskID != "" {
		prev, _, err := r.store.FindTask(ctx, t.ContinueTaskID, store.Viewer{Admin: true})
		if err != nil || prev.SessionID == "" {
			return outcome{err: &berthv1.TaskError{Code: "NO_SESSION", Message: "the task to continue has no agent session any more"}}
		}
		opts.ResumeSessionID = prev.SessionID
	}
	dir, _ := workingDir(cfg.GetWorkingDir())
	env, refused := r.envOf(cfg)
	if refused != nil {
		return outcome{err: refused}
	}
	if r.cfg.APIKey != "" {
		// Last: a later value wins, and the rule refuses this name anyway.
		env = append(env, "ANTHROPIC_API_KEY="+r.cfg.APIKey)
	}
	redact := redactor(r.cfg.APIKey)

	execCtx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	idle := time.AfterFunc(r.cfg.ClaudeIdle, func() { stop(errAgentIdle) })
	defer idle.Stop()

	parser := agent.NewParser(maxTurns)
	pr, pw := io.Pipe()
	parsed := make(chan struct{})
	// On every path, a panic included, the parser ends before runClaude
	// returns: closing the pipe ends its read.
	defer func() {
		pw.Close()
		<-parsed
	}()
	go func() {
		defer close(parsed)
		defer func() { _, _ = io.Copy(io.Discard, pr) }() // the CLI never blocks on a full pipe
		// A panic while parsing ends the run (the CLI is stopped), not
		// the process.
		defer r.panics.Recover(r.logger, "agent-parser", func(any) { stop(errInternal) }, "task", t.ID)
		_ = agent.Lines(pr, func(line []byte) {
			idle.Reset(r.cfg.ClaudeIdle)
			if r.faultHook != nil {
				r.faultHook("agent-parser", t.ID)
			}
			for _, o := range parser.Line(line) {
				switch o := o.(type) {
				case agent.Log:
					logs.Log(o.Level, o.Source, redact(o.Message), fieldsJSON(o.Fields, redact))
				case agent.Progress:
					logs.Sync() // the lines before the progress are stored first
					p := encode(&berthv1.TaskProgress{Current: int32(o.Current), Total: int32(o.Total), Percentage: int32(o.Percentage), Message: o.Message})
					if err := r.store.SetTaskProgress(context.WithoutCancel(ctx), t.ID, p, nil, nil); err == nil {
						t.Progress = p
						r.published(t)
					}
				case agent.Session:
					id := o.ID
					_ = r.store.SetTaskProgress(context.WithoutCancel(ctx), t.ID, nil, &id, nil)
				}
			}
		})
	}()
	var stderr io.Writer = logs.Stderr()
	if r.cfg.APIKey != "" {
		stderr = newRedactingWriter(stderr, r.cfg.APIKey)
	}
	argv := append([]string{r.cfg.ClaudePath}, agent.Args(opts)...)
	code, err := r.rt.Exec(execCtx, w.ContainerID, sandbox.ExecSpec{Argv: argv, Dir: dir, Env: env, Stdout: pw, Stderr: stderr, Tag: t.ID})
	pw.Close()
	<-parsed
	if c, ok := stderr.(io.Closer); ok {
		c.Close()
	}

	if errors.Is(context.Cause(execCtx), errInternal) && ctx.Err() == nil {
		return outcome{err: internalError()}
	}
	if errors.Is(context.Cause(execCtx), errAgentIdle) && ctx.Err() == nil {
		return outcome{err: &berthv1.TaskError{Code: "AGENT_IDLE", Message: fmt.Sprintf("the agent printed nothing for %s and was stopped", r.cfg.ClaudeIdle)}}
	}
	if ctx.Err() != nil {
		return outcome{}
	}
	if err != nil {
		return outcome{err: &berthv1.TaskError{Code: "EXEC_FAILED", Message: "the claude CLI could not be run: " + redact(err.Error())}}
	}
	res, perr := parser.Outcome()
	if oe, ok := errors.AsType[*agent.OutputError](perr); ok {
		// No cost: a made-up number must not move the user's budget, the
		// stats or the metrics.
		return outcome{err: &berthv1.TaskError{Code: "AGENT_OUTPUT",
			Message: fmt.Sprintf("the agent reported a %s that cannot be right (%s), so nothing of its result was recorded", oe.Field, oe.Reason),
			Details: redact(oe.Error()) + fmt.Sprintf("; exit code %d", code)}}
	}
	if perr != nil {
		return outcome{err: &berthv1.TaskError{Code: "NO_RESULT", Message: "the agent exited without a result", Details: fmt.Sprintf("exit code %d", code)}}
	}
	cost := res.TotalCostUSD
	if res.Failed() {
		return outcome{cost: &cost, err: &berthv1.TaskError{Code: agentErrorCode(res.Subtype), Message: redact(res.Text), Details: fmt.Sprintf("exit code %d, %d turns", code, res.NumTurns)}}
	}
	details, _ := structpb.NewStruct(map[string]any{
		"num_turns": res.NumTurns, "duration_ms": res.DurationMS, "total_cost_usd": res.TotalCostUSD,
		"session_id": res.SessionID, "usage": res.Usage,
	})
	if details == nil {
		details, _ = structpb.NewStruct(map[string]any{"num_turns": res.NumTurns, "session_id": res.SessionID})
	}
	return outcome{cost: &cost, result: &berthv1.TaskResult{Success: true, Summary: redact(res.Text), Details: details}}
}

// agentErrorCode is the TaskError code of a failed agent run: the CLI's
// subtype in upper case (ERROR_MAX_TURNS), when it looks like one. The
// subtype is the agent's output: anything else (a huge string, one
// posing as berth's own codes' shape with other bytes) is AGENT_ERROR.
func agentErrorCode(subtype string) string {
	if len(subtype) == 0 || len(subtype) > 64 || strings.Trim(subtype, "abcdefghijklmnopqrstuvwxyz_") != "" {
		return "AGENT_ERROR"
	}
	return strings.ToUpper(subtype)
}

// runGit runs one whitelisted git operation and records the resulting HEAD.
func (r *Runner) runGit(ctx context.Context, t *store.TaskRecord, cfg *berthv1.TaskConfig, w *store.Workspace, logs *tasklog.Writer) outcome {
	g := decode[berthv1.GitOperation](t.Git)
	steps, err := gitop.Steps(gitOp(g))
	if err != nil {
		return outcome{err: &berthv1.TaskError{Code: "INVALID", Message: err.Error()}}
	}
	dir, _ := workingDir(cfg.GetWorkingDir())
	if _, refused := r.envOf(cfg); refused != nil {
		// A task stored before the rule: refused as at creation, though
		// git would not see its variables.
		return outcome{err: refused}
	}
	env, err := r.gitEnv(ctx, t)
	if err != nil {
		r.logger.Error("reading a git task's author failed", "task", t.ID, "user", t.CreatedBy, "error", err.Error())
		return outcome{err: &berthv1.TaskError{Code: "NO_IDENTITY", Message: "the account that created the task could not be read for the commit identity"}}
	}
	for i, argv := range steps {
		if i > 0 {
			// The step before may have changed the tree: the working
			// directory is checked again before every exec.
			if err := checkWorkDir(w.Path, cfg.GetWorkingDir()); err != nil {
				return outcome{err: &berthv1.TaskError{Code: "WORKING_DIR", Message: err.Error()}}
			}
		}
		stdout, stderr := logs.Stdout(), logs.Stderr()
		code, err := r.rt.Exec(ctx, w.ContainerID, sandbox.ExecSpec{Argv: argv, Dir: dir, Env: env, Stdout: stdout, Stderr: stderr, Tag: t.ID})
		closeAll(stdout, stderr)
		if ctx.Err() != nil {
			return outcome{}
		}
		if err != nil {
			return outcome{err: &berthv1.TaskError{Code: "EXEC_FAILED", Message: "git could not be run: " + err.Error()}}
		}
		if code != 0 {
			return outcome{err: &berthv1.TaskError{Code: "EXIT_CODE", Message: fmt.Sprintf("git exited with status %d", code), Details: strings.Join(argv, " ")}}
		}
	}
	var head bytes.Buffer
	if c, err := r.rt.Exec(ctx, w.ContainerID, sandbox.ExecSpec{Argv: gitop.HeadArgv(), Dir: dir, Env: env, Stdout: &head, Stderr: io.Discard}); err != nil || c != 0 {
		head.Reset()
	}
	details, _ := structpb.NewStruct(map[string]any{"operation": g.GetOperation().String(), "head": strings.TrimSpace(head.String())})
	return outcome{result: &berthv1.TaskResult{Success: true, Summary: "git " + gitOp(g).Operation + " done", Details: details}}
}

// runBuild builds an image from a directory of the workspace, under the
// workspace's network mode and limits, into the workspace's own build
// repository. The tag is checked again here, not only when the task was
// created: a task stored before the rule existed must not slip through.
func (r *Runner) runBuild(ctx context.Context, t *store.TaskRecord, w *store.Workspace, logs *tasklog.Writer) outcome {
	b := decode[berthv1.DockerBuild](t.DockerBuild)
	tag, err := buildTag(w.ID, t.ID, b.GetTag())
	if err != nil {
		msg := err.Error()
		if m, ok := fault.Message(err); ok {
			msg = m
		}
		return outcome{err: &berthv1.TaskError{Code: "TAG_REFUSED", Message: msg}}
	}
	if err := checkDockerfile(b.GetDockerfile()); err != nil {
		return outcome{err: &berthv1.TaskError{Code: "INVALID", Message: err.Error()}}
	}
	dir, err := openContext(w.Path, b.GetContextDir())
	if err != nil {
		return outcome{err: &berthv1.TaskError{Code: "INVALID", Message: err.Error()}}
	}
	defer dir.Close()
	out := logs.Stdout()
	id, err := r.rt.Build(ctx, sandbox.BuildSpec{
		Context:    dir,
		Dockerfile: b.GetDockerfile(),
		Tag:        tag,
		Network:    r.cfg.Builds.Network,
		Limits:     r.cfg.Builds.limits(w),
		Out: &buildProgress{w: out, set: func(p *berthv1.TaskProgress) {
			raw := encode(p)
			if err := r.store.SetTaskProgress(context.WithoutCancel(ctx), t.ID, raw, nil, nil); err == nil {
				t.Progress = raw
				r.published(t)
			}
		}},
	})
	closeAll(out)
	if ctx.Err() != nil {
		return outcome{}
	}
	if err != nil {
		return outcome{err: &berthv1.TaskError{Code: "BUILD_FAILED", Message: err.Error()}}
	}
	details, _ := structpb.NewStruct(map[string]any{"image_id": id, "tag": tag})
	return outcome{result: &berthv1.TaskResult{Success: true, Summary: "built " + tag, Details: details}}
}

// buildProgress passes build output through and reports "Step N/M" lines
// as progress.
type buildProgress struct {
	w       io.Writer
	set     func(*berthv1.TaskProgress)
	partial []byte
}

func (b *buildProgress) Write(p []byte) (int, error) {
	b.partial = append(b.partial, p...)
	for {
		i := bytes.IndexByte(b.partial, '\n')
		if i < 0 {
			break
		}
		line := string(b.partial[:i])
		b.partial = b.partial[i+1:]
		var cur, total int
		if _, err := fmt.Sscanf(line, "Step %d/%d", &cur, &total); err == nil && total > 0 {
			b.set(&berthv1.TaskProgress{Current: int32(cur), Total: int32(total), Percentage: int32(cur * 100 / total), Message: line})
		}
	}
	return b.w.Write(p)
}

// envOf returns a task's config.environment as KEY=value pairs, or, when
// the runner's rule refuses one of them, the TaskError that fails the
// task. The rule was checked when the task was created; it is checked
// again here because the task may have been stored before the rule, or
// before the operator narrowed it.
func (r *Runner) envOf(cfg *berthv1.TaskConfig) ([]string, *berthv1.TaskError) {
	if refused := r.env.CheckAll(cfg.GetEnvironment()); len(refused) > 0 {
		return nil, &berthv1.TaskError{Code: "ENV_REFUSED",
			Message: fmt.Sprintf("config.environment[%q] is refused: %s", refused[0].Key, refused[0].Reason),
			Details: fmt.Sprintf("%d variable(s) refused", len(refused))}
	}
	var env []string
	for k, v := range cfg.GetEnvironment() {
		env = append(env, k+"="+v)
	}
	return env, nil
}

// gitHome is HOME for git operations: a directory that does not exist, so
// no configuration is ever read from it — not the host's ~/.gitconfig on
// the process runtime, not an ~/.ssh/config planted in a shared /tmp. (A
// git operation never needs to write there.)
const gitHome = "/nonexistent"

// gitEnv is the whole environment of a git operation, fixed by berth:
// never the task's config.environment, which could rewrite URLs to
// commands (GIT_CONFIG_*), pick the ssh program (GIT_SSH_COMMAND) or
// re-allow transports (GIT_ALLOW_PROTOCOL). No global or system
// configuration is read, and commits are authored and committed by the
// berth account that created the task. Runtimes add their own variables
// first (the process runtime passes the host's HOME); these come later
// and win.
func (r *Runner) gitEnv(ctx context.Context, t *store.TaskRecord) ([]string, error) {
	u, err := r.store.FindUserByID(ctx, t.CreatedBy)
	if err != nil {
		return nil, err
	}
	name, email := identity(u)
	return append(gitop.Env(),
		"HOME="+gitHome,
		"XDG_CONFIG_HOME="+gitHome,
		"GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_TERMINAL_PROMPT=0",
		"GIT_AUTHOR_NAME="+name, "GIT_AUTHOR_EMAIL="+email,
		"GIT_COMMITTER_NAME="+name, "GIT_COMMITTER_EMAIL="+email,
	), nil
}

// identity is the name and email git records for account u: its name, or
// its email when it has none (git refuses an empty name), and a made-up
// address in the reserved .invalid domain when it has no email. Bytes git
// or an environment cannot carry (NUL, line breaks, angle brackets) are
// dropped.
func identity(u *store.User) (name, email string) {
	clean := strings.NewReplacer("\x00", "", "\n", " ", "\r", " ", "<", "", ">", "")
	name = strings.TrimSpace(clean.Replace(u.Name))
	email = strings.TrimSpace(clean.Replace(u.Email))
	if email == "" {
		email = u.ID + "@users.berth.invalid"
	}
	if name == "" {
		name = email
	}
	return name, email
}

func fieldsJSON(fields map[string]any, redact func(string) string) json.RawMessage {
	if len(fields) == 0 {
		return nil
	}
	b, err := json.Marshal(fields)
	if err != nil {
		return nil
	}
	return json.RawMessage(redact(string(b)))
}

func closeAll(ws ...io.Writer) {
	for _, w := range ws {
		if c, ok := w.(io.Closer); ok {
			c.Close()
		}
	}
}

// metrics are the runner's Prometheus metrics.
type metrics struct {
	started  *prometheus.CounterVec
	finished *prometheus.CounterVec
	running  prometheus.Gauge
	queued   prometheus.Gauge
	duration *prometheus.HistogramVec
	lines    prometheus.Counter
	cost     prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		started: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "berth_tasks_started_total", Help: "Tasks started, by type."}, []string{"type"}),
		finished: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "berth_tasks_finished_total", Help: "Tasks finished, by type and final status."},
			[]string{"type", "status"}),
		running: prometheus.NewGauge(prometheus.GaugeOpts{Name: "berth_tasks_running", Help: "Runner slots in use on this instance."}),
		queued:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "berth_tasks_queued", Help: "Tasks waiting for a runner slot."}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "berth_task_duration_seconds", Help: "Time from a task's start to its end, by type.",
			Buckets: prometheus.ExponentialBuckets(0.1, 2, 16)}, []string{"type"}),
		lines: prometheus.NewCounter(prometheus.CounterOpts{Name: "berth_task_log_lines_total", Help: "Task log lines written."}),
		cost:  prometheus.NewCounter(prometheus.CounterOpts{Name: "berth_agent_cost_usd_total", Help: "Agent cost reported by claude runs, in US dollars."}),
	}
	reg.MustRegister(m.started, m.finished, m.running, m.queued, m.duration, m.lines, m.cost)
	return m
}
