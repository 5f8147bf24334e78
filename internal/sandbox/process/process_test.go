package process_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berthhq/berth/internal/hostpath"
	"github.com/berthhq/berth/internal/sandbox"
	"github.com/berthhq/berth/internal/sandbox/process"
	"github.com/berthhq/berth/internal/sandbox/sandboxtest"
)

func newRuntime(*testing.T) sandboxtest.Runtime {
	return process.New(process.WithKillGrace(time.Second))
}

func TestSuite(t *testing.T) {
	t.Parallel()
	sandboxtest.Run(t, newRuntime, sandbox.Spec{})
}

func TestBuildRefuses(t *testing.T) {
	t.Parallel()
	_, err := process.New().Build(t.Context(), sandbox.BuildSpec{Dockerfile: "Dockerfile", Tag: "x:1"})
	if err == nil || !strings.Contains(err.Error(), "cannot build images") {
		t.Errorf("Build = %v, want an error saying the process runtime cannot build images", err)
	}
}

func TestCreateNeedsDirectory(t *testing.T) {
	t.Parallel()
	rt := process.New()
	for _, p := range []string{"relative/path", filepath.Join(t.TempDir(), "missing")} {
		if _, err := rt.Create(t.Context(), sandbox.Spec{WorkspaceID: "w", HostPath: p}); err == nil {
			t.Errorf("Create with host path %q succeeded", p)
		}
	}
}

func TestExecDirStaysInWorkspace(t *testing.T) {
	t.Parallel()
	rt := process.New()
	id, spec := sandboxtest.StartContainer(t, rt, sandbox.Spec{})
	for _, dir := range []string{"/etc", "..", sandbox.MountPath + "/../etc", "sub/../../x"} {
		if _, err := rt.Exec(t.Context(), id, sandbox.ExecSpec{Argv: []string{"true"}, Dir: dir}); err == nil {
			t.Errorf("Exec with Dir %q ran", dir)
		}
	}
	want, _ := filepath.EvalSymlinks(spec.HostPath)
	if r := sandboxtest.Exec(t, rt, id, "pwd", "-P"); strings.TrimSpace(r.Stdout) != want {
		t.Errorf("pwd = %q, want %q", r.Stdout, want)
	}
}

// TestExecDirLinksOut: a working directory that leads out of the workspace
// through a symbolic link — one made before the exec, as an earlier command
// could — is refused at that exec, and so is a workspace directory that was
// replaced by a link; nothing runs outside. A link that stays inside is
// followed.
func TestExecDirLinksOut(t *testing.T) {
	t.Parallel()
	rt := process.New()
	id, spec := sandboxtest.StartContainer(t, rt, sandbox.Spec{})
	outside := t.TempDir()
	if err := os.Mkdir(filepath.Join(spec.HostPath, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, target := range map[string]string{"root": "/", "out": outside, "up": "..", "in": "sub"} {
		if err := os.Symlink(target, filepath.Join(spec.HostPath, name)); err != nil {
			t.Fatal(err)
		}
	}
	for _, dir := range []string{"root", "root/tmp", "out", "up", sandbox.MountPath + "/out"} {
		_, err := rt.Exec(t.Context(), id, sandbox.ExecSpec{Argv: []string{"touch", "pwned"}, Dir: dir})
		if !errors.Is(err, hostpath.ErrEscapes) {
			t.Errorf("Exec with Dir %q: err = %v, want hostpath.ErrEscapes", dir, err)
		}
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Errorf("a command ran outside the workspace: %v", entries)
	}
	want, _ := filepath.EvalSymlinks(filepath.Join(spec.HostPath, "sub"))
	if r, err := execOut(t, rt, id, "in"); err != nil || r != want {
		t.Errorf("pwd in a link inside = %q, %v; want %q", r, err, want)
	}

	// The workspace directory itself replaced by a link to a look-alike.
	moved := spec.HostPath + ".moved"
	if err := os.Rename(spec.HostPath, moved); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, spec.HostPath); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Exec(t.Context(), id, sandbox.ExecSpec{Argv: []string{"touch", "pwned"}}); !errors.Is(err, hostpath.ErrSymlink) {
		t.Errorf("Exec in a workspace directory replaced by a link: err = %v, want hostpath.ErrSymlink", err)
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Errorf("a command ran outside the workspace: %v", entries)
	}
}

// execOut runs pwd -P in dir and returns its output.
func execOut(t *testing.T, rt *process.Runtime, id, dir string) (string, error) {
	var out strings.Builder
	_, err := rt.Exec(t.Context(), id, sandbox.ExecSpec{Argv: []string{"pwd", "-P"}, Dir: dir, Stdout: &out})
	return strings.TrimSpace(out.String()), err
}

func TestExecCommandMissing(t *testing.T) {
	t.Parallel()
	rt := process.New()
	id, _ := sandboxtest.StartContainer(t, rt, sandbox.Spec{})
	if _, err := rt.Exec(t.Context(), id, sandbox.ExecSpec{Argv: []string{"berth-no-such-command"}}); err == nil {
		t.Error("Exec of a missing command: no error")
	}
}

// TestExecEnvironmentKeepsSecretsOut checks that berth's own environment
// does not reach commands beyond the few variables they need.
func TestExecEnvironmentKeepsSecretsOut(t *testing.T) {
	t.Setenv("BERTH_TEST_SECRET", "hunter2")
	rt := process.New()
	id, _ := sandboxtest.StartContainer(t, rt, sandbox.Spec{})
	r := sandboxtest.Exec(t, rt, id, "env")
	if strings.Contains(r.Stdout, "hunter2") {
		t.Errorf("a command saw berth's environment:\n%s", r.Stdout)
	}
	if !strings.Contains(r.Stdout, "PATH=") {
		t.Errorf("a command has no PATH:\n%s", r.Stdout)
	}
}

// TestEventsLagged checks that a subscriber that does not read is cut off
// instead of growing a queue or blocking the runtime.
func TestEventsLagged(t *testing.T) {
	t.Parallel()
	rt := process.New()
	events, errs := rt.Events(t.Context())
	id, _ := sandboxtest.CreateContainer(t, rt, sandbox.Spec{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 100 {
			if err := rt.Start(t.Context(), id); err != nil {
				t.Error(err)
			}
			if err := rt.Stop(t.Context(), id, 0); err != nil {
				t.Error(err)
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(sandboxtest.Within(t)):
		t.Fatal("the runtime blocked on a subscriber that does not read")
	}
	n := 0
	for range events {
		n++
	}
	if err := <-errs; !errors.Is(err, process.ErrLagged) {
		t.Errorf("stream ended with %v after %d events, want ErrLagged", err, n)
	}
}
