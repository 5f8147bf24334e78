package task

// execute.go runs one claimed task: its context and time limit, its log,
// its executor (executor.go), and the record of how it ended.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/berthhq/berth/internal/fault"
	"github.com/berthhq/berth/internal/store"
	"github.com/berthhq/berth/internal/tasklog"
)

// start runs a claimed task in its own goroutine, joined by Run.
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
		CompletedAt: new(r.now().UTC()), Error: internalError(),
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

// outcome is how an executor ended.
type outcome struct {
	result *Result
	err    *Failure
	cost   *float64
	// session is the agent session the run ended with, written with the
	// task's end: the one write a later continue_task_id relies on, even
	// when the write as the session began failed.
	session *string
}

// lastLogTries and lastLogPause bound how long a run waits for the store
// to say where the task's log goes on.
const (
	lastLogTries = 5
	lastLogPause = time.Second
)

// lastLogSeq returns the seq of the task's last stored log line, asking
// again while the store fails. A task that ran before (requeued, or
// resumed) has lines already: numbering them from 1 again would give two
// lines one seq, and readers resuming by seq would skip or repeat lines;
// so when the store cannot say, the run does not start.
func (r *Runner) lastLogSeq(ctx context.Context, id string) (int64, error) {
	var err error
	for try := 1; ; try++ {
		var last int64
		if last, err = r.store.LastLogSeq(ctx, id); err == nil {
			return last, nil
		}
		r.logger.Warn("reading a task's last log line failed", "task", id, "try", try, "error", err.Error())
		if try == lastLogTries {
			return 0, err
		}
		select {
		case <-ctx.Done():
			return 0, err
		case <-time.After(lastLogPause):
		}
	}
}

func (r *Runner) execute(ctx context.Context, t *store.TaskRecord, ru *run) {
	started := r.now()
	r.metrics.started.WithLabelValues(string(t.Type)).Inc()
	r.published(t)
	cfg := Config{}
	if t.Config != nil {
		cfg = *t.Config
	}
	timeout := r.cfg.DefaultTimeout
	if cfg.Timeout > 0 {
		timeout = time.Duration(cfg.Timeout) * time.Second
	}
	runCtx, cancelTimeout := context.WithTimeoutCause(ctx, timeout, errTimedOut)
	defer cancelTimeout()

	last, err := r.lastLogSeq(runCtx, t.ID)
	if err != nil {
		r.logger.ErrorContext(ctx, "a task could not start: where its log goes on is unknown", "task", t.ID, "error", err.Error())
		ru.ending.Store(true)
		r.finish(ctx, t, started, store.TaskFailed, outcome{err: &Failure{Code: "LOG_UNAVAILABLE",
			Message: "the task's log could not be read, so it was not started; try again"}}, false)
		return
	}
	logs := tasklog.NewWriter(r.store, r.bus, t.ID, last+1, tasklog.Options{Now: r.now, MaxBytes: r.cfg.MaxLogBytes})
	logs.Log("info", "system", fmt.Sprintf("task started: %s, time limit %s", t.Type, timeout), nil)

	release := r.ws.Hold(t.WorkspaceID)
	defer release()
	out := r.dispatch(runCtx, t, cfg, logs)

	status := store.TaskSucceeded
	switch cause := context.Cause(runCtx); {
	case errors.Is(cause, errCancelled):
		status, out.err = store.TaskCancelled, &Failure{Code: "CANCELLED", Message: "cancelled while running; its processes were stopped"}
	case errors.Is(cause, errTimedOut):
		status, out.err = store.TaskTimedOut, &Failure{Code: "TIMED_OUT", Message: fmt.Sprintf("ran past its time limit of %s; its processes were stopped", timeout)}
	case errors.Is(cause, errShutdown):
		status, out.err = store.TaskFailed, &Failure{Code: interruptedCode, Message: "the server shut down while the task ran"}
	case errors.Is(cause, errLeaseLost):
		status, out.err = store.TaskFailed, &Failure{Code: interruptedCode, Message: "the server instance running the task lost its lease on it; its processes were stopped"}
	case out.err != nil:
		status = store.TaskFailed
	}
	if logs.Truncated() {
		noteTruncated(&out, r.cfg.MaxLogBytes)
	}
	ru.ending.Store(true)
	ended(ctx, status)
	ctx, endFinish := r.trace.phase(ctx, "task.finish")
	defer func() { endFinish(nil) }()
	if out.err != nil {
		logs.Log("error", "system", "task "+string(status)+": "+out.err.Message, nil)
	} else {
		logs.Log("info", "system", "task succeeded", nil)
	}
	if err := logs.Close(); err != nil {
		r.logger.ErrorContext(ctx, "writing a task's log failed", "task", t.ID, "error", err.Error())
	}
	r.metrics.lines.Add(float64(logs.LastSeq() - last))
	r.finish(ctx, t, started, status, out, errors.Is(context.Cause(runCtx), errLeaseLost))
}

// finish records how a run ended and announces it. A run that lost its
// lease (leaseLost) may find the task ended by whoever took the lease.
func (r *Runner) finish(ctx context.Context, t *store.TaskRecord, started time.Time, status store.TaskStatus, out outcome, leaseLost bool) {
	fin := store.TaskFinish{CompletedAt: new(r.now().UTC()), CostUSD: out.cost, SessionID: out.session}
	if out.result != nil && status == store.TaskSucceeded {
		fin.Result = out.result
	}
	if out.err != nil {
		fin.Error = out.err
	}
	done, err := r.store.FinishTask(context.WithoutCancel(ctx), t.ID, []store.TaskStatus{store.TaskRunning}, status, fin)
	if leaseLost && errors.Is(err, fault.ErrFailedPrecondition) {
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
func (r *Runner) dispatch(ctx context.Context, t *store.TaskRecord, cfg Config, logs *tasklog.Writer) (out outcome) {
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
	ex, ok := r.executors[t.Type]
	if !ok {
		return outcome{err: &Failure{Code: "UNKNOWN_TYPE", Message: "unknown task type " + string(t.Type)}}
	}
	prepCtx, endPrepare := r.trace.phase(ctx, "task.prepare")
	w, err := r.ws.EnsureRunning(prepCtx, t.WorkspaceID)
	endPrepare(err)
	if err != nil {
		msg := err.Error()
		if m, ok := fault.Message(err); ok {
			msg = m
		}
		return outcome{err: &Failure{Code: "WORKSPACE_UNAVAILABLE", Message: "the workspace could not be started: " + msg}}
	}
	if err := checkWorkDir(w.Path, cfg.WorkingDir); err != nil {
		return outcome{err: &Failure{Code: "WORKING_DIR", Message: err.Error()}}
	}
	dir, err := workingDir(cfg.WorkingDir)
	if err != nil { // checkWorkDir checked it: a task stored before the rule
		return outcome{err: &Failure{Code: "WORKING_DIR", Message: err.Error()}}
	}
	return ex.run(ctx, job{task: t, cfg: cfg, ws: w, dir: dir, logs: logs})
}
