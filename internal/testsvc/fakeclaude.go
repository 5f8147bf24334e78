package testsvc

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"
)

var fakeClaude struct {
	once sync.Once
	path string
	err  error
}

// FakeClaude returns the path of the stand-in claude program
// (internal/agent/testdata/fakeclaude), a static binary that runs on the
// host and in the busybox test image alike. It is built once per test
// process, with a deadline from t, into a directory of the system's
// temporary directory named after a hash of its source and the Go version:
// test binaries running at once (go test ./...) share one build instead of
// each leaving its own copy behind, and a changed source gets a new one.
// Callers must not write to the file; a test that needs its own copy (to
// find its processes by path, or inside a project directory) copies it.
func FakeClaude(t testing.TB) string {
	t.Helper()
	fakeClaude.once.Do(func() {
		ctx := context.Background()
		if tt, ok := t.(interface{ Deadline() (time.Time, bool) }); ok { // a *testing.T; a benchmark has none
			if d, ok := tt.Deadline(); ok {
				var cancel context.CancelFunc
				ctx, cancel = context.WithDeadline(ctx, d)
				defer cancel()
			}
		}
		fakeClaude.path, fakeClaude.err = buildFakeClaude(ctx)
	})
	if fakeClaude.err != nil {
		t.Fatalf("building the stand-in claude: %v", fakeClaude.err)
	}
	return fakeClaude.path
}

// buildFakeClaude builds the stand-in into its content-named directory,
// unless a build of the same source is there already. The build is
// written beside its final name and renamed into place, so a reader never
// sees half a binary, and two processes building at once both succeed.
func buildFakeClaude(ctx context.Context) (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", fmt.Errorf("cannot locate the testsvc source")
	}
	src := filepath.Join(filepath.Dir(file), "..", "agent", "testdata", "fakeclaude")
	main, err := os.ReadFile(filepath.Join(src, "main.go")) // #nosec G304 -- test support: the paths are the temporary directory and this module's own testdata
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(append(main, runtime.Version()...))
	dir := filepath.Join(os.TempDir(), "berth-fakeclaude-"+hex.EncodeToString(sum[:8]))
	path := filepath.Join(dir, "claude")
	if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o100 != 0 { // #nosec G703 -- test support: the paths are the temporary directory and this module's own testdata
		return path, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil { // #nosec G301 G703 -- test support: the paths are the temporary directory and this module's own testdata; other users' test runs share the build
		return "", err
	}
	tmp, err := os.CreateTemp(dir, "claude-*.tmp")
	if err != nil {
		return "", err
	}
	tmpPath := tmp.Name()
	if err := tmp.Close(); err != nil {
		return "", err
	}
	defer os.Remove(tmpPath) // gone after the rename; removes a failed build
	// #nosec G204 -- test support: go build of this module's testdata into a temporary file
	cmd := exec.CommandContext(ctx, "go", "build", "-o", tmpPath, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %w\n%s", err, out)
	}
	if err := os.Chmod(tmpPath, 0o755); err != nil { // #nosec G302 G703 -- an executable for the tests, in the temporary directory
		return "", err
	}
	if err := os.Rename(tmpPath, path); err != nil { // #nosec G703 -- test support: the paths are the temporary directory and this module's own testdata
		return "", err
	}
	return path, nil
}

// CopyFakeClaude copies the stand-in claude to path (mode 0755), creating
// its directory, and returns path: for a test that runs it from a place of
// its own, such as a project directory a container mounts.
func CopyFakeClaude(t testing.TB, path string) string {
	t.Helper()
	data, err := os.ReadFile(FakeClaude(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil { // #nosec G301 -- a test directory
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o755); err != nil { // #nosec G306 G703 -- an executable for the tests, where the test asks for it
		t.Fatal(err)
	}
	return path
}
