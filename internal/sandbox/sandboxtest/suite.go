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

// Run is the behavioural suite every runtime passes. newRuntime returns the
// runtime under test (a kill grace of a second or so keeps the suite fast);
// base is the part of every Spec that depends on the runtime — the image,
// user and network for a container runtime; the suite fills the workspace
// id and a fresh project directory. Commands run are POSIX sh and ps, so
// they work in the test image and on a host alike.
func Run(t *testing.T, newRuntime func(t *testing.T) Runtime, base sandbox.Spec) {
	tests := []struct {
		name string
		run  func(*testing.T, Runtime, sandbox.Spec)
	}{
		{"Lifecycle", testLifecycle},
		{"InspectUnknown", testInspectUnknown},
		{"CreateNameTaken", testCreateNameTaken},
		{"ExecNotRunning", testExecNotRunning},
		{"ExecSeparatesStreamsInOrder", testExecStreams},
		{"ExecStreamsAsOutputComes", testExecStreamsLive},
		{"ExecExitCodes", testExecExitCodes},
		{"ExecStdin", testExecStdin},
		{"ExecWithoutStdin", testExecWithoutStdin},
		{"ExecDirAndEnv", testExecDirAndEnv},
		{"ExecCancelKillsChildren", testExecCancelKillsChildren},
		{"StopTagged", testStopTagged},
		{"StopEndsExecs", testStopEndsExecs},
		{"Events", testEvents},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, newRuntime(t), base)
		})
	}
}

func testLifecycle(t *testing.T, rt Runtime, base sandbox.Spec) {
	ctx := t.Context()
	id, spec := CreateContainer(t, rt, base)
	// #nosec G306 -- G306: a test file the container user must read
	if err := os.WriteFile(filepath.Join(spec.HostPath, "kept.txt"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	wantState(t, rt, id, sandbox.StateCreated)
	info, err := rt.Inspect(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if info.ID != id || info.WorkspaceID != spec.WorkspaceID {
		t.Errorf("Inspect = %+v, want ID %s and WorkspaceID %s", info, id, spec.WorkspaceID)
	}
	listed(t, rt, id, spec.WorkspaceID, sandbox.StateCreated)

	before := time.Now().Add(-time.Second)
	if err := rt.Start(ctx, id); err != nil {
		t.Fatalf("Start: %v", err)
	}
	info = wantState(t, rt, id, sandbox.StateRunning)
	if info.StartedAt.Before(before) {
		t.Errorf("StartedAt = %v, want after %v", info.StartedAt, before)
	}
	listed(t, rt, id, spec.WorkspaceID, sandbox.StateRunning)
	if err := rt.Start(ctx, id); err != nil {
		t.Errorf("Start of a running container: %v", err)
	}

	if err := rt.Stop(ctx, id, 5*time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	wantState(t, rt, id, sandbox.StateStopped)
	listed(t, rt, id, spec.WorkspaceID, sandbox.StateStopped)
	if err := rt.Stop(ctx, id, 5*time.Second); err != nil {
		t.Errorf("Stop of a stopped container: %v", err)
	}

	if err := rt.Start(ctx, id); err != nil {
		t.Fatalf("Start after Stop: %v", err)
	}
	wantState(t, rt, id, sandbox.StateRunning)

	if err := rt.Remove(ctx, id); err != nil {
		t.Fatalf("Remove of a running container: %v", err)
	}
	if _, err := rt.Inspect(ctx, id); !errors.Is(err, sandbox.ErrNotFound) {
		t.Errorf("Inspect after Remove: %v, want ErrNotFound", err)
	}
	if err := rt.Remove(ctx, id); !errors.Is(err, sandbox.ErrNotFound) {
		t.Errorf("Remove after Remove: %v, want ErrNotFound", err)
	}
	if err := rt.Start(ctx, id); !errors.Is(err, sandbox.ErrNotFound) {
		t.Errorf("Start after Remove: %v, want ErrNotFound", err)
	}
	infos, err := rt.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range infos {
		if in.ID == id {
			t.Errorf("List after Remove still has %+v", in)
		}
	}
	if b, err := os.ReadFile(filepath.Join(spec.HostPath, "kept.txt")); err != nil || string(b) != "mine" {
		t.Errorf("the project directory lost its file on Remove: %q, %v", b, err)
	}
}

func testInspectUnknown(t *testing.T, rt Runtime, _ sandbox.Spec) {
	if _, err := rt.Inspect(t.Context(), "berth-no-such-container-"+randomHex(t, 4)); !errors.Is(err, sandbox.ErrNotFound) {
		t.Errorf("Inspect of an unknown id: %v, want ErrNotFound", err)
	}
}

func testCreateNameTaken(t *testing.T, rt Runtime, base sandbox.Spec) {
	_, spec := CreateContainer(t, rt, base)
	id, err := rt.Create(t.Context(), spec)
	if err == nil {
		_ = rt.Remove(context.Background(), id)
	}
	if !errors.Is(err, sandbox.ErrConflict) {
		t.Errorf("second Create for workspace %s: %v, want ErrConflict", spec.WorkspaceID, err)
	}
}

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
	if line := stdout.next(t, 30*time.Second); line != "ready" {
		t.Fatalf("first line %q, want ready", line)
	}
	if _, err := io.WriteString(pw, "hello\n"); err != nil {
		t.Fatal(err)
	}
	// #nosec G104 -- G104: best-effort cleanup or output in test support; a failure shows in the test
	pw.Close()
	if line := stdout.next(t, 30*time.Second); line != "got hello" {
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
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
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
	pids := []string{stdout.next(t, 30*time.Second), stdout.next(t, 30*time.Second)}
	if r := Exec(t, rt, id, "ps", "-e", "-o", "pid,stat,args"); !strings.Contains(r.Stdout, "sleep "+d1) || !strings.Contains(r.Stdout, "sleep "+d2) {
		t.Fatalf("the children are not running before the cancel:\n%s", r.Stdout)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled Exec returned %v, want context.Canceled", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("cancelled Exec did not return")
	}
	// Checked from where the command ran: no process listed, and none of
	// the pids alive (a zombie awaiting its reaper counts as dead).
	r := Exec(t, rt, id, "ps", "-e", "-o", "pid,stat,args")
	for _, l := range strings.Split(r.Stdout, "\n") {
		f := strings.Fields(l)
		if len(f) >= 3 && !strings.HasPrefix(f[1], "Z") && (strings.Contains(l, "sleep "+d1) || strings.Contains(l, "sleep "+d2)) {
			t.Errorf("a child outlived the cancelled exec: %s", l)
		}
	}
	alive := Exec(t, rt, id, append([]string{"sh", "-c", `for p in "$@"; do
		if [ -r "/proc/$p/stat" ] && ! grep -q '^[0-9]* (.*) [ZX] ' "/proc/$p/stat"; then echo "$p"; fi
	done`, "sh"}, pids...)...)
	if strings.TrimSpace(alive.Stdout) != "" {
		t.Errorf("pids still alive after the cancel: %s (children were %v)", alive.Stdout, pids)
	}
}

// testStopTagged: the processes of a tagged exec — its command and what it
// started — are stopped by StopTagged (as another berth instance would,
// after the one running them died), and an exec with another tag is not.
func testStopTagged(t *testing.T, rt Runtime, base sandbox.Spec) {
	id, _ := StartContainer(t, rt, base)
	tag, other := "task-"+randomHex(t, 6), "task-"+randomHex(t, 6)
	// #nosec G404 -- G404: random test values (names, durations), not a secret
	d1, d2 := strconv.Itoa(100000+rand.IntN(400000)), strconv.Itoa(500000+rand.IntN(400000))
	run := func(tag, d string) (<-chan int, *lines) {
		out := newLines()
		code := make(chan int, 1)
		go func() {
			c, err := rt.Exec(context.WithoutCancel(t.Context()), id, sandbox.ExecSpec{
				Argv: []string{"sh", "-c", `sleep "$1" & echo started; wait`, "sh", d}, Stdout: out, Tag: tag,
			})
			if err != nil {
				t.Errorf("exec: %v", err)
			}
			code <- c
		}()
		return code, out
	}
	tagged, out := run(tag, d1)
	untagged, out2 := run(other, d2)
	out.next(t, 30*time.Second)
	out2.next(t, 30*time.Second)
	if err := rt.StopTagged(t.Context(), id, "", tag); err != nil {
		t.Fatalf("StopTagged: %v", err)
	}
	select {
	case c := <-tagged:
		if c == 0 {
			t.Errorf("the stopped exec exited 0")
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the tagged exec did not end")
	}
	r := Exec(t, rt, id, "ps", "-e", "-o", "pid,stat,args")
	for _, l := range strings.Split(r.Stdout, "\n") {
		f := strings.Fields(l)
		if len(f) >= 3 && !strings.HasPrefix(f[1], "Z") && strings.Contains(l, "sleep "+d1) {
			t.Errorf("a tagged process outlived StopTagged: %s", l)
		}
	}
	if !strings.Contains(r.Stdout, "sleep "+d2) {
		t.Errorf("the exec with another tag was stopped too:\n%s", r.Stdout)
	}
	if err := rt.StopTagged(t.Context(), id, "", other); err != nil {
		t.Fatal(err)
	}
	<-untagged
	if err := rt.StopTagged(t.Context(), id, "", "task-none"); err != nil {
		t.Errorf("StopTagged with nothing to stop: %v", err)
	}
}

func testStopEndsExecs(t *testing.T, rt Runtime, base sandbox.Spec) {
	id, _ := StartContainer(t, rt, base)
	stdout := newLines()
	done := make(chan error, 1)
	go func() {
		_, err := rt.Exec(t.Context(), id, sandbox.ExecSpec{Argv: []string{"sh", "-c", "echo started; sleep 600"}, Stdout: stdout})
		done <- err
	}()
	stdout.next(t, 30*time.Second)
	if err := rt.Stop(t.Context(), id, 2*time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	select {
	case err := <-done:
		// Ended by the stop: an exit code or an error, either will do.
		_ = err
	case <-time.After(30 * time.Second):
		t.Fatal("an exec outlived the stop of its container")
	}
}

func testEvents(t *testing.T, rt Runtime, base sandbox.Spec) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	events, errs := rt.Events(ctx)
	id, _ := CreateContainer(t, rt, base)
	if err := rt.Start(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	if err := rt.Stop(t.Context(), id, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := rt.Remove(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	want := []sandbox.State{sandbox.StateCreated, sandbox.StateRunning, sandbox.StateStopped, sandbox.StateMissing}
	got := WaitEvents(t, events, errs, id, sandbox.StateMissing)
	if !slices.Equal(got, want) {
		t.Errorf("states %v, want %v", got, want)
	}
	cancel()
	for range events {
		// Drained: the stream ends with its context.
	}
	if err, ok := <-errs; ok && err != nil {
		t.Errorf("event stream ended with %v, want no error when its context ends", err)
	}
}

// WaitEvents collects the states reported for container id until last
// arrives, folding repeats (an engine reports both die and stop on a stop).
// It fails the test if the stream ends or nothing arrives for 30 s.
func WaitEvents(t testing.TB, events <-chan sandbox.Event, errs <-chan error, id string, last sandbox.State) []sandbox.State {
	t.Helper()
	var got []sandbox.State
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("event stream ended (%v) after %v", <-errs, got)
			}
			if ev.ContainerID != id {
				continue
			}
			if ev.Time.IsZero() {
				t.Errorf("event %+v has no time", ev)
			}
			if len(got) == 0 || got[len(got)-1] != ev.State {
				got = append(got, ev.State)
			}
			if ev.State == last {
				return got
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("no %s event for %s within 30s; saw %v", last, id, got)
		}
	}
}

// wantState checks Inspect's state and returns what it said.
func wantState(t *testing.T, rt Runtime, id string, want sandbox.State) sandbox.Info {
	t.Helper()
	info, err := rt.Inspect(t.Context(), id)
	if err != nil {
		t.Fatalf("Inspect: %v", err)
	}
	if info.State != want {
		t.Fatalf("state %q, want %q (%+v)", info.State, want, info)
	}
	return info
}

// listed checks that List reports the container with its workspace and
// state.
func listed(t *testing.T, rt Runtime, id, workspaceID string, state sandbox.State) {
	t.Helper()
	infos, err := rt.List(t.Context())
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	for _, in := range infos {
		if in.ID == id {
			if in.WorkspaceID != workspaceID || in.State != state {
				t.Errorf("List has %+v, want workspace %s in state %s", in, workspaceID, state)
			}
			return
		}
	}
	t.Errorf("List does not have %s", id)
}
