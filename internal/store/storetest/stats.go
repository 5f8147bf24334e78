package storetest

import (
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/berthhq/berth/internal/fault"
	"github.com/berthhq/berth/internal/store"
	"github.com/berthhq/berth/internal/taskdoc"
)

var statsTests = []test{
	{"PerWorkspace", testWorkspaceStats},
	{"CountStats", testCountStats},
	{"TaskSeries", testTaskSeries},
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

func testTaskSeries(t *testing.T, e *env) {
	ann, bob, root := e.user(), e.user(), e.admin()
	// cy has no display name: her group is named by her email.
	cy := e.user(func(u *store.User) { u.Name = "" })
	alpha := e.workspace(ann, named("alpha"))
	beta := e.workspace(ann, named("beta"))
	private := e.workspace(bob, named("private"))
	e.member(alpha, cy, store.WorkspaceEditor)

	day0 := time.Date(2026, time.March, 10, 0, 0, 0, 0, time.UTC)
	day1 := day0.Add(24 * time.Hour)
	at := func(d time.Duration, by *store.User, usd float64) func(*store.TaskRecord) {
		return func(tr *store.TaskRecord) {
			tr.CreatedAt = day0.Add(d)
			tr.CostUSD = usd
			tr.CreatedBy = ""
			if by != nil {
				tr.CreatedBy = by.ID
			}
		}
	}
	e.task(alpha, store.TaskQueued, at(-time.Microsecond, ann, 4)) // the day before
	e.task(alpha, store.TaskSucceeded, at(time.Hour, ann, 0.5))
	e.task(alpha, store.TaskFailed, at(90*time.Minute, ann, 0.25))
	e.task(alpha, store.TaskSucceeded, at(70*time.Minute, cy, 1))
	e.task(alpha, store.TaskQueued, at(24*time.Hour-time.Microsecond, nil, 0)) // an account since deleted
	e.task(beta, store.TaskRunning, at(24*time.Hour, ann, 0))
	e.task(beta, store.TaskCancelled, at(48*time.Hour, ann, 16)) // at the end of the range: out
	e.task(private, store.TaskSucceeded, at(2*time.Hour, bob, 8))

	type point = store.SeriesPoint
	byGroup := func(ps ...point) []point {
		slices.SortStableFunc(ps, func(a, b point) int {
			if c := a.BucketStart.Compare(b.BucketStart); c != 0 {
				return c
			}
			return strings.Compare(a.Group, b.Group)
		})
		return ps
	}
	days := func(v store.Viewer, global bool, g store.SeriesGroup) store.SeriesFilter {
		// Start is rounded down to its day.
		return store.SeriesFilter{Viewer: v, Global: global, Start: day0.Add(5 * time.Hour), End: day0.Add(48 * time.Hour), Bucket: 24 * time.Hour, Group: g}
	}
	tests := []struct {
		who  string
		f    store.SeriesFilter
		want []point
	}{
		{"ann by day", days(viewerOf(ann), false, store.SeriesUngrouped), []point{
			{BucketStart: day0, TasksByStatus: map[string]int64{"succeeded": 2, "failed": 1, "queued": 1}, CostUSD: 1.75},
			{BucketStart: day1, TasksByStatus: map[string]int64{"running": 1}},
		}},
		{"ann by day and workspace", days(viewerOf(ann), false, store.SeriesByWorkspace), []point{
			{BucketStart: day0, Group: alpha.ID, GroupName: "alpha", TasksByStatus: map[string]int64{"succeeded": 2, "failed": 1, "queued": 1}, CostUSD: 1.75},
			{BucketStart: day1, Group: beta.ID, GroupName: "beta", TasksByStatus: map[string]int64{"running": 1}},
		}},
		{"ann by hour and user", store.SeriesFilter{Viewer: viewerOf(ann), Start: day0, End: day1, Bucket: time.Hour, Group: store.SeriesByUser}, byGroup(
			point{BucketStart: day0.Add(time.Hour), Group: ann.ID, GroupName: ann.Name, TasksByStatus: map[string]int64{"succeeded": 1, "failed": 1}, CostUSD: 0.75},
			point{BucketStart: day0.Add(time.Hour), Group: cy.ID, GroupName: cy.Email, TasksByStatus: map[string]int64{"succeeded": 1}, CostUSD: 1},
			point{BucketStart: day0.Add(23 * time.Hour), TasksByStatus: map[string]int64{"queued": 1}},
		)},
		{"cy, a member of alpha only", days(viewerOf(cy), false, store.SeriesUngrouped), []point{
			{BucketStart: day0, TasksByStatus: map[string]int64{"succeeded": 2, "failed": 1, "queued": 1}, CostUSD: 1.75},
		}},
		{"bob, who sees only his own", days(viewerOf(bob), false, store.SeriesByUser), []point{
			{BucketStart: day0, Group: bob.ID, GroupName: bob.Name, TasksByStatus: map[string]int64{"succeeded": 1}, CostUSD: 8},
		}},
		{"global", days(viewerOf(root), true, store.SeriesUngrouped), []point{
			{BucketStart: day0, TasksByStatus: map[string]int64{"succeeded": 3, "failed": 1, "queued": 1}, CostUSD: 9.75},
			{BucketStart: day1, TasksByStatus: map[string]int64{"running": 1}},
		}},
		{"global by workspace", days(viewerOf(root), true, store.SeriesByWorkspace), byGroup(
			point{BucketStart: day0, Group: alpha.ID, GroupName: "alpha", TasksByStatus: map[string]int64{"succeeded": 2, "failed": 1, "queued": 1}, CostUSD: 1.75},
			point{BucketStart: day0, Group: private.ID, GroupName: "private", TasksByStatus: map[string]int64{"succeeded": 1}, CostUSD: 8},
			point{BucketStart: day1, Group: beta.ID, GroupName: "beta", TasksByStatus: map[string]int64{"running": 1}},
		)},
		{"the day before, by hour", store.SeriesFilter{Viewer: viewerOf(ann), Start: day0.Add(-time.Hour), End: day0.Add(time.Hour), Bucket: time.Hour}, []point{
			{BucketStart: day0.Add(-time.Hour), TasksByStatus: map[string]int64{"queued": 1}, CostUSD: 4},
		}},
		{"an admin counted as a plain user owns nothing", days(store.Viewer{UserID: root.ID}, false, store.SeriesUngrouped), []point{}},
		{"an empty range", store.SeriesFilter{Viewer: viewerOf(ann), Start: day0.Add(72 * time.Hour), End: day0.Add(96 * time.Hour), Bucket: 24 * time.Hour}, []point{}},
	}
	for _, tt := range tests {
		got, err := e.s.TaskSeries(e.ctx, tt.f)
		must(t, err)
		equal(t, "series for "+tt.who, got, tt.want)
	}
}
