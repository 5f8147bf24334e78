package storetest

import (
	"encoding/json"
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

var taskReadTests = []test{
	{"FindVisibility", testFindTaskVisibility},
	{"ListFiltersAndOrder", testListTasks},
	{"SumCost", testSumTaskCost},
}

var taskQueueTests = []test{
	{"ClaimOrder", testClaimOrder},
	{"ClaimPerWorkspaceLimit", testClaimPerWorkspaceLimit},
	{"ClaimSkip", testClaimSkip},
	{"ClaimConcurrent", testClaimConcurrent},
	{"Finish", testFinishTask},
	{"RenewLease", testRenewLease},
	{"Progress", testSetTaskProgress},
	{"FailInterrupted", testFailInterrupted},
	{"FailExpiredLeases", testFailExpiredLeases},
	{"FailExpiredLeasesConcurrent", testFailExpiredLeasesConcurrent},
}

var taskLogTests = []test{
	{"AppendAndList", testTaskLogs},
	{"AppendRefused", testTaskLogsRefused},
	{"AppendLargeBatch", testTaskLogsLargeBatch},
	{"Retention", testTaskLogRetention},
}

// queued creates a queued task in w with the given priority, as changed by mods.
func (e *env) queued(w *store.Workspace, p store.TaskPriority, mods ...func(*store.TaskRecord)) *store.TaskRecord {
	e.t.Helper()
	return e.task(w, store.TaskQueued, append([]func(*store.TaskRecord){func(tr *store.TaskRecord) { tr.Priority = p }}, mods...)...)
}

// leasedTo sets a running task's lease owner.
func leasedTo(owner string) func(*store.TaskRecord) {
	return func(tr *store.TaskRecord) {
		tr.LeaseOwner = owner
		until := epoch.Add(time.Hour)
		tr.LeaseExpiresAt = &until
	}
}

// findTask reads a task as an admin would, failing the test on an error.
func (e *env) findTask(id string) *store.TaskRecord {
	e.t.Helper()
	tr, _, err := e.s.FindTask(e.ctx, id, store.Viewer{Admin: true})
	if err != nil {
		e.t.Fatalf("find task %s: %v", id, err)
	}
	return tr
}

// claim claims the next task for runner "r1" with a one-minute lease.
func (e *env) claim(maxPerWorkspace int, skip ...string) (*store.TaskRecord, error) {
	now := e.tick()
	return e.s.ClaimTask(e.ctx, "r1", now, now.Add(time.Minute), maxPerWorkspace, 0, skip)
}

// mustClaim claims the next task and checks it is want.
func (e *env) mustClaim(want *store.TaskRecord, maxPerWorkspace int, skip ...string) {
	e.t.Helper()
	got, err := e.claim(maxPerWorkspace, skip...)
	if err != nil {
		e.t.Fatalf("claim, want %s: %v", want.Prompt, err)
	}
	if got.ID != want.ID {
		e.t.Fatalf("claimed %q, want %q", got.Prompt, want.Prompt)
	}
}

func prompt(p string) func(*store.TaskRecord) {
	return func(tr *store.TaskRecord) { tr.Prompt = p }
}

func ids(list []*store.TaskRecord) []string {
	out := make([]string, len(list))
	for i, tr := range list {
		out[i] = tr.ID
	}
	return out
}

func testFindTaskVisibility(t *testing.T, e *env) {
	owner, editor, stranger, root := e.user(), e.user(), e.user(), e.admin()
	w := e.workspace(owner)
	e.member(w, editor, store.WorkspaceEditor)
	tr := e.task(w, store.TaskRunning, leasedTo("r1"), func(tr *store.TaskRecord) {
		tr.Tags = []string{"x"}
		tr.Metadata = map[string]string{"k": "v"}
		tr.Progress = &taskdoc.Progress{Current: 1, Total: 5, Percentage: 20, Message: "turn 1 of 5"}
		tr.SessionID = "sess"
		tr.CostUSD = 0.5
	})
	for _, c := range []struct {
		who  string
		v    store.Viewer
		role store.WorkspaceRole
	}{
		{"owner", viewerOf(owner), store.WorkspaceOwner},
		{"member", viewerOf(editor), store.WorkspaceEditor},
		{"admin", viewerOf(root), store.WorkspaceAdmin},
	} {
		got, role, err := e.s.FindTask(e.ctx, tr.ID, c.v)
		must(t, err)
		equal(t, "task read by "+c.who, got, tr)
		equal(t, "role of "+c.who, role, c.role)
	}
	_, _, err := e.s.FindTask(e.ctx, tr.ID, viewerOf(stranger))
	wantMessage(t, err, fault.ErrNotFound, "task not found")
	_, _, err = e.s.FindTask(e.ctx, tr.ID, store.Viewer{UserID: root.ID})
	wantMessage(t, err, fault.ErrNotFound, "task not found")
	_, _, err = e.s.FindTask(e.ctx, uuid.NewString(), viewerOf(root))
	wantMessage(t, err, fault.ErrNotFound, "task not found")
}

func testListTasks(t *testing.T, e *env) {
	ann, bob, root := e.user(), e.user(), e.admin()
	a := e.workspace(ann)
	b := e.workspace(bob)
	a1 := e.task(a, store.TaskSucceeded)
	a2 := e.task(a, store.TaskQueued, func(tr *store.TaskRecord) { tr.Type = store.TaskGitOperation })
	b1 := e.task(b, store.TaskQueued)
	a3 := e.task(a, store.TaskQueued)
	same := a3.CreatedAt
	// Two tasks created at one instant come by id, descending.
	x := e.task(b, store.TaskRunning, func(tr *store.TaskRecord) { tr.CreatedAt = same; tr.ID = "zzzz-" + uuid.NewString() })
	y := e.task(b, store.TaskRunning, func(tr *store.TaskRecord) { tr.CreatedAt = same; tr.ID = "0000-" + uuid.NewString() })

	list := func(f store.TaskFilter) ([]string, int64) {
		t.Helper()
		got, total, err := e.s.ListTasks(e.ctx, f)
		must(t, err)
		return ids(got), total
	}
	check := func(what string, f store.TaskFilter, want []*store.TaskRecord, total int64) {
		t.Helper()
		got, n := list(f)
		equal(t, what, got, ids(want))
		equal(t, what+" total", n, total)
	}
	check("ann's", store.TaskFilter{Viewer: viewerOf(ann)}, []*store.TaskRecord{a3, a2, a1}, 3)
	check("admin's", store.TaskFilter{Viewer: viewerOf(root)}, []*store.TaskRecord{x, a3, y, b1, a2, a1}, 6)
	check("a page", store.TaskFilter{Viewer: viewerOf(root), Offset: 1, Limit: 2}, []*store.TaskRecord{a3, y}, 6)
	check("queued", store.TaskFilter{Viewer: viewerOf(root), Status: store.TaskQueued}, []*store.TaskRecord{a3, b1, a2}, 3)
	check("git", store.TaskFilter{Viewer: viewerOf(root), Type: store.TaskGitOperation}, []*store.TaskRecord{a2}, 1)
	check("workspace b", store.TaskFilter{Viewer: viewerOf(root), WorkspaceID: b.ID}, []*store.TaskRecord{x, y, b1}, 3)
	check("another's workspace", store.TaskFilter{Viewer: viewerOf(ann), WorkspaceID: b.ID}, nil, 0)
	e.member(b, ann, store.WorkspaceViewer)
	check("shared with ann", store.TaskFilter{Viewer: viewerOf(ann), Status: store.TaskQueued}, []*store.TaskRecord{a3, b1, a2}, 3)

	_, _, err := e.s.ListTasks(e.ctx, store.TaskFilter{Viewer: viewerOf(root), Status: "done"})
	wantFault(t, err, fault.ErrInvalid)
	_, _, err = e.s.ListTasks(e.ctx, store.TaskFilter{Viewer: viewerOf(root), Type: "shell"})
	wantFault(t, err, fault.ErrInvalid)
	got, _, err := e.s.ListTasks(e.ctx, store.TaskFilter{Viewer: viewerOf(e.user())})
	must(t, err)
	if got == nil {
		t.Fatal("an empty list is nil")
	}
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
	got, err := e.s.ClaimTask(e.ctx, "runner-1", now, now.Add(time.Minute), 0, 0, nil)
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
				tr, err := e.s.ClaimTask(e.ctx, fmt.Sprintf("r%d", r), now, now.Add(time.Minute), 0, 0, nil)
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

// logs returns n entries of task tr numbered from first.
func logs(tr *store.TaskRecord, first int64, n int) []store.LogEntry {
	out := make([]store.LogEntry, n)
	for i := range out {
		seq := first + int64(i)
		out[i] = store.LogEntry{
			TaskID:  tr.ID,
			Seq:     seq,
			Time:    micro(epoch.Add(time.Duration(seq) * time.Millisecond)),
			Level:   store.LogInfo,
			Source:  store.LogStdout,
			Message: fmt.Sprintf("line %d", seq),
		}
	}
	return out
}

func testTaskLogs(t *testing.T, e *env) {
	owner := e.user()
	w := e.workspace(owner)
	tr := e.task(w, store.TaskRunning)
	other := e.task(w, store.TaskRunning)

	seq, err := e.s.LastLogSeq(e.ctx, tr.ID)
	must(t, err)
	equal(t, "last seq of an empty log", seq, int64(0))

	entries := logs(tr, 1, 450) // several INSERTs in one call
	entries[7].Level, entries[7].Source = store.LogError, store.LogTool
	entries[7].Fields = json.RawMessage(`{"tool":"Bash","input":{"command":"ls"}}`)
	entries[8].Message = "ünïcödé \x00 and a\nnewline"
	must(t, e.s.AppendTaskLogs(e.ctx, entries))
	must(t, e.s.AppendTaskLogs(e.ctx, logs(other, 1, 3)))
	must(t, e.s.AppendTaskLogs(e.ctx, nil))

	seq, err = e.s.LastLogSeq(e.ctx, tr.ID)
	must(t, err)
	equal(t, "last seq", seq, int64(450))
	all, err := e.s.ListTaskLogs(e.ctx, tr.ID, 0, 0)
	must(t, err)
	equal(t, "all", all, entries)
	page, err := e.s.ListTaskLogs(e.ctx, tr.ID, 100, 50)
	must(t, err)
	equal(t, "page", page, entries[100:150])
	page, err = e.s.ListTaskLogs(e.ctx, tr.ID, 450, 10)
	must(t, err)
	equal(t, "after the end", page, []store.LogEntry{})
	page, err = e.s.ListTaskLogs(e.ctx, other.ID, 0, 10)
	must(t, err)
	equal(t, "other task", len(page), 3)
}

// testTaskLogsLargeBatch appends, in one call, more lines than one
// statement of seven parameters a row could carry on any engine (SQLite
// binds at most 32766 parameters, Postgres 65535).
func testTaskLogsLargeBatch(t *testing.T, e *env) {
	owner := e.user()
	w := e.workspace(owner)
	tr := e.task(w, store.TaskRunning)
	entries := logs(tr, 1, 10000)
	entries[9999].Fields = json.RawMessage(`{"last":true}`)
	must(t, e.s.AppendTaskLogs(e.ctx, entries))
	all, err := e.s.ListTaskLogs(e.ctx, tr.ID, 0, 0)
	must(t, err)
	equal(t, "stored", len(all), len(entries))
	equal(t, "first", all[0], entries[0])
	equal(t, "last", all[9999], entries[9999])

	// A duplicate at the very end refuses the whole batch.
	batch := logs(tr, 10001, 9999)
	batch = append(batch, logs(tr, 1, 1)...)
	wantFault(t, e.s.AppendTaskLogs(e.ctx, batch), fault.ErrConflict)
	seq, err := e.s.LastLogSeq(e.ctx, tr.ID)
	must(t, err)
	equal(t, "last seq after a refused batch", seq, int64(10000))
}

func testTaskLogsRefused(t *testing.T, e *env) {
	owner := e.user()
	w := e.workspace(owner)
	tr := e.task(w, store.TaskRunning)
	must(t, e.s.AppendTaskLogs(e.ctx, logs(tr, 1, 10)))

	// A batch with one duplicate is refused whole.
	batch := logs(tr, 11, 300)
	batch = append(batch, logs(tr, 5, 1)...)
	wantFault(t, e.s.AppendTaskLogs(e.ctx, batch), fault.ErrConflict)
	seq, err := e.s.LastLogSeq(e.ctx, tr.ID)
	must(t, err)
	equal(t, "last seq after a refused batch", seq, int64(10))

	missing := &store.TaskRecord{ID: uuid.NewString()}
	wantMessage(t, e.s.AppendTaskLogs(e.ctx, logs(missing, 1, 2)), fault.ErrNotFound, "task not found")
	bad := logs(tr, 11, 1)
	bad[0].Level = "fatal"
	wantFault(t, e.s.AppendTaskLogs(e.ctx, bad), fault.ErrInvalid)
	bad = logs(tr, 11, 1)
	bad[0].Source = "kernel"
	wantFault(t, e.s.AppendTaskLogs(e.ctx, bad), fault.ErrInvalid)
	bad = logs(tr, 11, 1)
	bad[0].Fields = []byte(`{nope`)
	wantFault(t, e.s.AppendTaskLogs(e.ctx, bad), fault.ErrInvalid)
}

func testTaskLogRetention(t *testing.T, e *env) {
	owner := e.user()
	w := e.workspace(owner)
	completed := func(at time.Time) func(*store.TaskRecord) {
		return func(tr *store.TaskRecord) { tr.CompletedAt = &at }
	}
	old := e.task(w, store.TaskSucceeded, completed(epoch.Add(time.Hour)))
	recent := e.task(w, store.TaskFailed, completed(epoch.Add(3*time.Hour)))
	running := e.task(w, store.TaskRunning)
	for _, tr := range []*store.TaskRecord{old, recent, running} {
		must(t, e.s.AppendTaskLogs(e.ctx, logs(tr, 1, 5)))
	}
	n, err := e.s.DeleteTaskLogsBefore(e.ctx, epoch.Add(2*time.Hour))
	must(t, err)
	equal(t, "deleted", n, int64(5))
	for _, c := range []struct {
		tr   *store.TaskRecord
		want int64
	}{{old, 0}, {recent, 5}, {running, 5}} {
		seq, err := e.s.LastLogSeq(e.ctx, c.tr.ID)
		must(t, err)
		equal(t, "last seq of "+c.tr.ID, seq, c.want)
	}
	equal(t, "task kept", e.findTask(old.ID).Status, store.TaskSucceeded)
}

func testSumTaskCost(t *testing.T, e *env) {
	ann, bob := e.user(), e.user()
	a := e.workspace(ann)
	e.member(a, bob, store.WorkspaceEditor)
	e.task(a, store.TaskSucceeded, costing(5)) // before since
	since := e.tick()
	e.task(a, store.TaskSucceeded, costing(0.5))
	e.task(a, store.TaskFailed, costing(0.25))
	e.task(a, store.TaskSucceeded, costing(7), func(tr *store.TaskRecord) { tr.Type = store.TaskDockerBuild })
	e.task(a, store.TaskSucceeded, costing(11), func(tr *store.TaskRecord) { tr.CreatedBy = bob.ID })

	sum, err := e.s.SumTaskCost(e.ctx, ann.ID, since)
	must(t, err)
	equal(t, "ann's cost", sum, 0.75)
	sum, err = e.s.SumTaskCost(e.ctx, bob.ID, since)
	must(t, err)
	equal(t, "bob's cost", sum, 11.0)
	sum, err = e.s.SumTaskCost(e.ctx, e.user().ID, since)
	must(t, err)
	equal(t, "nobody's cost", sum, 0.0)
}
