package server_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"connectrpc.com/connect/v2"

	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
)

// mkdir makes a project directory under the server's workspace root.
func (s *testServer) mkdir(t testing.TB, name string) string {
	t.Helper()
	dir := filepath.Join(s.Root, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestWorkspaceCRUD creates, reads, updates, archives and deletes a workspace
// over every protocol.
func TestWorkspaceCRUD(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	admin := as(t.Context(), register(t, srv.clients(protocols[0]), "admin@example.com").GetTokens().GetAccessToken())
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			c := srv.clients(p)
			// Importing a directory (path) is an admin's act; with a path
			// nothing clones git_url, which names no reachable server.
			reg := register(t, c, p.name+"@example.com")
			if _, err := c.Admin.SetUserRole(admin, &berthv1.SetUserRoleRequest{UserId: reg.GetUser().GetId(), Role: berthv1.Role_ROLE_ADMIN}); err != nil {
				t.Fatal(err)
			}
			ctx := as(t.Context(), reg.GetTokens().GetAccessToken())
			dir := srv.mkdir(t, p.name+"/project")

			created, err := c.Workspace.CreateWorkspace(ctx, &berthv1.CreateWorkspaceRequest{
				Name:        "  demo  ",
				Description: "the demo project",
				Path:        dir,
				GitUrl:      "https://example.com/demo.git",
				Branch:      "main",
				Tags:        []string{"go", "demo", "go"},
				Metadata:    map[string]string{"team": "core"},
				Resources:   &berthv1.ResourceLimits{MemoryMb: 512, Cpus: 1.5, Pids: 256},
			})
			if err != nil {
				t.Fatalf("CreateWorkspace: %v", err)
			}
			w := created.GetWorkspace()
			if w.GetName() != "demo" || w.GetPath() != dir || w.GetStatus() != berthv1.WorkspaceStatus_WORKSPACE_STATUS_STOPPED ||
				!slices.Equal(w.GetTags(), []string{"go", "demo"}) || w.GetMetadata()["team"] != "core" ||
				w.GetResources().GetCpus() != 1.5 || w.GetStats() == nil || w.GetCreatedAt() == nil || w.GetId() == "" {
				t.Fatalf("created workspace = %v", w)
			}

			_, err = c.Workspace.CreateWorkspace(ctx, &berthv1.CreateWorkspaceRequest{Name: "demo", Path: dir})
			wantCode(t, err, connect.CodeAlreadyExists, "CONFLICT")

			got, err := c.Workspace.GetWorkspace(ctx, &berthv1.GetWorkspaceRequest{Id: w.GetId()})
			if err != nil || got.GetWorkspace().GetName() != "demo" {
				t.Fatalf("GetWorkspace = %v, %v", got, err)
			}

			newName := "renamed"
			upd, err := c.Workspace.UpdateWorkspace(ctx, &berthv1.UpdateWorkspaceRequest{
				Id:       w.GetId(),
				Name:     &newName,
				Tags:     &berthv1.TagList{}, // clears the tags
				Archived: new(true),
			})
			if err != nil {
				t.Fatalf("UpdateWorkspace: %v", err)
			}
			u := upd.GetWorkspace()
			if u.GetName() != "renamed" || len(u.GetTags()) != 0 || u.GetDescription() != "the demo project" ||
				u.GetMetadata()["team"] != "core" || u.GetStatus() != berthv1.WorkspaceStatus_WORKSPACE_STATUS_ARCHIVED {
				t.Fatalf("updated workspace = %v", u)
			}

			_, err = c.Workspace.StartWorkspace(ctx, &berthv1.StartWorkspaceRequest{Id: w.GetId()})
			wantCode(t, err, connect.CodeFailedPrecondition, "CONFLICT")
			if !strings.Contains(errMessage(err), "archived cannot be started") {
				t.Errorf("starting an archived workspace: %v", err)
			}

			if _, err := c.Workspace.DeleteWorkspace(ctx, &berthv1.DeleteWorkspaceRequest{Id: w.GetId()}); err != nil {
				t.Fatalf("DeleteWorkspace: %v", err)
			}
			_, err = c.Workspace.GetWorkspace(ctx, &berthv1.GetWorkspaceRequest{Id: w.GetId()})
			wantCode(t, err, connect.CodeNotFound, "NOT_FOUND")
			if _, err := os.Stat(dir); err != nil {
				t.Fatalf("the project directory must survive DeleteWorkspace: %v", err)
			}
		})
	}
}

// TestWorkspaceVisibility: another member's workspace does not exist for
// the caller; the admin sees everything.
func TestWorkspaceVisibility(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	c := srv.clients(protocols[0])
	admin := as(t.Context(), register(t, c, "admin@example.com").GetTokens().GetAccessToken())
	alice := as(t.Context(), register(t, c, "alice@example.com").GetTokens().GetAccessToken())
	bob := as(t.Context(), register(t, c, "bob@example.com").GetTokens().GetAccessToken())

	res, err := c.Workspace.CreateWorkspace(alice, &berthv1.CreateWorkspaceRequest{Name: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	id := res.GetWorkspace().GetId()
	// Bob may use the same name: names are unique per owner.
	if _, err := c.Workspace.CreateWorkspace(bob, &berthv1.CreateWorkspaceRequest{Name: "alice"}); err != nil {
		t.Fatalf("same name, other owner: %v", err)
	}

	_, err = c.Workspace.GetWorkspace(bob, &berthv1.GetWorkspaceRequest{Id: id})
	wantCode(t, err, connect.CodeNotFound, "NOT_FOUND")
	_, err = c.Workspace.UpdateWorkspace(bob, &berthv1.UpdateWorkspaceRequest{Id: id, Description: new("mine now")})
	wantCode(t, err, connect.CodeNotFound, "NOT_FOUND")
	_, err = c.Workspace.DeleteWorkspace(bob, &berthv1.DeleteWorkspaceRequest{Id: id})
	wantCode(t, err, connect.CodeNotFound, "NOT_FOUND")
	_, err = c.Workspace.GetWorkspace(bob, &berthv1.GetWorkspaceRequest{Id: "00000000-0000-4000-8000-000000000000"})
	wantCode(t, err, connect.CodeNotFound, "NOT_FOUND")

	list, err := c.Workspace.ListWorkspaces(bob, &berthv1.ListWorkspacesRequest{})
	if err != nil || list.GetPagination().GetTotal() != 1 {
		t.Fatalf("bob's list = %v, %v", list, err)
	}
	all, err := c.Workspace.ListWorkspaces(admin, &berthv1.ListWorkspacesRequest{})
	if err != nil || all.GetPagination().GetTotal() != 2 {
		t.Fatalf("admin's list = %v, %v", all, err)
	}
	if _, err := c.Workspace.GetWorkspace(admin, &berthv1.GetWorkspaceRequest{Id: id}); err != nil {
		t.Fatalf("admin GetWorkspace: %v", err)
	}

	own, err := c.Stats.GetStats(alice, &berthv1.GetStatsRequest{})
	if err != nil || own.GetWorkspaces() != 1 || own.GetWorkspacesByStatus()["stopped"] != 1 || own.Users != nil {
		t.Fatalf("alice's stats = %v, %v", own, err)
	}
	_, err = c.Stats.GetStats(alice, &berthv1.GetStatsRequest{Global: true})
	wantCode(t, err, connect.CodePermissionDenied, "FORBIDDEN")
	global, err := c.Stats.GetStats(admin, &berthv1.GetStatsRequest{Global: true})
	if err != nil || global.GetUsers() != 3 || global.GetWorkspaces() != 2 || global.GetTasks() != 0 {
		t.Fatalf("global stats = %v, %v", global, err)
	}
}

// TestWorkspaceListing covers pagination, every sort order, search (with
// LIKE metacharacters taken literally) and the status filter.
func TestWorkspaceListing(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	c := srv.clients(protocols[1])
	ctx := as(t.Context(), register(t, c, "lister@example.com").GetTokens().GetAccessToken())
	names := []string{"delta", "alpha", "echo", "charlie", "bravo", "100% done", "under_score"}
	for i, name := range names {
		desc := fmt.Sprintf("project number %d", i)
		if name == "charlie" {
			desc = "contains the word Needle"
		}
		if _, err := c.Workspace.CreateWorkspace(ctx, &berthv1.CreateWorkspaceRequest{Name: name, Description: desc, Path: srv.mkdir(t, fmt.Sprint("p", i))}); err != nil {
			t.Fatal(err)
		}
	}
	list := func(req *berthv1.ListWorkspacesRequest) ([]string, *berthv1.Pagination) {
		t.Helper()
		res, err := c.Workspace.ListWorkspaces(ctx, req)
		if err != nil {
			t.Fatalf("ListWorkspaces(%v): %v", req, err)
		}
		var got []string
		for _, w := range res.GetWorkspaces() {
			got = append(got, w.GetName())
		}
		return got, res.GetPagination()
	}

	sorted := slices.Clone(names)
	slices.Sort(sorted)
	byName, _ := list(&berthv1.ListWorkspacesRequest{Sort: "name", PageSize: 100})
	if !slices.Equal(byName, sorted) {
		t.Errorf("sort=name: %v, want %v", byName, sorted)
	}
	desc, _ := list(&berthv1.ListWorkspacesRequest{Sort: "-name", PageSize: 100})
	if !slices.Equal(desc, reversed(sorted)) {
		t.Errorf("sort=-name: %v", desc)
	}
	oldest, _ := list(&berthv1.ListWorkspacesRequest{Sort: "created_at", PageSize: 100})
	if !slices.Equal(oldest, names) {
		t.Errorf("sort=created_at: %v, want %v", oldest, names)
	}
	newest, _ := list(&berthv1.ListWorkspacesRequest{PageSize: 100}) // default -created_at
	if !slices.Equal(newest, reversed(names)) {
		t.Errorf("default sort: %v", newest)
	}

	var paged []string
	for pg := int32(1); ; pg++ {
		got, p := list(&berthv1.ListWorkspacesRequest{Sort: "name", Page: pg, PageSize: 3})
		paged = append(paged, got...)
		if p.GetTotal() != int64(len(names)) || p.GetTotalPages() != 3 || p.GetPage() != pg || p.GetPageSize() != 3 || p.GetHasPrev() != (pg > 1) {
			t.Fatalf("page %d pagination = %v", pg, p)
		}
		if !p.GetHasNext() {
			break
		}
	}
	if !slices.Equal(paged, sorted) {
		t.Errorf("pages joined = %v, want %v", paged, sorted)
	}
	beyond, p := list(&berthv1.ListWorkspacesRequest{Page: 9, PageSize: 3})
	if len(beyond) != 0 || p.GetHasNext() || !p.GetHasPrev() {
		t.Errorf("page past the end = %v %v", beyond, p)
	}
	if _, p := list(&berthv1.ListWorkspacesRequest{}); p.GetPageSize() != 10 || p.GetPage() != 1 {
		t.Errorf("default page = %v", p)
	}

	for search, want := range map[string][]string{
		"needle": {"charlie"},   // description, case-insensitive
		"ALPHA":  {"alpha"},     // name, case-insensitive
		"%":      {"100% done"}, // a LIKE wildcard matches only itself
		"_":      {"under_score"},
		"zzz":    nil,
	} {
		got, _ := list(&berthv1.ListWorkspacesRequest{Search: search, Sort: "name"})
		if !slices.Equal(got, want) {
			t.Errorf("search %q = %v, want %v", search, got, want)
		}
	}

	res, err := c.Workspace.ListWorkspaces(ctx, &berthv1.ListWorkspacesRequest{Sort: "name", PageSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	first := res.GetWorkspaces()[0]
	if _, err := c.Workspace.UpdateWorkspace(ctx, &berthv1.UpdateWorkspaceRequest{Id: first.GetId(), Archived: new(true)}); err != nil {
		t.Fatal(err)
	}
	archived, _ := list(&berthv1.ListWorkspacesRequest{Status: "archived"})
	active, _ := list(&berthv1.ListWorkspacesRequest{Status: "active", PageSize: 100})
	stopped, _ := list(&berthv1.ListWorkspacesRequest{Status: "stopped", PageSize: 100})
	if !slices.Equal(archived, []string{first.GetName()}) || len(active) != len(names)-1 || len(stopped) != len(names)-1 {
		t.Errorf("status filters: archived=%v active=%v stopped=%v", archived, active, stopped)
	}

	for _, bad := range []*berthv1.ListWorkspacesRequest{
		{PageSize: 101}, {Page: -1}, {Sort: "path"}, {Status: "sleeping"}, {Search: strings.Repeat("x", 101)},
	} {
		_, err := c.Workspace.ListWorkspaces(ctx, bad)
		if details := wantCode(t, err, connect.CodeInvalidArgument, "VALIDATION_ERROR"); len(fieldViolations(details)) != 1 {
			t.Errorf("%v: violations %v", bad, fieldViolations(details))
		}
	}
}

// TestWorkspacePathRules rejects every imported path that is not an
// existing directory inside a workspace root, saying which rule a person can
// fix (absolute, no "..") and otherwise only that the path is not allowed —
// never what is on the host. Only admins import paths at all.
func TestWorkspacePathRules(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	c := srv.clients(protocols[0])
	ctx := as(t.Context(), register(t, c, "paths@example.com").GetTokens().GetAccessToken())

	inside := srv.mkdir(t, "inside")
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(srv.Root, "escape")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(inside, filepath.Join(srv.Root, "alias")); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(srv.Root, "file.txt")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct{ path, reason string }{
		{"relative/dir", "is not an absolute path"},
		{srv.Root + "/inside/../inside", `must not contain ".." elements`},
		{filepath.Join(srv.Root, "escape"), "is not an allowed workspace directory"},
		{file, "is not an allowed workspace directory"},
		{filepath.Join(srv.Root, "missing"), "is not an allowed workspace directory"},
		{outside, "is not an allowed workspace directory"},
		{srv.Root, "is not an allowed workspace directory"},
		{"/proc/self/cwd", "is not an allowed workspace directory"},
	} {
		_, err := c.Workspace.CreateWorkspace(ctx, &berthv1.CreateWorkspaceRequest{Name: "x", Path: tc.path})
		details := wantCode(t, err, connect.CodeInvalidArgument, "VALIDATION_ERROR")
		if !strings.Contains(errMessage(err), tc.reason) {
			t.Errorf("path %q: message %q does not say %q", tc.path, errMessage(err), tc.reason)
		}
		if got := fieldViolations(details); !slices.Equal(got, []string{"path"}) {
			t.Errorf("path %q: field violations %v", tc.path, got)
		}
		for _, leak := range []string{"does not exist", "not a directory", "resolved", outside} {
			if tc.path != outside && strings.Contains(errMessage(err), leak) {
				t.Errorf("path %q: message %q tells about the host (%q)", tc.path, errMessage(err), leak)
			}
		}
	}
	member := as(t.Context(), register(t, c, "member@example.com").GetTokens().GetAccessToken())
	_, err := c.Workspace.CreateWorkspace(member, &berthv1.CreateWorkspaceRequest{Name: "x", Path: inside})
	wantCode(t, err, connect.CodePermissionDenied, "FORBIDDEN")

	// A symlink that stays inside the root is stored resolved.
	res, err := c.Workspace.CreateWorkspace(ctx, &berthv1.CreateWorkspaceRequest{Name: "alias", Path: filepath.Join(srv.Root, "alias")})
	if err != nil {
		t.Fatalf("symlink inside the root: %v", err)
	}
	if res.GetWorkspace().GetPath() != inside {
		t.Errorf("stored path %q, want the resolved %q", res.GetWorkspace().GetPath(), inside)
	}
}

func reversed(s []string) []string {
	out := slices.Clone(s)
	slices.Reverse(out)
	return out
}
