package storetest

import (
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
	return e.s.ClaimTask(e.ctx, "r1", func() time.Time { return now }, time.Minute, maxPerWorkspace, 0, skip)
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
