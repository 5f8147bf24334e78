package task

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/berthhq/berth/internal/bus"
	"github.com/berthhq/berth/internal/event"
	"github.com/berthhq/berth/internal/fault"
	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
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
	trace     tracing // off unless UseTracing

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
		claimed := time.Now()
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
		r.start(ctx, t, claimed)
	}
}

// measureQueue updates the queue-depth gauge.
func (r *Runner) measureQueue(ctx context.Context) {
	_, queued, err := r.store.ListTasks(ctx, store.TaskFilter{Viewer: store.Viewer{Admin: true}, Status: store.TaskQueued, Limit: 1})
	if err == nil {
		r.metrics.queued.Set(float64(queued))
	}
}

func (r *Runner) start(parent context.Context, t *store.TaskRecord, claimed time.Time) {
	ctx, cancel := context.WithCancelCause(context.WithoutCancel(parent))
	ctx, endSpan := r.trace.startRun(ctx, t, claimed, time.Now())
	ru := &run{cancel: cancel, done: make(chan struct{}), leaseUntil: *t.LeaseExpiresAt}
	r.mu.Lock()
	r.running[t.ID] = ru
	r.metrics.running.Set(float64(len(r.running)))
	r.mu.Unlock()
	r.wg.Go(func() {
		defer func() {
			endSpan()
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
		r.logger.ErrorContext(ctx, "reading a task's last log line failed", "task", t.ID, "error", err.Error())
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
	ended(ctx, status)
	finishCtx, endFinish := r.trace.phase(ctx, "task.finish")
	defer func() { endFinish(nil) }()
	ctx = finishCtx
	if out.err != nil {
		logs.Log("error", "system", "task "+string(status)+": "+out.err.GetMessage(), nil)
	} else {
		logs.Log("info", "system", "task succeeded", nil)
	}
	if err := logs.Close(); err != nil {
		r.logger.ErrorContext(ctx, "writing a task's log failed", "task", t.ID, "error", err.Error())
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
		r.logger.InfoContext(ctx, "a task whose lease was lost stopped here", "task", t.ID)
		return
	}
	if err != nil {
		r.logger.ErrorContext(ctx, "recording a task's end failed", "task", t.ID, "status", string(status), "error", err.Error())
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
				r.logger.WarnContext(ctx, "stopping the processes of a task whose run panicked failed", "task", t.ID, "error", err.Error())
			}
		}
	}, "task", t.ID)
	prepCtx, endPrepare := r.trace.phase(ctx, "task.prepare")
	w, err := r.ws.EnsureRunning(prepCtx, t.WorkspaceID)
	endPrepare(err)
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

// published announces a task's new state, stored already, on the task's
// and its workspace's bus topics (see Changed).
func (r *Runner) published(t *store.TaskRecord) {
	if r.bus == nil || t == nil {
		return
	}
	ev := Changed(t)
	r.bus.Publish(event.TaskTopic(t.ID), ev)
	r.bus.Publish(event.WorkspaceTopic(t.WorkspaceID), ev)
}

func closeAll(ws ...io.Writer) {
	for _, w := range ws {
		if c, ok := w.(io.Closer); ok {
			_ = c.Close() // a log line writer: it flushes its partial line, and cannot fail
		}
	}
}
