package sandboxtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berthhq/berth/internal/sandbox"
)

// The suite's tests of Exec: streams, exit codes, stdin, working
// directory and environment, and cancellation.

func testExecNotRunning(t *testing.T, rt Runtime, base sandbox.Spec) {
	ctx := t.Context()
	id, _ := CreateContainer(t, rt, base)
	if _, err := rt.Exec(ctx, id, sandbox.ExecSpec{Argv: []string{"true"}}); !errors.Is(err, sandbox.ErrNotRunning) {
		t.Errorf("Exec in a created container: %v, want ErrNotRunning", err)
	}
	if err := rt.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := rt.Stop(ctx, id, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Exec(ctx, id, sandbox.ExecSpec{Argv: []string{"true"}}); !errors.Is(err, sandbox.ErrNotRunning) {
		t.Errorf("Exec in a stopped container: %v, want ErrNotRunning", err)
	}
	if _, err := rt.Exec(ctx, "berth-no-such-container-"+randomHex(t, 4), sandbox.ExecSpec{Argv: []string{"true"}}); !errors.Is(err, sandbox.ErrNotFound) {
		t.Errorf("Exec in an unknown container: %v, want ErrNotFound", err)
	}
}

// interleaved writes to stdout and stderr in turn, with pauses between, so
// that the order across the two streams is known too.
const interleaved = `for i in 1 2 3; do echo "out $i"; sleep 0.05; echo "err $i" >&2; sleep 0.05; done; echo "out end"`

func testExecStreams(t *testing.T, rt Runtime, base sandbox.Spec) {
	id, _ := StartContainer(t, rt, base)
	var j journal
	stdout, stderr := j.writer("stdout"), j.writer("stderr")
	code, err := rt.Exec(t.Context(), id, sandbox.ExecSpec{
		Argv: []string{"sh", "-c", interleaved}, Stdout: stdout, Stderr: stderr,
	})
	if err != nil || code != 0 {
		t.Fatalf("Exec = %d, %v", code, err)
	}
	if got, want := stdout.String(), "out 1\nout 2\nout 3\nout end\n"; got != want {
		t.Errorf("stdout = %q, want %q", got, want)
	}
	if got, want := stderr.String(), "err 1\nerr 2\nerr 3\n"; got != want {
		t.Errorf("stderr = %q, want %q", got, want)
	}
	want := []string{"stdout: out 1", "stderr: err 1", "stdout: out 2", "stderr: err 2", "stdout: out 3", "stderr: err 3", "stdout: out end"}
	if !slices.Equal(j.entries, want) {
		t.Errorf("lines arrived as\n%q\nwant\n%q", j.entries, want)
	}
}

// testExecStreamsLive proves output is delivered while the command runs:
// the command waits for input that the test sends only once it has seen the
// command's first line.
func testExecStreamsLive(t *testing.T, rt Runtime, base sandbox.Spec) {
	id, _ := StartContainer(t, rt, base)
	stdout := newLines()
	pr, pw := io.Pipe()
	type result struct {
		code int
		err  error
	}
	done := make(chan result, 1)
	go func() {
		code, err := rt.Exec(t.Context(), id, sandbox.ExecSpec{
			Argv:   []string{"sh", "-c", `echo ready; read -r line; echo "got $line"`},
			Stdin:  pr,
			Stdout: stdout,
		})
		done <- result{code, err}
	}()
	if line := stdout.next(t); line != "ready" {
		t.Fatalf("first line %q, want ready", line)
	}
	if _, err := io.WriteString(pw, "hello\n"); err != nil {
		t.Fatal(err)
	}
	// #nosec G104 -- G104: best-effort cleanup or output in test support; a failure shows in the test
	pw.Close()
	if line := stdout.next(t); line != "got hello" {
		t.Errorf("second line %q, want %q", line, "got hello")
	}
	if r := <-done; r.err != nil || r.code != 0 {
		t.Errorf("Exec = %d, %v", r.code, r.err)
	}
}

func testExecExitCodes(t *testing.T, rt Runtime, base sandbox.Spec) {
	id, _ := StartContainer(t, rt, base)
	for _, tc := range []struct {
		argv []string
		want int
	}{
		{[]string{"true"}, 0},
		{[]string{"false"}, 1},
		{[]string{"sh", "-c", "exit 7"}, 7},
		{[]string{"sh", "-c", "echo bye >&2; exit 255"}, 255},
		{[]string{"sh", "-c", "kill -9 $$"}, 128 + 9},
	} {
		if r := Exec(t, rt, id, tc.argv...); r.Code != tc.want {
			t.Errorf("Exec %q: exit code %d, want %d", tc.argv, r.Code, tc.want)
		}
	}
}

func testExecStdin(t *testing.T, rt Runtime, base sandbox.Spec) {
	id, _ := StartContainer(t, rt, base)
	var in strings.Builder
	for i := range 20000 {
		fmt.Fprintf(&in, "line %d\n", i)
	}
	var stdout strings.Builder
	code, err := rt.Exec(t.Context(), id, sandbox.ExecSpec{
		Argv: []string{"cat"}, Stdin: strings.NewReader(in.String()), Stdout: &stdout,
	})
	if err != nil || code != 0 {
		t.Fatalf("Exec cat = %d, %v", code, err)
	}
	if stdout.String() != in.String() {
		t.Errorf("cat returned %d bytes, want the %d given", stdout.Len(), in.Len())
	}
}

func testExecWithoutStdin(t *testing.T, rt Runtime, base sandbox.Spec) {
	id, _ := StartContainer(t, rt, base)
	ctx, cancel := context.WithTimeout(t.Context(), Within(t))
	defer cancel()
	var stdout strings.Builder
	code, err := rt.Exec(ctx, id, sandbox.ExecSpec{Argv: []string{"cat"}, Stdout: &stdout})
	if err != nil || code != 0 || stdout.Len() != 0 {
		t.Errorf("cat without stdin = %d, %v, %q; want 0 and no output (stdin closed)", code, err, stdout.String())
	}
}

func testExecDirAndEnv(t *testing.T, rt Runtime, base sandbox.Spec) {
	base.Env = append(slices.Clone(base.Env), "BERTH_TEST_FROM_SPEC=spec", "BERTH_TEST_OVERRIDDEN=spec")
	id, spec := StartContainer(t, rt, base)
	sub := filepath.Join(spec.HostPath, "sub")
	// #nosec G301 -- G301: a test directory the container user must enter
	if err := os.Mkdir(sub, 0o777); err != nil {
		t.Fatal(err)
	}
	// #nosec G302 -- G302: a test file the container user must read or run
	if err := os.Chmod(sub, 0o777); err != nil { // whatever the umask
		t.Fatal(err)
	}
	var stdout, stderr strings.Builder
	code, err := rt.Exec(t.Context(), id, sandbox.ExecSpec{
		Argv:   []string{"sh", "-c", `echo "$BERTH_TEST_FROM_SPEC $BERTH_TEST_OVERRIDDEN $BERTH_TEST_FROM_EXEC"; echo made-inside > created.txt`},
		Dir:    sandbox.MountPath + "/sub",
		Env:    []string{"BERTH_TEST_OVERRIDDEN=exec", "BERTH_TEST_FROM_EXEC=exec"},
		Stdout: &stdout,
		Stderr: &stderr,
	})
	if err != nil || code != 0 {
		t.Fatalf("Exec = %d, %v; stderr %q", code, err, stderr.String())
	}
	if got, want := stdout.String(), "spec exec exec\n"; got != want {
		t.Errorf("environment: %q, want %q", got, want)
	}
	b, err := os.ReadFile(filepath.Join(spec.HostPath, "sub", "created.txt"))
	if err != nil || string(b) != "made-inside\n" {
		t.Errorf("file written in %s/sub: %q, %v; want it in the project directory", sandbox.MountPath, b, err)
	}
	// The default working directory is the project directory.
	if r := Exec(t, rt, id, "cat", "sub/created.txt"); r.Code != 0 || r.Stdout != "made-inside\n" {
		t.Errorf("cat sub/created.txt from the default directory = %+v", r)
	}
}

// spawner starts two long sleeps — the second ignoring SIGTERM, so only
// SIGKILL ends it — prints their pids, and waits.
const spawner = `sleep "$1" & echo $!; (trap '' TERM; sleep "$2") & echo $!; wait`

func testExecCancelKillsChildren(t *testing.T, rt Runtime, base sandbox.Spec) {
	id, _ := StartContainer(t, rt, base)
	// Durations no other test uses, to find these sleeps among all processes.
	// #nosec G404 -- G404: random test values (names, durations), not a secret
	d1, d2 := strconv.Itoa(100000+rand.IntN(400000)), strconv.Itoa(500000+rand.IntN(400000))
	ctx, cancel := context.WithCancel(t.Context())
	stdout := newLines()
	done := make(chan error, 1)
	go func() {
		_, err := rt.Exec(ctx, id, sandbox.ExecSpec{Argv: []string{"sh", "-c", spawner, "sh", d1, d2}, Stdout: stdout})
		done <- err
	}()
	pids := []string{stdout.next(t), stdout.next(t)}
	if r := Exec(t, rt, id, "ps", "-e", "-o", "pid,stat,args"); !strings.Contains(r.Stdout, "sleep "+d1) || !strings.Contains(r.Stdout, "sleep "+d2) {
		t.Fatalf("the children are not running before the cancel:\n%s", r.Stdout)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled Exec returned %v, want context.Canceled", err)
		}
	case <-time.After(Within(t)):
		t.Fatal("cancelled Exec did not return")
	}
	// Checked from where the command ran: no process listed, and none of
	// the pids alive (a zombie awaiting its reaper counts as dead). The
	// kill is delivered when Exec returns, but a loaded machine may take a
	// while to end the processes: poll until they are gone, up to Within(t).
	var outlived []string
	var alive string
	for deadline := time.Now().Add(Within(t)); ; time.Sleep(100 * time.Millisecond) {
		outlived = nil
		r := Exec(t, rt, id, "ps", "-e", "-o", "pid,stat,args")
		for _, l := range strings.Split(r.Stdout, "\n") {
			f := strings.Fields(l)
			if len(f) >= 3 && !strings.HasPrefix(f[1], "Z") && (strings.Contains(l, "sleep "+d1) || strings.Contains(l, "sleep "+d2)) {
				outlived = append(outlived, l)
			}
		}
		alive = strings.TrimSpace(Exec(t, rt, id, append([]string{"sh", "-c", `for p in "$@"; do
		if [ -r "/proc/$p/stat" ] && ! grep -q '^[0-9]* (.*) [ZX] ' "/proc/$p/stat"; then echo "$p"; fi
	done`, "sh"}, pids...)...).Stdout)
		if (len(outlived) == 0 && alive == "") || time.Now().After(deadline) {
			break
		}
	}
	for _, l := range outlived {
		t.Errorf("a child outlived the cancelled exec: %s", l)
	}
	if alive != "" {
		t.Errorf("pids still alive after the cancel: %s (children were %v)", alive, pids)
	}
}
