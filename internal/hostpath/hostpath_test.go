package hostpath_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berthhq/berth/internal/hostpath"
)

func realTemp(t *testing.T) string {
	t.Helper()
	d, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestOpenDirRefusesASymlinkOnTheWay(t *testing.T) {
	root := realTemp(t)
	ws := filepath.Join(root, "nest", "child")
	if err := os.MkdirAll(ws, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := hostpath.OpenDir(ws)
	if err != nil {
		t.Fatalf("OpenDir of a real directory: %v", err)
	}
	if got, _ := hostpath.Real(f); got != ws {
		t.Errorf("Real = %q, want %q", got, ws)
	}
	f.Close()

	// The attack: replace the workspace directory with a link to "/".
	if err := os.RemoveAll(ws); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/", ws); err != nil {
		t.Fatal(err)
	}
	if _, err := hostpath.OpenDir(ws); !errors.Is(err, hostpath.ErrSymlink) {
		t.Fatalf("OpenDir through a symlink to /: err = %v, want ErrSymlink", err)
	}
	// … or a parent with a link to a directory that has the same layout.
	other := filepath.Join(root, "other", "child")
	if err := os.MkdirAll(other, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(root, "nest")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(root, "other"), filepath.Join(root, "nest")); err != nil {
		t.Fatal(err)
	}
	if _, err := hostpath.OpenDir(ws); !errors.Is(err, hostpath.ErrSymlink) {
		t.Fatalf("OpenDir through a symlinked parent: err = %v, want ErrSymlink", err)
	}
	for _, bad := range []string{"relative", root + "/../x", root + "/"} {
		if _, err := hostpath.OpenDir(bad); err == nil {
			t.Errorf("OpenDir(%q) accepted", bad)
		}
	}
}

func TestOpenBeneathStaysInside(t *testing.T) {
	root := realTemp(t)
	ws := filepath.Join(root, "ws")
	for _, d := range []string{"ws/src/pkg", "outside"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	links := map[string]string{
		"ws/up":     "..",
		"ws/abs":    "/",
		"ws/etc":    "/etc",
		"ws/out":    filepath.Join(root, "outside"),
		"ws/inside": "src/pkg",
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(ws, "file"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir, err := hostpath.OpenDir(ws)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	for rel, want := range map[string]string{"": ws, ".": ws, "src": ws + "/src", "src/pkg/": ws + "/src/pkg", "inside": ws + "/src/pkg"} {
		f, err := hostpath.OpenBeneath(dir, rel)
		if err != nil {
			t.Errorf("OpenBeneath(%q): %v", rel, err)
			continue
		}
		if got, _ := hostpath.Real(f); got != want {
			t.Errorf("OpenBeneath(%q) real path %q, want %q", rel, got, want)
		}
		f.Close()
	}
	for _, rel := range []string{"..", "../outside", "up", "abs", "etc", "out", "/etc", "src/../../outside", "up/ws"} {
		if f, err := hostpath.OpenBeneath(dir, rel); !errors.Is(err, hostpath.ErrEscapes) {
			if f != nil {
				f.Close()
			}
			t.Errorf("OpenBeneath(%q): err = %v, want ErrEscapes", rel, err)
		}
	}
	if _, err := hostpath.OpenBeneath(dir, "file"); !errors.Is(err, hostpath.ErrNotDir) {
		t.Errorf("OpenBeneath(file): err = %v, want ErrNotDir", err)
	}
	if _, err := hostpath.OpenBeneath(dir, "missing"); !errors.Is(err, hostpath.ErrNotExist) {
		t.Errorf("OpenBeneath(missing): err = %v, want ErrNotExist", err)
	}
	if f, err := hostpath.OpenFileBeneath(dir, "inside"); !errors.Is(err, hostpath.ErrSymlink) {
		if f != nil {
			f.Close()
		}
		t.Errorf("OpenFileBeneath(link): err = %v, want ErrSymlink", err)
	}
	f, err := hostpath.OpenFileBeneath(dir, "file")
	if err != nil {
		t.Fatalf("OpenFileBeneath(file): %v", err)
	}
	f.Close()
}

// A child that changes into FDPath lands in the directory that was opened,
// even after its name was pointed elsewhere.
func TestFDPathPinsTheDirectory(t *testing.T) {
	root := realTemp(t)
	ws := filepath.Join(root, "ws")
	if err := os.Mkdir(ws, 0o755); err != nil {
		t.Fatal(err)
	}
	dir, err := hostpath.OpenDir(ws)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	if err := os.Rename(ws, filepath.Join(root, "moved")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/", ws); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("pwd", "-P")
	cmd.Dir = hostpath.FDPath(dir)
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(out)); got != filepath.Join(root, "moved") {
		t.Fatalf("the child ran in %q, want the opened directory %q", got, filepath.Join(root, "moved"))
	}
}

func TestWithin(t *testing.T) {
	for _, c := range []struct {
		dir, path string
		want      bool
	}{
		{"/a", "/a", true}, {"/a", "/a/b", true}, {"/a", "/ab", false}, {"/a", "/", false}, {"/a/b", "/a", false}, {"/a", "/a/..b", true},
	} {
		if got := hostpath.Within(c.dir, c.path); got != c.want {
			t.Errorf("Within(%q, %q) = %v", c.dir, c.path, got)
		}
	}
}

// TestOpenIn: the outer directory must be reached with no link (ErrRoot
// and ErrSymlink), the inner one without leaving it (ErrEscapes).
func TestOpenIn(t *testing.T) {
	root := realTemp(t)
	ws := filepath.Join(root, "ws")
	if err := os.MkdirAll(filepath.Join(ws, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/", filepath.Join(ws, "out")); err != nil {
		t.Fatal(err)
	}
	f, err := hostpath.OpenIn(ws, "sub")
	if err != nil {
		t.Fatalf("OpenIn(ws, sub): %v", err)
	}
	if got, _ := hostpath.Real(f); got != filepath.Join(ws, "sub") {
		t.Errorf("OpenIn opened %q", got)
	}
	f.Close()
	if _, err := hostpath.OpenIn(ws, "out"); !errors.Is(err, hostpath.ErrEscapes) || errors.Is(err, hostpath.ErrRoot) {
		t.Errorf("OpenIn(ws, out): %v, want ErrEscapes only", err)
	}
	link := filepath.Join(root, "link")
	if err := os.Symlink(ws, link); err != nil {
		t.Fatal(err)
	}
	if _, err := hostpath.OpenIn(link, "sub"); !errors.Is(err, hostpath.ErrRoot) || !errors.Is(err, hostpath.ErrSymlink) {
		t.Errorf("OpenIn(link, sub): %v, want ErrRoot and ErrSymlink", err)
	}
}
