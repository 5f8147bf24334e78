package storetest

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/berthhq/berth/internal/fault"
	"github.com/berthhq/berth/internal/store"
	"github.com/berthhq/berth/internal/taskdoc"
)

var taskQueueTests = []test{
	{"ClaimOrder", testClaimOrder},
	{"ClaimPerWorkspaceLimit", testClaimPerWorkspaceLimit},
	{"ClaimSkip", testClaimSkip},
	{"ClaimConcurrent", testClaimConcurrent},
	{"Finish", testFinishTask},
	{"RenewLease", testRenewLease},
	{"Progress", testSetTaskProgress},
	{"State", testFindTaskState},
	{"FailInterrupted", testFailInterrupted},
	{"FailExpiredLeases", testFailExpiredLeases},
	{"FailExpiredLeasesConcurrent", testFailExpiredLeasesConcurrent},
}

func testClaimOrder(t *testing.T, e *env) {
	owner := e.user()
	w := e.workspace(owner)
	e.task(w, store.TaskRunning)
	e.task(w, store.TaskSucceeded)
	low := e.queued(w, store.TaskPriorityLow, prompt("low"))
	high1 := e.queued(w, store.TaskPriorityHigh, prompt("high, older"))
	medium := e.queued(w, store.TaskPriorityMedium, prompt("medium"))
	high2 := e.queued(w, store.TaskPriorityHigh, prompt("high, newer"))

	now := e.tick()
	got, err := e.s.ClaimTask(e.ctx, "runner-1", func() time.Time { return now }, time.Minute, 0, 0, nil)
	must(t, err)
	want := *high1
	want.Status = store.TaskRunning
	want.StartedAt = ptr(micro(now))
	want.LeaseOwner = "runner-1"
	want.LeaseExpiresAt = ptr(micro(now.Add(time.Minute)))
	equal(t, "claimed", got, &want)
	equal(t, "stored", e.findTask(high1.ID), &want)

	e.mustClaim(high2, 0)
	e.mustClaim(medium, 0)
	e.mustClaim(low, 0)
	_, err = e.claim(0)
	wantMessage(t, err, fault.ErrNotFound, "queued task not found")
}

func testClaimPerWorkspaceLimit(t *testing.T, e *env) {
	owner := e.user()
	busy, quiet := e.workspace(owner), e.workspace(owner)
	e.task(busy, store.TaskRunning)
	busy1 := e.queued(busy, store.TaskPriorityHigh, prompt("busy 1"))
	busy2 := e.queued(busy, store.TaskPriorityHigh, prompt("busy 2"))
	quiet1 := e.queued(quiet, store.TaskPriorityLow, prompt("quiet 1"))
	quiet2 := e.queued(quiet, store.TaskPriorityLow, prompt("quiet 2"))

	e.mustClaim(quiet1, 1) // busy already runs one
	_, err := e.claim(1)   // and now quiet does too
	wantFault(t, err, fault.ErrNotFound)
	e.mustClaim(busy1, 2)
	_, err = e.claim(1)
	wantFault(t, err, fault.ErrNotFound)
	e.mustClaim(quiet2, 2)
	e.mustClaim(busy2, 0)
}

func testClaimSkip(t *testing.T, e *env) {
	owner := e.user()
	w := e.workspace(owner)
	first := e.queued(w, store.TaskPriorityHigh, prompt("first"))
	second := e.queued(w, store.TaskPriorityMedium, prompt("second"))
	e.mustClaim(second, 0, first.ID, uuid.NewString())
	_, err := e.claim(0, first.ID)
	wantFault(t, err, fault.ErrNotFound)
	e.mustClaim(first, 0)
}

// testClaimConcurrent has many runners claim from many queued tasks at
// once: every task is claimed, and by exactly one of them.
func testClaimConcurrent(t *testing.T, e *env) {
	const tasks, runners = 100, 16
	owner := e.user()
	var ws []*store.Workspace
	for range 4 {
		ws = append(ws, e.workspace(owner))
	}
	queued := map[string]bool{}
	for i := range tasks {
		queued[e.queued(ws[i%len(ws)], store.TaskPriority(1+i%3)).ID] = true
	}
	var (
		mu      sync.Mutex
		claimed = map[string]int{}
		wg      sync.WaitGroup
		errs    = make(chan error, runners)
	)
	now := e.tick()
	for r := range runners {
		wg.Go(func() {
			for {
				tr, err := e.s.ClaimTask(e.ctx, fmt.Sprintf("r%d", r), func() time.Time { return now }, time.Minute, 0, 0, nil)
				if errors.Is(err, fault.ErrNotFound) {
					return
				}
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				claimed[tr.ID]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("claim: %v", err)
	}
	equal(t, "tasks claimed", len(claimed), tasks)
	for id, n := range claimed {
		if !queued[id] || n != 1 {
			t.Fatalf("task %s claimed %d times (queued: %v)", id, n, queued[id])
		}
	}
}

func testFinishTask(t *testing.T, e *env) {
	owner := e.user()
	w := e.workspace(owner)
	tr := e.queued(w, store.TaskPriorityMedium)
	e.mustClaim(tr, 0)

	done := e.tick()
	fin := store.TaskFinish{
		Progress:    &taskdoc.Progress{Current: 3},
		Result:      &taskdoc.Result{Summary: "ok", Details: map[string]any{"num_turns": 3.0}},
		SessionID:   ptr("s-1"),
		CostUSD:     ptr(0.25),
		CompletedAt: &done,
	}
	got, err := e.s.FinishTask(e.ctx, tr.ID, []store.TaskStatus{store.TaskRunning}, store.TaskSucceeded, fin)
	must(t, err)
	want := e.findTask(tr.ID)
	equal(t, "returned", got, want)
	equal(t, "status", got.Status, store.TaskSucceeded)
	equal(t, "result", got.Result, &taskdoc.Result{Summary: "ok", Details: map[string]any{"num_turns": 3.0}})
	equal(t, "progress", got.Progress, &taskdoc.Progress{Current: 3})
	equal(t, "session", got.SessionID, "s-1")
	equal(t, "cost", got.CostUSD, 0.25)
	equal(t, "completed", got.CompletedAt, ptr(micro(done)))
	equal(t, "lease owner", got.LeaseOwner, "")
	equal(t, "lease", got.LeaseExpiresAt, (*time.Time)(nil))
	if got.Error != nil || got.StartedAt == nil {
		t.Fatalf("error %s and start %v changed", got.Error, got.StartedAt)
	}

	_, err = e.s.FinishTask(e.ctx, tr.ID, []store.TaskStatus{store.TaskQueued, store.TaskRunning}, store.TaskCancelled,
		store.TaskFinish{Error: &taskdoc.Failure{Code: "CANCELLED"}})
	wantMessage(t, err, fault.ErrFailedPrecondition, "the task is succeeded")
	equal(t, "after a refused finish", e.findTask(tr.ID), want)

	_, err = e.s.FinishTask(e.ctx, uuid.NewString(), []store.TaskStatus{store.TaskRunning}, store.TaskFailed, store.TaskFinish{})
	wantMessage(t, err, fault.ErrNotFound, "task not found")
	_, err = e.s.FinishTask(e.ctx, tr.ID, []store.TaskStatus{store.TaskSucceeded}, store.TaskFailed, store.TaskFinish{Result: &taskdoc.Result{Details: map[string]any{"x": math.Inf(1)}}})
	if err == nil {
		t.Fatal("a result document that cannot be JSON was stored")
	}
	// A cost that would give budget headroom or an infinite sum is refused.
	for _, c := range []float64{-1000, math.Inf(1), math.Inf(-1), math.NaN()} {
		_, err = e.s.FinishTask(e.ctx, tr.ID, []store.TaskStatus{store.TaskSucceeded}, store.TaskFailed, store.TaskFinish{CostUSD: ptr(c)})
		if err == nil {
			t.Fatalf("cost %v was stored", c)
		}
		if err := e.s.SetTaskProgress(e.ctx, tr.ID, nil, nil, ptr(c)); err == nil {
			t.Fatalf("cost %v was stored as progress", c)
		}
	}
	equal(t, "after refused costs", e.findTask(tr.ID), want)

	// A non-terminal move keeps the lease.
	q := e.queued(w, store.TaskPriorityLow)
	e.mustClaim(q, 0)
	got, err = e.s.FinishTask(e.ctx, q.ID, []store.TaskStatus{store.TaskRunning}, store.TaskQueued, store.TaskFinish{})
	must(t, err)
	equal(t, "requeued", got.Status, store.TaskQueued)
	equal(t, "lease kept", got.LeaseOwner, "r1")
}

func testRenewLease(t *testing.T, e *env) {
	owner := e.user()
	w := e.workspace(owner)
	tr := e.queued(w, store.TaskPriorityMedium)
	e.mustClaim(tr, 0)
	until := e.tick().Add(time.Hour)
	must(t, e.s.RenewLease(e.ctx, tr.ID, "r1", until))
	equal(t, "lease", e.findTask(tr.ID).LeaseExpiresAt, ptr(micro(until)))
	wantFault(t, e.s.RenewLease(e.ctx, tr.ID, "r2", until), fault.ErrFailedPrecondition)
	wantFault(t, e.s.RenewLease(e.ctx, uuid.NewString(), "r1", until), fault.ErrNotFound)
	_, err := e.s.FinishTask(e.ctx, tr.ID, []store.TaskStatus{store.TaskRunning}, store.TaskFailed, store.TaskFinish{})
	must(t, err)
	wantMessage(t, e.s.RenewLease(e.ctx, tr.ID, "r1", until), fault.ErrFailedPrecondition, "the task is failed")
}

func testSetTaskProgress(t *testing.T, e *env) {
	owner := e.user()
	w := e.workspace(owner)
	tr := e.task(w, store.TaskRunning, costing(0.1))
	must(t, e.s.SetTaskProgress(e.ctx, tr.ID, &taskdoc.Progress{Current: 1}, nil, nil))
	got := e.findTask(tr.ID)
	equal(t, "progress", got.Progress, &taskdoc.Progress{Current: 1})
	equal(t, "cost kept", got.CostUSD, 0.1)
	must(t, e.s.SetTaskProgress(e.ctx, tr.ID, &taskdoc.Progress{Current: 2}, ptr("s-9"), ptr(0.3)))
	got = e.findTask(tr.ID)
	equal(t, "progress", got.Progress, &taskdoc.Progress{Current: 2})
	equal(t, "session", got.SessionID, "s-9")
	equal(t, "cost", got.CostUSD, 0.3)
	// A nil progress writes the session id alone and keeps the progress.
	must(t, e.s.SetTaskProgress(e.ctx, tr.ID, nil, ptr("s-10"), nil))
	got = e.findTask(tr.ID)
	equal(t, "progress kept", got.Progress, &taskdoc.Progress{Current: 2})
	equal(t, "session", got.SessionID, "s-10")
	must(t, e.s.SetTaskProgress(e.ctx, tr.ID, nil, nil, nil))
	equal(t, "nothing written", e.findTask(tr.ID), got)
	wantFault(t, e.s.SetTaskProgress(e.ctx, uuid.NewString(), &taskdoc.Progress{}, nil, nil), fault.ErrNotFound)
	wantFault(t, e.s.SetTaskProgress(e.ctx, uuid.NewString(), nil, ptr("s"), nil), fault.ErrNotFound)
	wantFault(t, e.s.SetTaskProgress(e.ctx, uuid.NewString(), nil, nil, nil), fault.ErrNotFound)
}

// testFindTaskState: a task's state is what its record says of its
// workspace, status and progress, before and after the progress is set;
// no such task is not found.
func testFindTaskState(t *testing.T, e *env) {
	owner := e.user()
	w := e.workspace(owner)
	tr := e.task(w, store.TaskRunning)
	st, err := e.s.FindTaskState(e.ctx, tr.ID)
	must(t, err)
	equal(t, "state", st, store.TaskState{WorkspaceID: w.ID, Status: store.TaskRunning})
	must(t, e.s.SetTaskProgress(e.ctx, tr.ID, &taskdoc.Progress{Current: 3, Total: 10, Percentage: 30, Message: "turn 3"}, nil, nil))
	st, err = e.s.FindTaskState(e.ctx, tr.ID)
	must(t, err)
	got := e.findTask(tr.ID)
	equal(t, "state", st, store.TaskState{WorkspaceID: got.WorkspaceID, Status: got.Status, Progress: got.Progress})
	_, err = e.s.FindTaskState(e.ctx, uuid.NewString())
	wantFault(t, err, fault.ErrNotFound)
}

func testFailInterrupted(t *testing.T, e *env) {
	owner := e.user()
	w := e.workspace(owner)
	a1 := e.task(w, store.TaskRunning, leasedTo("a"))
	a2 := e.task(w, store.TaskRunning, leasedTo("a"))
	b1 := e.task(w, store.TaskRunning, leasedTo("b"))
	q := e.task(w, store.TaskQueued)
	done := e.task(w, store.TaskSucceeded, leasedTo("a"))

	now := e.tick()
	taskErr := &taskdoc.Failure{Code: "INTERRUPTED", Message: "gone"}
	got, err := e.s.FailInterrupted(e.ctx, "a", now, taskErr)
	must(t, err)
	equal(t, "interrupted", got, []string{a1.ID, a2.ID})
	for _, id := range got {
		tr := e.findTask(id)
		equal(t, "status", tr.Status, store.TaskFailed)
		equal(t, "error", tr.Error, taskErr)
		equal(t, "completed", tr.CompletedAt, ptr(micro(now)))
		equal(t, "lease", tr.LeaseOwner, "")
	}
	equal(t, "b's", e.findTask(b1.ID).Status, store.TaskRunning)
	equal(t, "queued", e.findTask(q.ID).Status, store.TaskQueued)
	equal(t, "succeeded", e.findTask(done.ID).Status, store.TaskSucceeded)

	got, err = e.s.FailInterrupted(e.ctx, "", now, taskErr)
	must(t, err)
	equal(t, "any owner's", got, []string{b1.ID})
	got, err = e.s.FailInterrupted(e.ctx, "", now, taskErr)
	must(t, err)
	equal(t, "none left", got, []string{})
}

// leasedUntil sets a running task's lease owner and expiry.
func leasedUntil(owner string, until time.Time) func(*store.TaskRecord) {
	return func(tr *store.TaskRecord) {
		tr.LeaseOwner = owner
		tr.LeaseExpiresAt = &until
	}
}

func testFailExpiredLeases(t *testing.T, e *env) {
	owner := e.user()
	w := e.workspace(owner)
	now := epoch.Add(30 * time.Minute)
	expired := e.task(w, store.TaskRunning, leasedUntil("a", now.Add(-time.Second)))
	unleased := e.task(w, store.TaskRunning)
	atNow := e.task(w, store.TaskRunning, leasedUntil("b", now))
	live := e.task(w, store.TaskRunning, leasedUntil("a", now.Add(time.Minute)))
	renewed := e.task(w, store.TaskRunning, leasedUntil("c", now.Add(-time.Minute)))
	must(t, e.s.RenewLease(e.ctx, renewed.ID, "c", now.Add(time.Minute)))
	q := e.task(w, store.TaskQueued)
	done := e.task(w, store.TaskSucceeded, leasedUntil("a", now.Add(-time.Hour)))

	taskErr := &taskdoc.Failure{Code: "INTERRUPTED"}
	got, err := e.s.FailExpiredLeases(e.ctx, now, taskErr)
	must(t, err)
	equal(t, "ended", ids(got), ids([]*store.TaskRecord{expired, unleased}))
	for _, tr := range got {
		stored := e.findTask(tr.ID)
		equal(t, "returned as stored", tr, stored)
		equal(t, "status", stored.Status, store.TaskFailed)
		equal(t, "error", stored.Error, taskErr)
		equal(t, "completed", stored.CompletedAt, ptr(micro(now)))
		equal(t, "lease owner", stored.LeaseOwner, "")
		equal(t, "lease", stored.LeaseExpiresAt, (*time.Time)(nil))
	}
	for _, tr := range []*store.TaskRecord{atNow, live, renewed} {
		equal(t, "status of a task with a live lease", e.findTask(tr.ID).Status, store.TaskRunning)
	}
	equal(t, "queued", e.findTask(q.ID).Status, store.TaskQueued)
	equal(t, "succeeded", e.findTask(done.ID).Status, store.TaskSucceeded)
	wantMessage(t, e.s.RenewLease(e.ctx, expired.ID, "a", now.Add(time.Hour)), fault.ErrFailedPrecondition, "the task is failed")

	got, err = e.s.FailExpiredLeases(e.ctx, now, taskErr)
	must(t, err)
	equal(t, "ended again", got, []*store.TaskRecord{})
	// A sweeper's own tasks are left alone.
	got, err = e.s.FailExpiredLeases(e.ctx, now.Add(2*time.Minute), taskErr, "a")
	must(t, err)
	equal(t, "ended later, except owner a's", ids(got), ids([]*store.TaskRecord{atNow, renewed}))
	equal(t, "owner a's task", e.findTask(live.ID).Status, store.TaskRunning)
	got, err = e.s.FailExpiredLeases(e.ctx, now.Add(2*time.Minute), taskErr)
	must(t, err)
	equal(t, "ended at last", ids(got), ids([]*store.TaskRecord{live}))
}

// testFailExpiredLeasesConcurrent has several instances sweep at once:
// every expired task is ended by exactly one of them.
func testFailExpiredLeasesConcurrent(t *testing.T, e *env) {
	const tasks, sweepers = 40, 6
	owner := e.user()
	w := e.workspace(owner)
	now := epoch.Add(time.Hour)
	expired := map[string]bool{}
	for i := range tasks {
		expired[e.task(w, store.TaskRunning, leasedUntil(fmt.Sprint("r", i%3), now.Add(-time.Second))).ID] = true
	}
	var (
		mu    sync.Mutex
		ended = map[string]int{}
		wg    sync.WaitGroup
		errs  = make(chan error, sweepers)
	)
	for range sweepers {
		wg.Go(func() {
			got, err := e.s.FailExpiredLeases(e.ctx, now, &taskdoc.Failure{})
			if err != nil {
				errs <- err
				return
			}
			mu.Lock()
			defer mu.Unlock()
			for _, tr := range got {
				ended[tr.ID]++
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("sweep: %v", err)
	}
	// A sweep that passed over rows another held leaves them to the next.
	got, err := e.s.FailExpiredLeases(e.ctx, now, &taskdoc.Failure{})
	must(t, err)
	for _, tr := range got {
		ended[tr.ID]++
	}
	equal(t, "tasks ended", len(ended), tasks)
	for id, n := range ended {
		if !expired[id] || n != 1 {
			t.Fatalf("task %s ended %d times (expired: %v)", id, n, expired[id])
		}
	}
}
