package docker

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berthhq/berth/internal/hostpath"
)

// contextTree makes a build context with a subdirectory sub/ holding a
// file, and a host directory outside it holding a secret marker file; it
// returns the context opened, the context's path and the marker.
func contextTree(t *testing.T) (*os.File, string, string) {
	t.Helper()
	base := t.TempDir()
	dir := filepath.Join(base, "context")
	host := filepath.Join(base, "host")
	marker := "host-secret-" + strings.ReplaceAll(t.Name(), "/", "-")
	for p, content := range map[string]string{
		filepath.Join(dir, "Dockerfile"):   "FROM scratch\n",
		filepath.Join(dir, "sub", "a.txt"): "inside\n",
		filepath.Join(host, "a.txt"):       marker,
		filepath.Join(host, "shadow"):      marker,
	} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	root, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	return root, dir, marker
}

// swap replaces the directory dir/sub with a symbolic link to ../host, as a
// workspace's agent can at any moment.
func swap(t *testing.T, dir string) {
	t.Helper()
	if err := os.RemoveAll(filepath.Join(dir, "sub")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(filepath.Dir(dir), "host"), filepath.Join(dir, "sub")); err != nil {
		t.Fatal(err)
	}
}

// tarred lists the names in a tar stream and reports whether any content
// holds marker.
func tarred(t *testing.T, data []byte, marker string) ([]string, bool) {
	t.Helper()
	var names []string
	leaked := bytes.Contains(data, []byte(marker))
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("reading the context: %v", err)
		}
		names = append(names, hdr.Name)
	}
	return names, leaked
}

func TestWalkContextSendsTheTree(t *testing.T) {
	t.Parallel()
	root, _, _ := contextTree(t)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := walkContext(root, tw); err != nil {
		t.Fatalf("walkContext: %v", err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	names, _ := tarred(t, buf.Bytes(), "")
	if got, want := strings.Join(names, " "), "Dockerfile sub/ sub/a.txt"; got != want {
		t.Errorf("context = %q, want %q", got, want)
	}
}

// A directory swapped for a link to a host directory before the walk
// starts is a link, refused as leading outside.
func TestWalkContextRefusesALinkedDirectory(t *testing.T) {
	t.Parallel()
	root, dir, marker := contextTree(t)
	swap(t, dir)
	var buf bytes.Buffer
	err := walkContext(root, tar.NewWriter(&buf))
	if err == nil || !strings.Contains(err.Error(), "leads outside the build context") {
		t.Fatalf("walkContext = %v, want the link refused", err)
	}
	if bytes.Contains(buf.Bytes(), []byte(marker)) {
		t.Error("the host file's content was sent")
	}
}

// The race: the check walk saw sub/ as a directory, then it became a link
// to a host directory before the tar walk opened it. The tar walk reaching
// sub (walkDir, as walkContext calls it for a directory entry) or a file
// in it (sendFile) opens them beneath the context's descriptor with no
// link allowed, so it fails with hostpath.ErrSymlink and sends nothing of
// the host's.
func TestWalkContextOpensBeneathTheContext(t *testing.T) {
	t.Parallel()
	root, dir, marker := contextTree(t)
	swap(t, dir)

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err := walkDir(root, "sub", tw)
	if !errors.Is(err, hostpath.ErrSymlink) {
		t.Errorf("walkDir(sub) = %v, want hostpath.ErrSymlink", err)
	}
	for _, name := range []string{"sub/a.txt", "sub/shadow"} {
		if err := sendFile(root, name, tw); !errors.Is(err, hostpath.ErrSymlink) {
			t.Errorf("sendFile(%s) = %v, want hostpath.ErrSymlink", name, err)
		}
	}
	_ = tw.Flush()
	if names, leaked := tarred(t, buf.Bytes(), marker); leaked || len(names) > 0 {
		t.Errorf("sent %v (host content leaked: %v)", names, leaked)
	}

	// A file itself swapped for a link is not followed either.
	if err := os.Symlink(filepath.Join(filepath.Dir(dir), "host", "shadow"), filepath.Join(dir, "shadow")); err != nil {
		t.Fatal(err)
	}
	if err := sendFile(root, "shadow", tw); !errors.Is(err, hostpath.ErrSymlink) {
		t.Errorf("sendFile(shadow) = %v, want hostpath.ErrSymlink", err)
	}
	if bytes.Contains(buf.Bytes(), []byte(marker)) {
		t.Error("the host file's content was sent")
	}
}

func TestContextLinks(t *testing.T) {
	t.Parallel()
	root, dir, _ := contextTree(t)
	for link, target := range map[string]string{
		"rel":      "sub/a.txt",
		"sub/up":   "../Dockerfile",
		"abs":      filepath.Join(dir, "sub", "a.txt"),
		"sub/abs":  filepath.Join(dir, "Dockerfile"),
		"dangling": "nowhere",
	} {
		if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := walkContext(root, tw); err != nil {
		t.Fatalf("walkContext: %v", err)
	}
	_ = tw.Close()
	want := map[string]string{"rel": "sub/a.txt", "sub/up": "../Dockerfile", "abs": "sub/a.txt", "sub/abs": "../Dockerfile", "dangling": "nowhere"}
	tr := tar.NewReader(&buf)
	for {
		hdr, err := tr.Next()
		if err != nil {
			break
		}
		if hdr.Typeflag == tar.TypeSymlink {
			if hdr.Linkname != want[hdr.Name] {
				t.Errorf("%s -> %q, want %q", hdr.Name, hdr.Linkname, want[hdr.Name])
			}
			delete(want, hdr.Name)
		}
	}
	if len(want) > 0 {
		t.Errorf("links not sent: %v", want)
	}
}

// A file swapped for a named pipe after the check walk neither hangs the
// tar walk (the open does not wait for a writer) nor is sent.
func TestWalkContextRefusesAPipeSwappedIn(t *testing.T) {
	t.Parallel()
	root, dir, _ := contextTree(t)
	p := filepath.Join(dir, "sub", "a.txt")
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(p, 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- sendFile(root, "sub/a.txt", tar.NewWriter(io.Discard)) }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "no longer a regular file") {
			t.Errorf("sendFile of a pipe = %v, want it refused", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("sendFile of a pipe blocks") // (the goroutine stays blocked: the test binary ends anyway)
	}
	if err := walkContext(root, nil); err == nil || !strings.Contains(err.Error(), "named pipe") {
		t.Errorf("walkContext with a pipe = %v, want it refused", err)
	}
}
