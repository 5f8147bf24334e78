package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/berthhq/berth/internal/fault"
	"github.com/berthhq/berth/internal/store"
)

// quotaTests hold the per-user quotas the store enforces: queued tasks,
// owned workspaces and running tasks (the fair share of the queue).
var quotaTests = []test{
	{"QueuedTasks", testQueuedQuota},
	{"QueuedTasksConcurrent", testQueuedQuotaConcurrent},
	{"Workspaces", testWorkspaceQuota},
	{"WorkspacesConcurrent", testWorkspaceQuotaConcurrent},
	{"ClaimPerUser", testClaimPerUser},
	{"ClaimPerUserConcurrent", testClaimPerUserConcurrent},
}

// concurrent is how many calls the race tests make at once.
const concurrent = 20

// newTask returns a queued task of w's owner in w, not stored.
func (e *env) newTask(w *store.Workspace) *store.TaskRecord {
	return &store.TaskRecord{
		ID: uuid.NewString(), WorkspaceID: w.ID, CreatedBy: w.OwnerID, Type: store.TaskClaudeChat,
		Status: store.TaskQueued, Priority: store.TaskPriorityMedium, Prompt: "p", CreatedAt: e.tick(),
	}
}

// countTasks counts the tasks of user in status.
func (e *env) countTasks(user *store.User, status store.TaskStatus) int64 {
	e.t.Helper()
	_, n, err := e.s.ListTasks(e.ctx, store.TaskFilter{Viewer: viewerOf(user), Status: status, Limit: 1})
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

func testQueuedQuota(t *testing.T, e *env) {
	u, other := e.user(), e.user()
	w, ow := e.workspace(u), e.workspace(other)
	e.task(w, store.TaskRunning) // running tasks do not count
	for range 3 {
		must(t, e.s.CreateTaskRecordWithin(e.ctx, e.newTask(w), 3))
	}
	wantMessage(t, e.s.CreateTaskRecordWithin(e.ctx, e.newTask(w), 3), fault.ErrResourceExhausted,
		"quota max-queued-per-user (3) reached: you have 3 tasks waiting in the queue; wait for some to start, or cancel some")
	must(t, e.s.CreateTaskRecordWithin(e.ctx, e.newTask(ow), 3)) // another user's queue is their own
	must(t, e.s.CreateTaskRecordWithin(e.ctx, e.newTask(w), 0))  // 0 is no cap
	equal(t, "queued", e.countTasks(u, store.TaskQueued), int64(4))
	// One leaves the queue: there is room for one more under a cap of 4.
	e.mustClaim(e.firstQueued(u), 0)
	must(t, e.s.CreateTaskRecordWithin(e.ctx, e.newTask(w), 4))
	wantFault(t, e.s.CreateTaskRecordWithin(e.ctx, e.newTask(w), 4), fault.ErrResourceExhausted)
}

// firstQueued is the task the queue gives next of those u may see.
func (e *env) firstQueued(u *store.User) *store.TaskRecord {
	e.t.Helper()
	list, _, err := e.s.ListTasks(e.ctx, store.TaskFilter{Viewer: viewerOf(u), Status: store.TaskQueued, Limit: 100})
	if err != nil || len(list) == 0 {
		e.t.Fatalf("queued tasks of %s: %d, %v", u.Email, len(list), err)
	}
	return list[len(list)-1] // oldest: ListTasks is newest first, and all have one priority
}

func testQueuedQuotaConcurrent(t *testing.T, e *env) {
	u := e.user()
	w := e.workspace(u)
	const limit = 5
	ok, refused := race(t, concurrent, func() error { return e.s.CreateTaskRecordWithin(e.ctx, e.newTask(w), limit) })
	equal(t, "created", ok, limit)
	equal(t, "refused", refused, concurrent-limit)
	equal(t, "queued", e.countTasks(u, store.TaskQueued), int64(limit))
}

func testWorkspaceQuota(t *testing.T, e *env) {
	u, other := e.user(), e.user()
	for range 2 {
		must(t, e.s.CreateWorkspaceWithin(e.ctx, e.newWorkspace(u), 2))
	}
	wantMessage(t, e.s.CreateWorkspaceWithin(e.ctx, e.newWorkspace(u), 2), fault.ErrResourceExhausted,
		"quota max-workspaces-per-user (2) reached: you own 2 workspaces (archived ones count); delete one first")
	must(t, e.s.CreateWorkspaceWithin(e.ctx, e.newWorkspace(other), 2))
	must(t, e.s.CreateWorkspaceWithin(e.ctx, e.newWorkspace(u), 0))
	// Being a member of another's workspace does not count.
	e.member(e.workspace(other), u, store.WorkspaceEditor)
	must(t, e.s.CreateWorkspaceWithin(e.ctx, e.newWorkspace(u), 4))
	wantFault(t, e.s.CreateWorkspaceWithin(e.ctx, e.newWorkspace(u), 4), fault.ErrResourceExhausted)
}

func testWorkspaceQuotaConcurrent(t *testing.T, e *env) {
	u := e.user()
	const limit = 4
	ok, refused := race(t, concurrent, func() error { return e.s.CreateWorkspaceWithin(e.ctx, e.newWorkspace(u), limit) })
	equal(t, "created", ok, limit)
	equal(t, "refused", refused, concurrent-limit)
	_, n, err := e.s.ListWorkspaces(e.ctx, store.WorkspaceFilter{Viewer: viewerOf(u), Limit: 1})
	must(t, err)
	equal(t, "workspaces", n, int64(limit))
}

// race runs call n times at once and counts the calls that succeeded and
// those refused with fault.ErrResourceExhausted; any other error fails t.
func race(t *testing.T, n int, call func() error) (ok, refused int) {
	t.Helper()
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = call()
		})
	}
	close(start)
	wg.Wait()
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, fault.ErrResourceExhausted):
			refused++
		default:
			t.Fatalf("call: %v", err)
		}
	}
	return ok, refused
}

func testClaimPerUser(t *testing.T, e *env) {
	busy, patient := e.user(), e.user()
	var mine []*store.TaskRecord
	for range 3 { // three workspaces, so the per-workspace cap is no reason
		mine = append(mine, e.queued(e.workspace(busy), store.TaskPriorityHigh))
	}
	theirs := e.queued(e.workspace(patient), store.TaskPriorityLow)
	claimUser := func(maxPerUser int) (*store.TaskRecord, error) {
		now := e.tick()
		return e.s.ClaimTask(e.ctx, "r1", func() time.Time { return now }, time.Minute, 1, maxPerUser, nil)
	}
	for i := range 2 {
		got, err := claimUser(2)
		must(t, err)
		equal(t, fmt.Sprintf("claim %d", i), got.ID, mine[i].ID)
	}
	// busy runs 2, its cap: patient's low-priority task goes first.
	got, err := claimUser(2)
	must(t, err)
	equal(t, "claim past the cap", got.ID, theirs.ID)
	_, err = claimUser(2)
	wantFault(t, err, fault.ErrNotFound)
	// A task of busy's ends: its third one may start.
	_, err = e.s.FinishTask(e.ctx, mine[0].ID, []store.TaskStatus{store.TaskRunning}, store.TaskSucceeded, store.TaskFinish{})
	must(t, err)
	got, err = claimUser(2)
	must(t, err)
	equal(t, "claim after one ended", got.ID, mine[2].ID)
}

func testClaimPerUserConcurrent(t *testing.T, e *env) {
	const users, perUser, runners = 4, 5, 6
	var all []*store.User
	for range users {
		u := e.user()
		all = append(all, u)
		for range perUser {
			e.queued(e.workspace(u), store.TaskPriorityMedium)
		}
	}
	now := e.tick()
	var wg sync.WaitGroup
	errs := make(chan error, runners)
	for r := range runners {
		wg.Go(func() {
			for {
				_, err := e.s.ClaimTask(e.ctx, fmt.Sprintf("r%d", r), func() time.Time { return now }, time.Minute, 0, 1, nil)
				if errors.Is(err, fault.ErrNotFound) {
					return
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("claim: %v", err)
	}
	for _, u := range all {
		equal(t, "running of "+u.Email, e.countTasks(u, store.TaskRunning), int64(1))
	}
}
