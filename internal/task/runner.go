package task

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/berthhq/berth/internal/bus"
	"github.com/berthhq/berth/internal/event"
	"github.com/berthhq/berth/internal/sandbox"
	"github.com/berthhq/berth/internal/store"
	"github.com/berthhq/berth/internal/taskenv"
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

	// Tracer traces the runner's tasks (see tracing); nil: no spans.
	Tracer trace.TracerProvider

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

// interruptedCode is the Failure code of a task whose run ended because
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

// internalError is the Failure of a run that a panic in berth ended.
func internalError() *Failure {
	return &Failure{Code: "INTERNAL", Message: "berth failed while running the task (an internal error, logged on the server); its processes were stopped"}
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
	// CLI's output, and "heartbeat" at each renewal; and where a test
	// holds a goroutine to order a race: "task-stored" (with the task's
	// id), in Service.Create between storing a task and announcing it.
	faultHook func(where, taskID string)
	trace     tracing // off unless RunnerConfig.Tracer
	// creating holds, per task Service.Create is storing, a channel it
	// closes once it has announced the task queued: published waits for
	// it before announcing anything later about that task, so a watcher
	// never sees a task run (or end) before it sees it created, however
	// the goroutines are scheduled.
	creating sync.Map // task id → chan struct{}

	wake chan struct{}

	mu      sync.Mutex
	running map[string]*run
	wg      sync.WaitGroup

	executors map[store.TaskType]executor
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
	r := &Runner{
		store: st, rt: rt, ws: ws, bus: b, logger: logger, now: now, cfg: cfg,
		lease:   lease,
		owner:   ownerID(),
		metrics: newMetrics(reg),
		panics:  telemetry.NewPanics(reg, "runner", "agent-parser", "heartbeat"),
		env:     env,
		wake:    make(chan struct{}, 1),
		running: make(map[string]*run),
	}
	if cfg.Tracer != nil {
		r.useTracing(cfg.Tracer)
	}
	r.executors = r.newExecutors()
	return r
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

// published announces a task's new state, stored already, on the task's
// and its workspace's bus topics (see Changed).
func (r *Runner) published(t *store.TaskRecord) {
	if r.bus == nil || t == nil {
		return
	}
	if t.Status != store.TaskQueued {
		if created, ok := r.creating.Load(t.ID); ok {
			<-created.(chan struct{})
		}
	}
	ev := Changed(t)
	r.bus.Publish(event.TaskTopic(t.ID), ev)
	r.bus.Publish(event.WorkspaceTopic(t.WorkspaceID), ev)
}
