package sandboxtest

import (
	"context"
	"errors"
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
	out.next(t)
	out2.next(t)
	if err := rt.StopTagged(t.Context(), id, "", tag); err != nil {
		t.Fatalf("StopTagged: %v", err)
	}
	select {
	case c := <-tagged:
		if c == 0 {
			t.Errorf("the stopped exec exited 0")
		}
	case <-time.After(Within(t)):
		t.Fatal("the tagged exec did not end")
	}
	// The kill is sent before the exec returns, but a loaded machine may
	// take a while to end the process: poll until it is gone, up to
	// Within(t).
	var r Result
	var outlived []string
	for deadline := time.Now().Add(Within(t)); ; time.Sleep(100 * time.Millisecond) {
		outlived = nil
		r = Exec(t, rt, id, "ps", "-e", "-o", "pid,stat,args")
		for _, l := range strings.Split(r.Stdout, "\n") {
			f := strings.Fields(l)
			if len(f) >= 3 && !strings.HasPrefix(f[1], "Z") && strings.Contains(l, "sleep "+d1) {
				outlived = append(outlived, l)
			}
		}
		if len(outlived) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, l := range outlived {
		t.Errorf("a tagged process outlived StopTagged: %s", l)
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
	stdout.next(t)
	if err := rt.Stop(t.Context(), id, 2*time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	select {
	case err := <-done:
		// Ended by the stop: an exit code or an error, either will do.
		_ = err
	case <-time.After(Within(t)):
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
// It fails the test if the stream ends or nothing arrives within Within(t).
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
		case <-time.After(Within(t)):
			t.Fatalf("no %s event for %s within %s; saw %v", last, id, Within(t), got)
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
