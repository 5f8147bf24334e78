package storetest

import (
	"math"
	"testing"

	"github.com/google/uuid"

	"github.com/berthhq/berth/internal/fault"
	"github.com/berthhq/berth/internal/store"
	"github.com/berthhq/berth/internal/taskdoc"
)

var statsTests = []test{
	{"PerWorkspace", testWorkspaceStats},
	{"CountStats", testCountStats},
}

var taskTests = []test{
	{"CreateRefused", testCreateTaskRefused},
}

func testWorkspaceStats(t *testing.T, e *env) {
	owner := e.user()
	busy := e.workspace(owner, named("busy"))
	quiet := e.workspace(owner, named("quiet"))
	idle := e.workspace(owner, named("idle"))
	for _, s := range []store.TaskStatus{
		store.TaskQueued, store.TaskRunning, store.TaskRunning, store.TaskSucceeded,
		store.TaskFailed, store.TaskCancelled, store.TaskTimedOut,
	} {
		e.task(busy, s)
	}
	e.task(quiet, store.TaskSucceeded)
	want := map[string]store.WorkspaceStats{
		"busy":  {TotalTasks: 7, RunningTasks: 2, CompletedTasks: 1, FailedTasks: 1, CancelledTasks: 1, TimedOutTasks: 1},
		"quiet": {TotalTasks: 1, CompletedTasks: 1},
		"idle":  {},
	}
	for _, w := range []*store.Workspace{busy, quiet, idle} {
		got, err := e.s.FindWorkspace(e.ctx, w.ID, viewerOf(owner))
		must(t, err)
		equal(t, "stats of "+w.Name, got.Stats, want[w.Name])
	}
	ws, _ := e.list(store.WorkspaceFilter{Viewer: viewerOf(owner)})
	equal(t, "listed", len(ws), 3)
	for _, w := range ws {
		equal(t, "listed stats of "+w.Name, w.Stats, want[w.Name])
	}
	updated, err := e.s.UpdateWorkspace(e.ctx, busy.ID, store.WorkspaceUpdate{Description: ptr("still busy")}, e.tick())
	must(t, err)
	equal(t, "stats after update", updated.Stats, want["busy"])
}

func testCountStats(t *testing.T, e *env) {
	ann, bob, cy, root := e.user(), e.user(), e.user(), e.admin()
	a1 := e.workspace(ann, func(w *store.Workspace) { w.Status = store.WorkspaceRunning })
	a2 := e.workspace(ann, func(w *store.Workspace) { w.Status = store.WorkspaceArchived })
	b1 := e.workspace(bob, func(w *store.Workspace) { w.Status = store.WorkspaceStopped })
	e.member(a1, bob, store.WorkspaceViewer)

	e.task(a1, store.TaskSucceeded, costing(0.5))
	e.task(a1, store.TaskSucceeded, costing(0.25))
	e.task(a1, store.TaskRunning)
	e.task(a2, store.TaskFailed, costing(1))
	e.task(b1, store.TaskQueued)
	e.task(b1, store.TaskCancelled, costing(2))

	tests := []struct {
		who    string
		v      store.Viewer
		global bool
		want   store.Stats
	}{
		{"ann", viewerOf(ann), false, store.Stats{
			Workspaces:         2,
			WorkspacesByStatus: map[store.WorkspaceStatus]int64{store.WorkspaceRunning: 1, store.WorkspaceArchived: 1},
			Tasks:              4,
			TasksByStatus:      map[string]int64{"succeeded": 2, "running": 1, "failed": 1},
			TotalCostUSD:       1.75,
		}},
		{"bob, owner of one and member of another", viewerOf(bob), false, store.Stats{
			Workspaces:         2,
			WorkspacesByStatus: map[store.WorkspaceStatus]int64{store.WorkspaceRunning: 1, store.WorkspaceStopped: 1},
			Tasks:              5,
			TasksByStatus:      map[string]int64{"succeeded": 2, "running": 1, "queued": 1, "cancelled": 1},
			TotalCostUSD:       2.75,
		}},
		{"cy, with nothing", viewerOf(cy), false, store.Stats{
			WorkspacesByStatus: map[store.WorkspaceStatus]int64{},
			TasksByStatus:      map[string]int64{},
		}},
		{"global", viewerOf(root), true, store.Stats{
			Users:              4,
			Workspaces:         3,
			WorkspacesByStatus: map[store.WorkspaceStatus]int64{store.WorkspaceRunning: 1, store.WorkspaceArchived: 1, store.WorkspaceStopped: 1},
			Tasks:              6,
			TasksByStatus:      map[string]int64{"succeeded": 2, "running": 1, "failed": 1, "queued": 1, "cancelled": 1},
			TotalCostUSD:       3.75,
		}},
		{"an admin's own scope sees what the admin can see", viewerOf(root), false, store.Stats{
			Workspaces:         3,
			WorkspacesByStatus: map[store.WorkspaceStatus]int64{store.WorkspaceRunning: 1, store.WorkspaceArchived: 1, store.WorkspaceStopped: 1},
			Tasks:              6,
			TasksByStatus:      map[string]int64{"succeeded": 2, "running": 1, "failed": 1, "queued": 1, "cancelled": 1},
			TotalCostUSD:       3.75,
		}},
		{"an admin counted as a plain user owns nothing", store.Viewer{UserID: root.ID}, false, store.Stats{
			WorkspacesByStatus: map[store.WorkspaceStatus]int64{},
			TasksByStatus:      map[string]int64{},
		}},
	}
	for _, tt := range tests {
		got, err := e.s.CountStats(e.ctx, tt.v, tt.global)
		must(t, err)
		equal(t, "stats for "+tt.who, got, &tt.want)
	}
}

func testCreateTaskRefused(t *testing.T, e *env) {
	owner := e.user()
	w := e.workspace(owner)
	now := e.tick()
	base := func() *store.TaskRecord {
		return &store.TaskRecord{
			ID: uuid.NewString(), WorkspaceID: w.ID, CreatedBy: owner.ID, Type: store.TaskGitOperation,
			Status: store.TaskQueued, Priority: store.TaskPriorityHigh, Git: &taskdoc.GitOp{Operation: "status"}, CreatedAt: now,
		}
	}
	tr := base()
	tr.WorkspaceID = uuid.NewString()
	wantMessage(t, e.s.CreateTaskRecord(e.ctx, tr), fault.ErrNotFound, "workspace not found")
	tr = base()
	tr.CreatedBy = uuid.NewString()
	wantMessage(t, e.s.CreateTaskRecord(e.ctx, tr), fault.ErrNotFound, "user not found")
	tr = base()
	tr.ContinueTaskID = uuid.NewString()
	wantMessage(t, e.s.CreateTaskRecord(e.ctx, tr), fault.ErrNotFound, "task not found")

	tr = base()
	must(t, e.s.CreateTaskRecord(e.ctx, tr))
	if tr.Tags == nil || tr.Metadata == nil {
		t.Fatalf("created task has nil Tags %v or Metadata %v", tr.Tags, tr.Metadata)
	}
	dup := base()
	dup.ID = tr.ID
	wantFault(t, e.s.CreateTaskRecord(e.ctx, dup), fault.ErrConflict)
	bad := base()
	bad.Config = &taskdoc.Config{MaxBudgetUSD: math.NaN()} // no JSON number
	if err := e.s.CreateTaskRecord(e.ctx, bad); err == nil {
		t.Fatal("a task with a document that cannot be JSON was stored")
	}

	st, err := e.s.CountStats(e.ctx, viewerOf(owner), false)
	must(t, err)
	equal(t, "tasks stored", st.Tasks, 1)
}
