package storetest

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/berthhq/berth/internal/fault"
	"github.com/berthhq/berth/internal/store"
)

var workspaceTests = []test{
	{"CreateFindDelete", testWorkspaceLifecycle},
	{"EmptyTagsAndMetadata", testWorkspaceEmptyCollections},
	{"DuplicateName", testWorkspaceDuplicateName},
	{"UnknownOwner", testWorkspaceUnknownOwner},
	{"Visibility", testWorkspaceVisibility},
	{"Search", testWorkspaceSearch},
	{"SortBytes", testWorkspaceSortBytes},
	{"Sort", testWorkspaceSort},
	{"Pagination", testWorkspacePagination},
	{"StatusFilter", testWorkspaceStatusFilter},
	{"BadFilter", testWorkspaceBadFilter},
	{"UpdateEachField", testWorkspaceUpdateEachField},
	{"UpdateRenameConflict", testWorkspaceRenameConflict},
	{"UpdateMissing", testWorkspaceUpdateMissing},
	{"UpdateIfStatus", testWorkspaceUpdateIfStatus},
	{"DeleteCascades", testWorkspaceDeleteCascades},
	{"PathsNeverOverlap", testWorkspacePathsNeverOverlap},
	{"PathsNeverOverlapConcurrently", testWorkspacePathsNeverOverlapConcurrently},
	{"ManagedAndImageID", testWorkspaceManagedAndImageID},
}

// at sets a workspace's path.
func at(path string) func(*store.Workspace) {
	return func(w *store.Workspace) { w.Path = path }
}

// Two workspaces never share a directory or nest, whoever owns them; a
// path that only starts with the same letters is another directory.
func testWorkspacePathsNeverOverlap(t *testing.T, e *env) {
	alice, mallory := e.user(), e.user()
	base := "/srv/" + uuid.NewString()
	nest := e.workspace(alice, at(base+"/nest"))
	for _, path := range []string{base + "/nest", base + "/nest/child", base + "/nest/a/b", base} {
		w := e.newWorkspace(mallory, at(path))
		err := e.s.CreateWorkspace(e.ctx, w)
		wantFault(t, err, fault.ErrConflict)
		if f, ok := errors.AsType[*fault.Error](err); !ok || strings.Contains(f.Message, nest.ID) || strings.Contains(f.Message, alice.ID) {
			t.Errorf("the overlap refusal names the other workspace or its owner: %v", err)
		}
		if _, err := e.s.FindWorkspace(e.ctx, w.ID, store.Viewer{Admin: true}); !errors.Is(err, fault.ErrNotFound) {
			t.Errorf("a refused workspace at %s was stored: %v", path, err)
		}
	}
	// Siblings and look-alikes are fine; "%" and "_" are plain characters.
	for _, path := range []string{base + "/nest2", base + "/nes", base + "/other", base + "/ne%t", base + "/nes_"} {
		e.workspace(mallory, at(path))
	}
	got, err := e.s.OverlappingWorkspaces(e.ctx, base+"/nest/x", "")
	if err != nil || !slices.Equal(got, []string{nest.ID}) {
		t.Errorf("OverlappingWorkspaces(inside nest) = %v, %v; want [%s]", got, err, nest.ID)
	}
	if got, err := e.s.OverlappingWorkspaces(e.ctx, base+"/nest", nest.ID); err != nil || len(got) != 0 {
		t.Errorf("OverlappingWorkspaces(nest, except itself) = %v, %v; want none", got, err)
	}
	if got, err := e.s.OverlappingWorkspaces(e.ctx, base+"/ne", ""); err != nil || len(got) != 0 {
		t.Errorf("OverlappingWorkspaces(a prefix that is no parent) = %v, %v; want none", got, err)
	}
	// Once nest is gone its directory is free again.
	if err := e.s.DeleteWorkspace(e.ctx, nest.ID); err != nil {
		t.Fatal(err)
	}
	e.workspace(mallory, at(base+"/nest/child"))
}

// Of workspaces created at once in directories that nest, exactly one is
// kept: the check and the insert are one step on every engine.
func testWorkspacePathsNeverOverlapConcurrently(t *testing.T, e *env) {
	owner := e.user()
	base := "/srv/" + uuid.NewString()
	paths := []string{base, base + "/a", base + "/a/b", base + "/a/b/c", base + "/a", base, base + "/a/b"}
	errs := make(chan error, len(paths))
	for _, p := range paths {
		w := e.newWorkspace(owner, at(p))
		go func() { errs <- e.s.CreateWorkspace(e.ctx, w) }()
	}
	made := 0
	for range paths {
		err := <-errs
		switch {
		case err == nil:
			made++
		case errors.Is(err, fault.ErrConflict):
		default:
			t.Errorf("CreateWorkspace: %v", err)
		}
	}
	if made != 1 {
		t.Fatalf("%d of %d nested workspaces were created at once; want exactly 1", made, len(paths))
	}
}

func testWorkspaceManagedAndImageID(t *testing.T, e *env) {
	owner := e.user()
	w := e.workspace(owner, func(w *store.Workspace) { w.Managed = true })
	got, err := e.s.FindWorkspace(e.ctx, w.ID, viewerOf(owner))
	if err != nil || !got.Managed || got.ImageID != "" {
		t.Fatalf("FindWorkspace = %+v, %v; want managed with no image id", got, err)
	}
	id := "sha256:" + strings.Repeat("ab", 32)
	upd, err := e.s.UpdateWorkspace(e.ctx, w.ID, store.WorkspaceUpdate{ImageID: &id}, e.tick())
	if err != nil || upd.ImageID != id || !upd.Managed {
		t.Fatalf("UpdateWorkspace(ImageID) = %+v, %v", upd, err)
	}
	imported := e.workspace(owner)
	if got, _ := e.s.FindWorkspace(e.ctx, imported.ID, viewerOf(owner)); got.Managed {
		t.Error("an imported workspace reads back as managed")
	}
}

// asSeen is w as a viewer with the given role reads it, with no tasks.
func asSeen(w *store.Workspace, role store.WorkspaceRole) *store.Workspace {
	c := *w
	c.AccessRole = role
	c.Stats = store.WorkspaceStats{}
	return &c
}

// list lists workspaces and fails the test on an error.
func (e *env) list(f store.WorkspaceFilter) ([]*store.Workspace, int64) {
	e.t.Helper()
	ws, total, err := e.s.ListWorkspaces(e.ctx, f)
	if err != nil {
		e.t.Fatalf("list workspaces %+v: %v", f, err)
	}
	if ws == nil {
		e.t.Fatalf("list workspaces %+v: nil slice", f)
	}
	return ws, total
}

// names returns the names of ws in order.
func names(ws []*store.Workspace) []string {
	out := make([]string, len(ws))
	for i, w := range ws {
		out[i] = w.Name
	}
	return out
}

func testWorkspaceLifecycle(t *testing.T, e *env) {
	owner := e.user()
	w := e.workspace(owner)

	got, err := e.s.FindWorkspace(e.ctx, w.ID, viewerOf(owner))
	must(t, err)
	equal(t, "found", got, asSeen(w, store.WorkspaceOwner))

	ws, total := e.list(store.WorkspaceFilter{Viewer: viewerOf(owner)})
	equal(t, "total", total, 1)
	equal(t, "listed", ws, []*store.Workspace{asSeen(w, store.WorkspaceOwner)})

	must(t, e.s.DeleteWorkspace(e.ctx, w.ID))
	_, err = e.s.FindWorkspace(e.ctx, w.ID, viewerOf(owner))
	wantMessage(t, err, fault.ErrNotFound, "workspace not found")
	wantFault(t, e.s.DeleteWorkspace(e.ctx, w.ID), fault.ErrNotFound)
	ws, total = e.list(store.WorkspaceFilter{Viewer: viewerOf(owner)})
	equal(t, "total after delete", total, 0)
	equal(t, "listed after delete", len(ws), 0)
}

func testWorkspaceEmptyCollections(t *testing.T, e *env) {
	owner := e.user()
	w := e.workspace(owner, func(w *store.Workspace) {
		w.Tags = nil
		w.Metadata = nil
	})
	got, err := e.s.FindWorkspace(e.ctx, w.ID, viewerOf(owner))
	must(t, err)
	if got.Tags == nil || len(got.Tags) != 0 {
		t.Fatalf("Tags = %#v, want an empty slice", got.Tags)
	}
	if got.Metadata == nil || len(got.Metadata) != 0 {
		t.Fatalf("Metadata = %#v, want an empty map", got.Metadata)
	}
	equal(t, "found", got, asSeen(w, store.WorkspaceOwner))
}

func testWorkspaceDuplicateName(t *testing.T, e *env) {
	owner, other := e.user(), e.user()
	e.workspace(owner, named("api"))
	dup := e.newWorkspace(owner, named("api"))
	wantMessage(t, e.s.CreateWorkspace(e.ctx, dup), fault.ErrConflict, `a workspace named "api" already exists`)
	_, err := e.s.FindWorkspace(e.ctx, dup.ID, viewerOf(owner))
	wantFault(t, err, fault.ErrNotFound)

	// Names are unique per owner only.
	e.workspace(other, named("api"))
}

func testWorkspaceUnknownOwner(t *testing.T, e *env) {
	w := e.newWorkspace(&store.User{ID: uuid.NewString()})
	wantFault(t, e.s.CreateWorkspace(e.ctx, w), fault.ErrNotFound)
}

func testWorkspaceUpdateEachField(t *testing.T, e *env) {
	owner := e.user()
	w := e.workspace(owner)
	tests := []struct {
		field string
		upd   store.WorkspaceUpdate
		apply func(w *store.Workspace)
	}{
		{"nothing", store.WorkspaceUpdate{}, func(*store.Workspace) {}},
		{"name", store.WorkspaceUpdate{Name: ptr("renamed")}, func(w *store.Workspace) { w.Name = "renamed" }},
		{"description", store.WorkspaceUpdate{Description: ptr("new words")}, func(w *store.Workspace) { w.Description = "new words" }},
		{"description cleared", store.WorkspaceUpdate{Description: ptr("")}, func(w *store.Workspace) { w.Description = "" }},
		{"git url", store.WorkspaceUpdate{GitURL: ptr("https://git.example.com/x.git")}, func(w *store.Workspace) { w.GitURL = "https://git.example.com/x.git" }},
		{"branch", store.WorkspaceUpdate{Branch: ptr("develop")}, func(w *store.Workspace) { w.Branch = "develop" }},
		{"tags", store.WorkspaceUpdate{Tags: ptr([]string{"rust", "cli", "x"})}, func(w *store.Workspace) { w.Tags = []string{"rust", "cli", "x"} }},
		{"tags cleared", store.WorkspaceUpdate{Tags: ptr([]string(nil))}, func(w *store.Workspace) { w.Tags = []string{} }},
		{"metadata", store.WorkspaceUpdate{Metadata: ptr(map[string]string{"a": "1", "b": "2"})}, func(w *store.Workspace) { w.Metadata = map[string]string{"a": "1", "b": "2"} }},
		{"metadata cleared", store.WorkspaceUpdate{Metadata: ptr(map[string]string{})}, func(w *store.Workspace) { w.Metadata = map[string]string{} }},
		{"status", store.WorkspaceUpdate{Status: ptr(store.WorkspaceRunning)}, func(w *store.Workspace) { w.Status = store.WorkspaceRunning }},
		{"status reason", store.WorkspaceUpdate{StatusReason: ptr("container exited")}, func(w *store.Workspace) { w.StatusReason = "container exited" }},
		{"container id", store.WorkspaceUpdate{ContainerID: ptr("c0ffee")}, func(w *store.Workspace) { w.ContainerID = "c0ffee" }},
		{"disk usage", store.WorkspaceUpdate{DiskUsageMB: ptr(int64(4096))}, func(w *store.Workspace) { w.DiskUsageMB = 4096 }},
		{"image", store.WorkspaceUpdate{Image: ptr("berth-build/x:v1")}, func(w *store.Workspace) { w.Image = "berth-build/x:v1" }},
		{"image cleared", store.WorkspaceUpdate{Image: ptr("")}, func(w *store.Workspace) { w.Image = "" }},
		{"container and image id", store.WorkspaceUpdate{ContainerID: ptr("c0ffee2"), ImageID: ptr("sha256:ab")}, func(w *store.Workspace) {
			w.ContainerID, w.ImageID = "c0ffee2", "sha256:ab"
		}},
		{"several", store.WorkspaceUpdate{Status: ptr(store.WorkspaceError), StatusReason: ptr("oom"), ContainerID: ptr("")}, func(w *store.Workspace) {
			w.Status, w.StatusReason, w.ContainerID = store.WorkspaceError, "oom", ""
		}},
	}
	want := asSeen(w, "")
	for _, tt := range tests {
		now := e.tick()
		got, err := e.s.UpdateWorkspace(e.ctx, w.ID, tt.upd, now)
		must(t, err)
		tt.apply(want)
		want.UpdatedAt = micro(now)
		equal(t, "update "+tt.field, got, want)
		found, err := e.s.FindWorkspace(e.ctx, w.ID, viewerOf(owner))
		must(t, err)
		equal(t, "read after update "+tt.field, found, asSeen(want, store.WorkspaceOwner))
	}
}

func testWorkspaceRenameConflict(t *testing.T, e *env) {
	owner, other := e.user(), e.user()
	e.workspace(owner, named("taken"))
	w := e.workspace(owner, named("free"))
	e.workspace(other, named("elsewhere"))

	_, err := e.s.UpdateWorkspace(e.ctx, w.ID, store.WorkspaceUpdate{Name: ptr("taken"), Description: ptr("lost")}, e.tick())
	wantMessage(t, err, fault.ErrConflict, `a workspace named "taken" already exists`)
	got, err := e.s.FindWorkspace(e.ctx, w.ID, viewerOf(owner))
	must(t, err)
	equal(t, "after a failed rename", got, asSeen(w, store.WorkspaceOwner))

	// Another owner's name is free, and so is the workspace's own.
	_, err = e.s.UpdateWorkspace(e.ctx, w.ID, store.WorkspaceUpdate{Name: ptr("elsewhere")}, e.tick())
	must(t, err)
	_, err = e.s.UpdateWorkspace(e.ctx, w.ID, store.WorkspaceUpdate{Name: ptr("elsewhere")}, e.tick())
	must(t, err)
}

func testWorkspaceUpdateMissing(t *testing.T, e *env) {
	_, err := e.s.UpdateWorkspace(e.ctx, uuid.NewString(), store.WorkspaceUpdate{Name: ptr("x")}, e.tick())
	wantMessage(t, err, fault.ErrNotFound, "workspace not found")
	_, err = e.s.UpdateWorkspace(e.ctx, uuid.NewString(), store.WorkspaceUpdate{}, e.tick())
	wantFault(t, err, fault.ErrNotFound)
}

// testWorkspaceUpdateIfStatus: a conditional update applies only from the
// given statuses, and of many racing to claim one transition exactly one
// wins.
func testWorkspaceUpdateIfStatus(t *testing.T, e *env) {
	w := e.workspace(e.user())
	starting, running := store.WorkspaceStarting, store.WorkspaceRunning
	got, err := e.s.UpdateWorkspace(e.ctx, w.ID, store.WorkspaceUpdate{Status: &starting, IfStatus: []store.WorkspaceStatus{store.WorkspaceStopped, store.WorkspaceError}}, e.tick())
	must(t, err)
	if got.Status != starting {
		t.Fatalf("status %s, want starting", got.Status)
	}
	_, err = e.s.UpdateWorkspace(e.ctx, w.ID, store.WorkspaceUpdate{Status: &starting, IfStatus: []store.WorkspaceStatus{store.WorkspaceStopped}}, e.tick())
	wantMessage(t, err, fault.ErrFailedPrecondition, "the workspace is starting now")
	_, err = e.s.UpdateWorkspace(e.ctx, uuid.NewString(), store.WorkspaceUpdate{Status: &starting, IfStatus: []store.WorkspaceStatus{store.WorkspaceStopped}}, e.tick())
	wantFault(t, err, fault.ErrNotFound)

	must(t, func() error {
		_, err := e.s.UpdateWorkspace(e.ctx, w.ID, store.WorkspaceUpdate{Status: &running}, e.tick())
		return err
	}())
	stopped := store.WorkspaceStopped
	must(t, func() error {
		_, err := e.s.UpdateWorkspace(e.ctx, w.ID, store.WorkspaceUpdate{Status: &stopped}, e.tick())
		return err
	}())
	const racers = 8
	wins := make(chan bool, racers)
	now := e.tick()
	for range racers {
		go func() {
			_, err := e.s.UpdateWorkspace(e.ctx, w.ID, store.WorkspaceUpdate{Status: &starting, IfStatus: []store.WorkspaceStatus{store.WorkspaceStopped}}, now)
			if err != nil && !errors.Is(err, fault.ErrFailedPrecondition) {
				t.Errorf("racer: %v", err)
			}
			wins <- err == nil
		}()
	}
	n := 0
	for range racers {
		if <-wins {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d racers moved the workspace from stopped to starting, want exactly 1", n)
	}
}

func testWorkspaceDeleteCascades(t *testing.T, e *env) {
	owner, friend := e.user(), e.user()
	doomed := e.workspace(owner)
	kept := e.workspace(owner)
	e.member(doomed, friend, store.WorkspaceEditor)
	e.member(kept, friend, store.WorkspaceViewer)
	first := e.task(doomed, store.TaskSucceeded)
	e.task(doomed, store.TaskQueued, func(tr *store.TaskRecord) { tr.ContinueTaskID = first.ID })
	e.task(kept, store.TaskRunning)

	must(t, e.s.DeleteWorkspace(e.ctx, doomed.ID))

	members, err := e.s.ListMembers(e.ctx, doomed.ID)
	must(t, err)
	equal(t, "members of the deleted workspace", len(members), 0)
	members, err = e.s.ListMembers(e.ctx, kept.ID)
	must(t, err)
	equal(t, "members of the kept workspace", len(members), 1)
	st, err := e.s.CountStats(e.ctx, store.Viewer{}, true)
	must(t, err)
	equal(t, "workspaces left", st.Workspaces, 1)
	equal(t, "tasks left", st.TasksByStatus, map[string]int64{"running": 1})
	// The friend keeps access to the other workspace only.
	_, err = e.s.FindWorkspace(e.ctx, doomed.ID, viewerOf(friend))
	wantFault(t, err, fault.ErrNotFound)
	_, err = e.s.FindWorkspace(e.ctx, kept.ID, viewerOf(friend))
	must(t, err)
}
