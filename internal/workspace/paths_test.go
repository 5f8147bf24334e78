package workspace_test

import (
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berthhq/berth/internal/access"
	"github.com/berthhq/berth/internal/fault"
	"github.com/berthhq/berth/internal/store"
	"github.com/berthhq/berth/internal/workspace"
)

// FuzzResolve: whatever path is asked for, Resolve accepts only an
// existing directory strictly inside a root, reached by resolving its
// links, and Check then accepts that path; a refusal never describes the
// host. The seeds are the attacks on workspace paths that were reproduced.
func FuzzResolve(f *testing.F) {
	base, err := filepath.EvalSymlinks(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	root := filepath.Join(base, "root")
	for _, d := range []string{"root/nest/child", "root/a b/c", "outside/secret"} {
		if err := os.MkdirAll(filepath.Join(base, d), 0o755); err != nil {
			f.Fatal(err)
		}
	}
	for name, target := range map[string]string{"root/toroot": "/", "root/out": filepath.Join(base, "outside"),
		"root/in": "nest", "root/loop": "loop", "root/nest/up": "../..", "root/abs-in": filepath.Join(root, "nest")} {
		if err := os.Symlink(target, filepath.Join(base, name)); err != nil {
			f.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "file"), nil, 0o644); err != nil {
		f.Fatal(err)
	}
	roots, err := workspace.NewRoots([]string{root})
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{"/", "/etc", "/proc/self/cwd", root, root + "/nest", root + "/nest/child", root + "/toroot",
		root + "/toroot/tmp", root + "/out", root + "/out/secret", root + "/in", root + "/in/child", root + "/loop",
		root + "/nest/up", root + "/nest/up/outside", root + "/nest/../nest", root + "//nest/", root + "/file",
		root + "/abs-in", "relative", "", root + "/a b/c", root + "/nest/\x00x", root + "/missing"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, path string) {
		got, err := roots.Resolve(path)
		if err != nil {
			if !errors.Is(err, fault.ErrInvalid) {
				t.Fatalf("Resolve(%q) = %v, not an ErrInvalid fault", path, err)
			}
			msg, _ := fault.Message(err)
			for _, leak := range []string{"does not exist", "not a directory", "resolved", base + "/outside", "no such file"} {
				if strings.Contains(msg, leak) && !strings.Contains(path, leak) {
					t.Fatalf("Resolve(%q) refusal %q tells about the host (%q)", path, msg, leak)
				}
			}
			return
		}
		if got == root || !strings.HasPrefix(got, root+"/") {
			t.Fatalf("Resolve(%q) = %q, not strictly inside the root %q", path, got, root)
		}
		if fi, err := os.Lstat(got); err != nil || !fi.IsDir() {
			t.Fatalf("Resolve(%q) = %q, which is not a real directory (%v)", path, got, err)
		}
		if err := roots.Check(got); err != nil {
			t.Fatalf("Check(Resolve(%q) = %q) = %v", path, got, err)
		}
	})
}

// TestCheckAtStart: a workspace whose directory became a link, or that
// overlaps another (records from before nesting was refused), is refused
// when it starts — ERROR with a reason — and starts again once fixed.
func TestCheckAtStart(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	f := newFixture(t, workspace.Containers{})
	member := access.Principal{UserID: f.owner.UserID, Role: store.RoleMember}
	nest, err := f.svc.Create(ctx, member, workspace.Spec{Name: "nest"})
	if err != nil {
		t.Fatal(err)
	}
	child, err := f.svc.Create(ctx, member, workspace.Spec{Name: "child"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Create(ctx, member, workspace.Spec{Name: "import", Path: f.project}); !errors.Is(err, fault.ErrPermissionDenied) {
		t.Errorf("a member imports a path: %v, want ErrPermissionDenied", err)
	}
	// What an old berth allowed: child's directory inside nest's.
	inner := filepath.Join(nest.Path, "child")
	if err := os.Mkdir(inner, 0o755); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", f.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `UPDATE workspaces SET path = ? WHERE id = ?`, inner, child.ID); err != nil {
		t.Fatal(err)
	}
	for _, w := range []*store.Workspace{nest, child} {
		_, err := f.svc.Start(ctx, member, w.ID)
		if !errors.Is(err, fault.ErrFailedPrecondition) {
			t.Errorf("start of %s overlapping another: %v, want ErrFailedPrecondition", w.Name, err)
		}
		got, err := f.svc.Get(ctx, member, w.ID)
		if err != nil || got.Status != store.WorkspaceError || !strings.Contains(got.StatusReason, "no longer the directory") {
			t.Errorf("%s after the refused start: %+v, %v", w.Name, got, err)
		}
	}
	if err := f.svc.Delete(ctx, member, child.ID, false); err != nil {
		t.Fatal(err)
	}
	// nest alone starts — unless its directory is replaced by a link.
	if _, err := f.svc.Start(ctx, member, nest.ID); err != nil {
		t.Fatalf("start of nest once alone: %v", err)
	}
	if _, err := f.svc.Stop(ctx, member, nest.ID); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(nest.Path, nest.Path+".x"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(nest.Path+".x", nest.Path); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Start(ctx, member, nest.ID); !errors.Is(err, fault.ErrFailedPrecondition) {
		t.Errorf("start with the directory replaced by a link: %v, want ErrFailedPrecondition", err)
	}
	// Its directory goes with it on delete, and only the link is removed.
	if err := os.Remove(nest.Path); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(nest.Path+".x", nest.Path); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.Delete(ctx, member, nest.ID, true); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(nest.Path); !os.IsNotExist(err) {
		t.Errorf("delete with its directory left %s: %v", nest.Path, err)
	}
}
