package stream_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/berthhq/berth/internal/bus"
	"github.com/berthhq/berth/internal/event"
	"github.com/berthhq/berth/internal/store"
	"github.com/berthhq/berth/internal/stream"
	"github.com/berthhq/berth/internal/tasklog"
)

// running opens a real store with a running task and returns the follower
// and the task.
func running(t *testing.T) (stream.Task, *store.TaskRecord) {
	t.Helper()
	ctx := t.Context()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "berth.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	now := time.Now().UTC()
	u := &store.User{ID: uuid.NewString(), Email: "u@example.com", Name: "U", Role: store.RoleMember, CreatedAt: now, UpdatedAt: now}
	if err := st.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	w := &store.Workspace{ID: uuid.NewString(), OwnerID: u.ID, Name: "w", Path: "/srv/w", Status: store.WorkspaceRunning, CreatedAt: now, UpdatedAt: now}
	if err := st.CreateWorkspace(ctx, w); err != nil {
		t.Fatal(err)
	}
	tr := &store.TaskRecord{ID: uuid.NewString(), WorkspaceID: w.ID, CreatedBy: u.ID, Type: store.TaskClaudeChat, Status: store.TaskRunning, Priority: store.TaskPriorityMedium, CreatedAt: now, StartedAt: &now}
	if err := st.CreateTaskRecord(ctx, tr); err != nil {
		t.Fatal(err)
	}
	return stream.Task{Store: st, Bus: bus.New(), State: state(st)}, tr
}

// state reads a task's state from the store, as the task service does
// (progress aside, which these tests do not set).
func state(st *store.Store) func(context.Context, string) (event.TaskChanged, error) {
	return func(ctx context.Context, id string) (event.TaskChanged, error) {
		rec, _, err := st.FindTask(ctx, id, store.Viewer{Admin: true})
		if err != nil {
			return event.TaskChanged{}, err
		}
		return event.TaskChanged{TaskID: rec.ID, WorkspaceID: rec.WorkspaceID, Status: rec.Status}, nil
	}
}

// finish writes n lines through a real tasklog.Writer, then ends the task
// as the runner does: log closed, status stored, then published.
func finish(t *testing.T, f stream.Task, tr *store.TaskRecord, n int) {
	t.Helper()
	w := tasklog.NewWriter(f.Store, f.Bus, tr.ID, 1, tasklog.Options{FlushLines: 64, FlushEvery: time.Millisecond})
	for i := range n {
		w.Log(store.LogInfo, store.LogStdout, fmt.Sprintf("line %d", i+1), nil)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	done, err := f.Store.FinishTask(context.Background(), tr.ID, []store.TaskStatus{store.TaskRunning}, store.TaskSucceeded, store.TaskFinish{CompletedAt: new(time.Now().UTC())})
	if err != nil {
		t.Fatal(err)
	}
	f.Bus.Publish(event.TaskTopic(tr.ID), event.TaskChanged{TaskID: done.ID, WorkspaceID: done.WorkspaceID, Status: done.Status})
}

// collect follows a task to its end and returns the seqs and the end.
func collect(ctx context.Context, f stream.Task, id string, from int64, gate <-chan struct{}) ([]int64, stream.TaskEvent, error) {
	var seqs []int64
	var end stream.TaskEvent
	err := f.Follow(ctx, id, from, func(ev stream.TaskEvent) error {
		if gate != nil {
			<-gate
		}
		switch ev.Kind {
		case stream.KindLog:
			seqs = append(seqs, ev.Log.Seq)
		case stream.KindEnd:
			end = ev
		}
		return nil
	}, stream.Loop{})
	return seqs, end, err
}

func checkExact(t *testing.T, what string, seqs []int64, from, last int64) {
	t.Helper()
	if int64(len(seqs)) != last-from+1 {
		t.Fatalf("%s: %d lines, want %d", what, len(seqs), last-from+1)
	}
	for i, s := range seqs {
		if s != from+int64(i) {
			t.Fatalf("%s: line %d is seq %d, want %d", what, i, s, from+int64(i))
		}
	}
}

// TestFollowLaggedReader: a reader that blocks while many more lines than
// its queue holds are written is marked lagged, catches up from the store,
// and gets every line once, in order; a fast reader is not held up.
func TestFollowLaggedReader(t *testing.T) {
	t.Parallel()
	f, tr := running(t)
	const n = 5000
	gate := make(chan struct{})
	type result struct {
		seqs []int64
		end  stream.TaskEvent
		err  error
	}
	slow, fast := make(chan result, 1), make(chan result, 1)
	var started sync.WaitGroup
	started.Add(2)
	go func() {
		started.Done()
		seqs, end, err := collect(t.Context(), f, tr.ID, 0, gate)
		slow <- result{seqs, end, err}
	}()
	go func() {
		started.Done()
		seqs, end, err := collect(t.Context(), f, tr.ID, 0, nil)
		fast <- result{seqs, end, err}
	}()
	started.Wait()
	time.Sleep(50 * time.Millisecond) // both subscribed
	finish(t, f, tr, n)
	var r result
	select {
	case r = <-fast:
	case <-time.After(20 * time.Second):
		t.Fatal("the fast reader waited for the slow one")
	}
	if r.err != nil || r.end.Kind != stream.KindEnd || r.end.LastSeq != n {
		t.Fatalf("fast: %v, end %+v", r.err, r.end)
	}
	checkExact(t, "fast", r.seqs, 1, n)
	close(gate)
	r = <-slow
	if r.err != nil || r.end.Kind != stream.KindEnd || r.end.LastSeq != n || r.end.Status != store.TaskSucceeded {
		t.Fatalf("slow: %v, end %+v", r.err, r.end)
	}
	checkExact(t, "slow", r.seqs, 1, n)
}

// TestFollowFinishedTask: following a finished task from a seq sends the
// rest of its log, then the end, without waiting for the bus.
func TestFollowFinishedTask(t *testing.T) {
	t.Parallel()
	f, tr := running(t)
	finish(t, f, tr, 1500)
	seqs, end, err := collect(t.Context(), f, tr.ID, 700, nil)
	if err != nil || end.LastSeq != 1500 {
		t.Fatalf("%v, end %+v", err, end)
	}
	checkExact(t, "from 700", seqs, 700, 1500)
	seqs, end, err = collect(t.Context(), f, tr.ID, 1501, nil)
	if err != nil || len(seqs) != 0 || end.LastSeq != 1500 {
		t.Fatalf("from the end: %v, %d lines, end %+v", err, len(seqs), end)
	}
}

// TestFollowOrder: the stored log comes first, then the task's status, and
// the end names the task's true last line even to a reader that asked to
// start far beyond it.
func TestFollowOrder(t *testing.T) {
	t.Parallel()
	f, tr := running(t)
	finish(t, f, tr, 11)
	var kinds []stream.Kind
	var end stream.TaskEvent
	err := f.Follow(t.Context(), tr.ID, 0, func(ev stream.TaskEvent) error {
		if len(kinds) == 0 || kinds[len(kinds)-1] != ev.Kind {
			kinds = append(kinds, ev.Kind)
		}
		if ev.Kind == stream.KindEnd {
			end = ev
		}
		return nil
	}, stream.Loop{})
	if err != nil {
		t.Fatal(err)
	}
	if want := []stream.Kind{stream.KindLog, stream.KindStatus, stream.KindEnd}; fmt.Sprint(kinds) != fmt.Sprint(want) {
		t.Errorf("event kinds in order %v, want %v (the log, then the status, then the end)", kinds, want)
	}
	if end.LastSeq != 11 {
		t.Errorf("end.LastSeq = %d, want 11", end.LastSeq)
	}
	for _, from := range []int64{12, 999} {
		seqs, end, err := collect(t.Context(), f, tr.ID, from, nil)
		if err != nil || len(seqs) != 0 || end.LastSeq != 11 {
			t.Errorf("from %d: %v, %d lines, end.LastSeq %d; want 11", from, err, len(seqs), end.LastSeq)
		}
	}
}

// TestFollowStopsWithContext: a reader that leaves ends Follow with its
// context's error; the task is untouched.
func TestFollowStopsWithContext(t *testing.T) {
	t.Parallel()
	f, tr := running(t)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { _, _, err := collect(ctx, f, tr.ID, 0, nil); done <- err }()
	time.Sleep(20 * time.Millisecond)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Follow = %v, want context.Canceled", err)
	}
	got, _, err := f.Store.FindTask(t.Context(), tr.ID, store.Viewer{Admin: true})
	if err != nil || got.Status != store.TaskRunning {
		t.Fatalf("task %v, %v", got, err)
	}
}

// TestAfter: the seq to resume from is the next one, and the largest seq
// does not wrap round to a negative one (which Follow reads as the whole
// log).
func TestAfter(t *testing.T) {
	t.Parallel()
	for since, want := range map[int64]int64{0: 1, 41: 42, math.MaxInt64 - 1: math.MaxInt64, math.MaxInt64: math.MaxInt64} {
		if got := stream.After(since); got != want {
			t.Errorf("After(%d) = %d, want %d", since, got, want)
		}
	}
}

// TestFollowSendsTheEventsState: a task's changes reach its followers with
// the status and progress their events carry — the store is read for the
// task's state only when a follow starts, not once per follower per event
// — and an event older than the state a follower started from (queued
// before its store read) does not take it back.
func TestFollowSendsTheEventsState(t *testing.T) {
	t.Parallel()
	f, tr := running(t)
	var reads atomic.Int64
	read := f.State
	f.State = func(ctx context.Context, id string) (event.TaskChanged, error) {
		reads.Add(1)
		return read(ctx, id)
	}
	const followers, changes = 20, 50
	type got struct {
		kinds    []stream.Kind
		progress []event.Progress
		status   []store.TaskStatus
		err      error
	}
	results := make(chan got, followers)
	var subscribed sync.WaitGroup
	subscribed.Add(followers)
	for range followers {
		go func() {
			var g got
			first := true
			g.err = f.Follow(t.Context(), tr.ID, 0, func(ev stream.TaskEvent) error {
				if first {
					first = false
					subscribed.Done() // the running status: subscribed, state read
				}
				g.kinds = append(g.kinds, ev.Kind)
				g.status = append(g.status, ev.Status)
				if ev.Kind == stream.KindProgress {
					g.progress = append(g.progress, ev.Progress)
				}
				return nil
			}, stream.Loop{})
			results <- g
		}()
	}
	subscribed.Wait()
	topic := event.TaskTopic(tr.ID)
	// Queued before the followers' reads: older than what they hold.
	f.Bus.Publish(topic, event.TaskChanged{TaskID: tr.ID, WorkspaceID: tr.WorkspaceID, Status: store.TaskQueued})
	for i := 1; i <= changes; i++ {
		f.Bus.Publish(topic, event.TaskChanged{TaskID: tr.ID, WorkspaceID: tr.WorkspaceID, Status: store.TaskRunning,
			Progress: event.Progress{Current: int32(i), Total: changes, Percentage: int32(i * 100 / changes), Message: fmt.Sprintf("step %d", i)}})
	}
	finish(t, f, tr, 3)
	for range followers {
		g := <-results
		if g.err != nil {
			t.Fatal(g.err)
		}
		if len(g.progress) != changes {
			t.Fatalf("%d progress events, want %d", len(g.progress), changes)
		}
		for i, p := range g.progress {
			if p.Current != int32(i+1) || p.Message != fmt.Sprintf("step %d", i+1) {
				t.Fatalf("progress %d is %+v", i, p)
			}
		}
		for _, s := range g.status {
			if s == store.TaskQueued {
				t.Fatalf("a follower went back to queued: %v", g.status)
			}
		}
		if last := g.kinds[len(g.kinds)-1]; last != stream.KindEnd {
			t.Fatalf("last event %v, want the end", last)
		}
	}
	// One read per follower when it starts (its state after the
	// catch-up), none per change.
	if n := reads.Load(); n != followers {
		t.Errorf("the task's state was read %d times for %d followers and %d changes, want %d", n, followers, changes, followers)
	}
}

// TestOpenStep: a follower driven by its wake function — Open, then a Step
// per wake-up, as a transport with no goroutine waiting drives it — gets
// every line once, in order, then the end, as Follow does, here after
// lagging (the lines are written before it steps, more than its queue
// holds); an unknown task is an error from Open, with nothing sent.
func TestOpenStep(t *testing.T) {
	t.Parallel()
	f, tr := running(t)
	const n = 3000
	woken := make(chan struct{}, 1)
	wake := func() {
		select {
		case woken <- struct{}{}:
		default:
		}
	}
	var seqs []int64
	var end stream.TaskEvent
	send := func(ev stream.TaskEvent) error {
		switch ev.Kind {
		case stream.KindLog:
			seqs = append(seqs, ev.Log.Seq)
		case stream.KindEnd:
			end = ev
		}
		return nil
	}
	fol, done, err := f.Open(t.Context(), tr.ID, 0, send, wake)
	if err != nil || done {
		t.Fatalf("Open = %v, done %v; want a running follow", err, done)
	}
	defer fol.Close()
	finish(t, f, tr, n)
	for !done {
		select {
		case <-woken:
		case <-t.Context().Done():
			t.Fatalf("no wake-up after %d lines", len(seqs))
		}
		if done, err = fol.Step(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if end.Kind != stream.KindEnd || end.LastSeq != n {
		t.Fatalf("end %+v, want the end after seq %d", end, n)
	}
	checkExact(t, "stepped", seqs, 1, n)

	sent := false
	if _, _, err := f.Open(t.Context(), uuid.NewString(), 0, func(stream.TaskEvent) error { sent = true; return nil }, wake); err == nil || sent {
		t.Errorf("Open of an unknown task = %v, sent %v; want an error and nothing sent", err, sent)
	}
}
