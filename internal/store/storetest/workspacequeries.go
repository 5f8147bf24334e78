package storetest

import (
	"slices"
	"testing"

	"github.com/berthhq/berth/internal/fault"
	"github.com/berthhq/berth/internal/store"
)

func testWorkspaceVisibility(t *testing.T, e *env) {
	owner, stranger, admin := e.user(), e.user(), e.admin()
	viewer, editor, adminMember := e.user(), e.user(), e.admin()
	shared := e.workspace(owner, named("shared"))
	private := e.workspace(owner, named("private"))
	strangers := e.workspace(stranger, named("strangers"))
	e.member(shared, viewer, store.WorkspaceViewer)
	e.member(shared, editor, store.WorkspaceEditor)
	e.member(shared, adminMember, store.WorkspaceEditor)

	find := []struct {
		who  string
		v    store.Viewer
		w    *store.Workspace
		role store.WorkspaceRole // "" means not found
	}{
		{"owner", viewerOf(owner), shared, store.WorkspaceOwner},
		{"owner", viewerOf(owner), private, store.WorkspaceOwner},
		{"owner", viewerOf(owner), strangers, ""},
		{"stranger", viewerOf(stranger), shared, ""},
		{"stranger", viewerOf(stranger), private, ""},
		{"stranger", viewerOf(stranger), strangers, store.WorkspaceOwner},
		{"viewer", viewerOf(viewer), shared, store.WorkspaceViewer},
		{"viewer", viewerOf(viewer), private, ""},
		{"editor", viewerOf(editor), shared, store.WorkspaceEditor},
		{"admin", viewerOf(admin), shared, store.WorkspaceAdmin},
		{"admin", viewerOf(admin), private, store.WorkspaceAdmin},
		{"admin", viewerOf(admin), strangers, store.WorkspaceAdmin},
		{"admin member", viewerOf(adminMember), shared, store.WorkspaceEditor},
		{"admin member", viewerOf(adminMember), private, store.WorkspaceAdmin},
		{"nobody", store.Viewer{}, shared, ""},
		{"owner as non-admin", store.Viewer{UserID: owner.ID}, shared, store.WorkspaceOwner},
	}
	for _, f := range find {
		got, err := e.s.FindWorkspace(e.ctx, f.w.ID, f.v)
		if f.role == "" {
			if err == nil {
				t.Fatalf("%s can see %s", f.who, f.w.Name)
			}
			wantMessage(t, err, fault.ErrNotFound, "workspace not found")
			continue
		}
		must(t, err)
		equal(t, f.who+" reads "+f.w.Name, got, asSeen(f.w, f.role))
	}

	lists := []struct {
		who  string
		v    store.Viewer
		want []string // in name order
	}{
		{"owner", viewerOf(owner), []string{"private", "shared"}},
		{"stranger", viewerOf(stranger), []string{"strangers"}},
		{"viewer", viewerOf(viewer), []string{"shared"}},
		{"editor", viewerOf(editor), []string{"shared"}},
		{"admin", viewerOf(admin), []string{"private", "shared", "strangers"}},
		{"admin member", viewerOf(adminMember), []string{"private", "shared", "strangers"}},
		{"nobody", store.Viewer{}, []string{}},
	}
	for _, l := range lists {
		ws, total := e.list(store.WorkspaceFilter{Viewer: l.v, Sort: "name"})
		equal(t, l.who+" lists", names(ws), l.want)
		equal(t, l.who+" total", total, int64(len(l.want)))
		for _, w := range ws {
			want, err := e.s.FindWorkspace(e.ctx, w.ID, l.v)
			must(t, err)
			equal(t, l.who+" listed "+w.Name, w, want)
		}
	}
}

func testWorkspaceSearch(t *testing.T, e *env) {
	owner := e.user()
	for _, w := range []struct{ name, description string }{
		{"100% done", "finished"},
		{"100 percent", "one hundred"},
		{"a_b", "underscore"},
		{"axb", "no underscore"},
		{`back\slash`, "a path"},
		{"backslash", "no path"},
		{"Payments API", "charges cards"},
		{"billing", "The PAYMENTS back office"},
		{"Émile Zola", "novels"},
	} {
		e.workspace(owner, named(w.name), func(ws *store.Workspace) { ws.Description = w.description })
	}
	tests := []struct {
		search string
		want   []string
	}{
		{"%", []string{"100% done"}},
		{"100%", []string{"100% done"}},
		{"_", []string{"a_b"}},
		{"a_b", []string{"a_b"}},
		{`\`, []string{`back\slash`}},
		{`k\s`, []string{`back\slash`}},
		{"payments", []string{"billing", "Payments API"}},
		{"PAYMENTS api", []string{"Payments API"}},
		{"office", []string{"billing"}},
		{"underscore", []string{"a_b", "axb"}},
		{"nothing like it", []string{}},
		// Case is folded for ASCII letters only, on every engine.
		{"ZOLA", []string{"Émile Zola"}},
		{"Émile", []string{"Émile Zola"}},
		{"émile", []string{}},
	}
	for _, tt := range tests {
		ws, total := e.list(store.WorkspaceFilter{Viewer: viewerOf(owner), Search: tt.search, Sort: "name"})
		equal(t, "search "+tt.search, names(ws), tt.want)
		equal(t, "total for "+tt.search, total, int64(len(tt.want)))
	}
}

// testWorkspaceSortBytes: names sort by their bytes once ASCII letters
// are folded, whatever the database's locale.
func testWorkspaceSortBytes(t *testing.T, e *env) {
	owner := e.user()
	for _, name := range []string{"éa", "Éz", "Zeta", "alpha"} {
		e.workspace(owner, named(name))
	}
	ws, _ := e.list(store.WorkspaceFilter{Viewer: viewerOf(owner), Sort: "name"})
	equal(t, "by name", names(ws), []string{"alpha", "Zeta", "Éz", "éa"})
	ws, _ = e.list(store.WorkspaceFilter{Viewer: viewerOf(owner), Sort: "-name"})
	equal(t, "by name, descending", names(ws), []string{"éa", "Éz", "Zeta", "alpha"})
}

func testWorkspaceSort(t *testing.T, e *env) {
	owner := e.user()
	// Made in this order, one tick apart; "echo" and "foxtrot" share a creation time.
	e.workspace(owner, named("bravo"))
	e.workspace(owner, named("Alpha"))
	e.workspace(owner, named("delta"))
	e.workspace(owner, named("Charlie"))
	same := e.tick()
	echo := e.workspace(owner, named("echo"), func(w *store.Workspace) { w.CreatedAt = same })
	foxtrot := e.workspace(owner, named("foxtrot"), func(w *store.Workspace) { w.CreatedAt = same })
	tied := []string{echo.Name, foxtrot.Name}
	if echo.ID > foxtrot.ID {
		tied = []string{foxtrot.Name, echo.Name}
	}
	byAge := append([]string{"bravo", "Alpha", "delta", "Charlie"}, tied...)
	byName := []string{"Alpha", "bravo", "Charlie", "delta", "echo", "foxtrot"}

	tests := []struct {
		sort string
		want []string
	}{
		{"", reversed(byAge)},
		{"-created_at", reversed(byAge)},
		{"created_at", byAge},
		{"name", byName},
		{"-name", reversed(byName)},
	}
	for _, tt := range tests {
		ws, _ := e.list(store.WorkspaceFilter{Viewer: viewerOf(owner), Sort: tt.sort})
		equal(t, "sort "+tt.sort, names(ws), tt.want)
	}
}

func reversed(s []string) []string {
	r := slices.Clone(s)
	slices.Reverse(r)
	return r
}

func testWorkspacePagination(t *testing.T, e *env) {
	owner, other := e.user(), e.user()
	same := e.tick()
	for i := range 7 {
		e.workspace(owner, func(w *store.Workspace) {
			if i%2 == 0 {
				w.CreatedAt = same // ties, broken by id
			}
		})
	}
	e.workspace(other) // not visible to owner
	for _, sort := range []string{"", "name", "-name", "created_at", "-created_at"} {
		all, total := e.list(store.WorkspaceFilter{Viewer: viewerOf(owner), Sort: sort})
		equal(t, "total", total, 7)
		equal(t, "all", len(all), 7)
		var paged []*store.Workspace
		for offset := 0; offset < 7; offset += 3 {
			page, total := e.list(store.WorkspaceFilter{Viewer: viewerOf(owner), Sort: sort, Offset: offset, Limit: 3})
			equal(t, "page total", total, 7)
			equal(t, "page size", len(page), min(3, 7-offset))
			paged = append(paged, page...)
		}
		equal(t, "pages of "+sort, names(paged), names(all))
		for i := range all {
			for j := range i {
				if all[i].ID == all[j].ID {
					t.Fatalf("sort %q lists %s twice", sort, all[i].Name)
				}
			}
		}
		page, total := e.list(store.WorkspaceFilter{Viewer: viewerOf(owner), Sort: sort, Offset: 10, Limit: 3})
		equal(t, "past the end", len(page), 0)
		equal(t, "total past the end", total, 7)
		page, _ = e.list(store.WorkspaceFilter{Viewer: viewerOf(owner), Sort: sort, Offset: -5, Limit: 2})
		equal(t, "negative offset", names(page), names(all[:2]))
		page, _ = e.list(store.WorkspaceFilter{Viewer: viewerOf(owner), Sort: sort, Offset: 5})
		equal(t, "offset without limit", names(page), names(all[5:]))
	}
}

func testWorkspaceStatusFilter(t *testing.T, e *env) {
	owner := e.user()
	status := func(s store.WorkspaceStatus) func(*store.Workspace) {
		return func(w *store.Workspace) { w.Status = s }
	}
	e.workspace(owner, named("a-stopped"), status(store.WorkspaceStopped))
	e.workspace(owner, named("b-running"), status(store.WorkspaceRunning))
	e.workspace(owner, named("c-archived"), status(store.WorkspaceArchived))
	e.workspace(owner, named("d-error"), status(store.WorkspaceError))
	e.workspace(owner, named("e-running"), status(store.WorkspaceRunning))
	tests := []struct {
		status string
		want   []string
	}{
		{"", []string{"a-stopped", "b-running", "c-archived", "d-error", "e-running"}},
		{"active", []string{"a-stopped", "b-running", "d-error", "e-running"}},
		{"archived", []string{"c-archived"}},
		{"running", []string{"b-running", "e-running"}},
		{"error", []string{"d-error"}},
		{"creating", []string{}},
	}
	for _, tt := range tests {
		ws, total := e.list(store.WorkspaceFilter{Viewer: viewerOf(owner), Status: tt.status, Sort: "name"})
		equal(t, "status "+tt.status, names(ws), tt.want)
		equal(t, "total for status "+tt.status, total, int64(len(tt.want)))
	}
	// Filters combine, and the total counts every page.
	ws, total := e.list(store.WorkspaceFilter{Viewer: viewerOf(owner), Status: "active", Search: "running", Sort: "-name", Limit: 1})
	equal(t, "combined", names(ws), []string{"e-running"})
	equal(t, "combined total", total, 2)
}

func testWorkspaceBadFilter(t *testing.T, e *env) {
	v := viewerOf(e.user())
	_, _, err := e.s.ListWorkspaces(e.ctx, store.WorkspaceFilter{Viewer: v, Sort: "owner_id; DROP TABLE workspaces"})
	wantFault(t, err, fault.ErrInvalid)
	_, _, err = e.s.ListWorkspaces(e.ctx, store.WorkspaceFilter{Viewer: v, Status: "sleeping"})
	wantFault(t, err, fault.ErrInvalid)
}
