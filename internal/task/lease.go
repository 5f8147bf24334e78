package task

// lease.go holds the runner's claims and leases: taking tasks off the
// queue, renewing the leases of the tasks running here (the heartbeat), and
// ending the tasks whose runner died (Recover at start, the periodic
// sweep).

import (
	"context"
	"errors"
	"maps"
	"time"

	"github.com/berthhq/berth/internal/fault"
	"github.com/berthhq/berth/internal/store"
)

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
		claimed := time.Now()
		t, err := r.store.ClaimTask(ctx, r.owner, func() time.Time { return r.now().UTC() }, r.lease, r.cfg.MaxPerWorkspace, r.cfg.MaxPerUser, skip)
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

// measureQueue updates the queue-depth gauge; a failed count leaves it as
// it was until the next one.
func (r *Runner) measureQueue(ctx context.Context) {
	_, queued, err := r.store.ListTasks(ctx, store.TaskFilter{Viewer: store.Viewer{Admin: true}, Status: store.TaskQueued, Limit: 1})
	if err != nil {
		if ctx.Err() == nil {
			r.logger.Warn("counting the queued tasks failed", "error", err.Error())
		}
		return
	}
	r.metrics.queued.Set(float64(queued))
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
	ids, err := r.store.FailInterrupted(ctx, "", r.now().UTC(), &Failure{
		Code: interruptedCode, Message: "the server stopped while the task ran; its logs up to then are kept",
	})
	if err != nil {
		return err
	}
	for _, id := range ids {
		r.logger.Warn("task interrupted by a server stop", "task", id)
		t, _, err := r.store.FindTask(ctx, id, store.Viewer{Admin: true})
		if err != nil {
			// The task is ended in the store; only its watchers miss the
			// change until they read it.
			r.logger.Warn("reading an interrupted task to announce its end failed", "task", id, "error", err.Error())
			continue
		}
		r.published(t)
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
	ended, err := r.store.FailExpiredLeases(ctx, r.now().UTC(), &Failure{
		Code:    interruptedCode,
		Message: "the server instance running the task stopped answering; its logs up to then are kept",
	}, r.owner)
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
	if err != nil {
		if !errors.Is(err, fault.ErrNotFound) { // a deleted workspace has no container left
			r.logger.Warn("reading an interrupted task's workspace to stop its processes failed", "task", t.ID, "error", err.Error())
		}
		return
	}
	if w.ContainerID == "" {
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
