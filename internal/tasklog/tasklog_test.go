package tasklog_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/berthhq/berth/internal/bus"
	"github.com/berthhq/berth/internal/event"
	"github.com/berthhq/berth/internal/store"
	"github.com/berthhq/berth/internal/tasklog"
)

// openStore opens a fresh SQLite store, closed at the end of the test.
func openStore(tb testing.TB) *store.Store {
	tb.Helper()
	s, err := store.Open(tb.Context(), filepath.Join(tb.TempDir(), "berth.db"))
	if err != nil {
		tb.Fatalf("open store: %v", err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s
}

// newTask returns a new task's record, with its user and workspace stored;
// the task is stored too unless store is false.
func newTask(tb testing.TB, s *store.Store, stored bool) *store.TaskRecord {
	tb.Helper()
	ctx := tb.Context()
	now := time.Now()
	u := &store.User{ID: uuid.NewString(), Email: uuid.NewString() + "@example.com", Role: store.RoleMember, CreatedAt: now, UpdatedAt: now}
	if err := s.CreateUser(ctx, u); err != nil {
		tb.Fatal(err)
	}
	w := &store.Workspace{ID: uuid.NewString(), OwnerID: u.ID, Name: "w", Path: "/srv/w", Status: store.WorkspaceRunning, CreatedAt: now, UpdatedAt: now}
	if err := s.CreateWorkspace(ctx, w); err != nil {
		tb.Fatal(err)
	}
	tr := &store.TaskRecord{ID: uuid.NewString(), WorkspaceID: w.ID, CreatedBy: u.ID, Type: store.TaskClaudeChat,
		Status: store.TaskRunning, Priority: store.TaskPriorityMedium, CreatedAt: now}
	if stored {
		if err := s.CreateTaskRecord(ctx, tr); err != nil {
			tb.Fatal(err)
		}
	}
	return tr
}

// stored returns the task's whole stored log.
func stored(t *testing.T, s *store.Store, taskID string) []store.LogEntry {
	t.Helper()
	list, err := s.ListTaskLogs(t.Context(), taskID, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	return list
}

// messages checks the stored log is numbered 1…n and returns its messages.
func messages(t *testing.T, s *store.Store, taskID string) []string {
	t.Helper()
	var out []string
	for i, e := range stored(t, s, taskID) {
		if e.Seq != int64(i+1) {
			t.Fatalf("entry %d has seq %d", i, e.Seq)
		}
		out = append(out, e.Message)
	}
	return out
}

func equal[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%s:\n got  %#v\n want %#v", what, got, want)
	}
}

func TestHundredThousandLines(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	tr := newTask(t, s, true)
	w := tasklog.NewWriter(s, nil, tr.ID, 1, tasklog.Options{})
	out := w.Stdout()
	const n = 100_000
	var chunk bytes.Buffer
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&chunk, "line %d\n", i)
		// Writes of odd sizes, so lines straddle writes.
		if chunk.Len() > 3000 || i == n {
			b := chunk.Bytes()
			half := len(b) / 3
			must(t, write(out, b[:half]))
			must(t, write(out, b[half:]))
			chunk.Reset()
		}
	}
	must(t, w.Close())
	list := stored(t, s, tr.ID)
	if len(list) != n {
		t.Fatalf("stored %d entries, want %d", len(list), n)
	}
	for i, e := range list {
		if e.Seq != int64(i+1) || e.Message != fmt.Sprintf("line %d", i+1) || e.Source != store.LogStdout {
			t.Fatalf("entry %d is %+v", i, e)
		}
	}
	equal(t, "last seq", w.LastSeq(), int64(n))
}

func write(w io.Writer, b []byte) error {
	_, err := w.Write(b)
	return err
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestLongLinesSplit(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	tr := newTask(t, s, true)
	w := tasklog.NewWriter(s, nil, tr.ID, 1, tasklog.Options{MaxLine: 10})
	w.Log(store.LogInfo, store.LogAssistant, "0123456789abcdefghijXYZ", []byte(`{"k":1}`))
	// é is two bytes: the cut never splits it.
	w.Log(store.LogInfo, store.LogAssistant, "ééééééé", nil)
	// An endless line through Stdout is cut as it grows.
	out := w.Stdout()
	for range 5 {
		must(t, write(out, []byte("abcdefg")))
	}
	must(t, write(out, []byte("\n")))
	must(t, w.Close())
	equal(t, "messages", messages(t, s, tr.ID), []string{
		"0123456789", "abcdefghij", "XYZ", "ééééé", "éé", "abcdefgabc", "defgabcdef", "gabcdefgab", "cdefg",
	})
	list := stored(t, s, tr.ID)
	for _, e := range list[:3] {
		equal(t, "fields of a piece", string(e.Fields), `{"k":1}`)
	}
}

func TestDefaultMaxLine(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	tr := newTask(t, s, true)
	w := tasklog.NewWriter(s, nil, tr.ID, 1, tasklog.Options{})
	long := strings.Repeat("x", tasklog.DefaultMaxLine*2+5)
	must(t, write(w.Stderr(), []byte(long+"\n")))
	must(t, w.Close())
	got := messages(t, s, tr.ID)
	equal(t, "pieces", len(got), 3)
	equal(t, "joined", strings.Join(got, ""), long)
}

func TestInvalidUTF8AndCarriageReturn(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	tr := newTask(t, s, true)
	w := tasklog.NewWriter(s, nil, tr.ID, 1, tasklog.Options{})
	must(t, write(w.Stdout(), []byte("bad \xff\xfe byte\r\nwindows\r\n\nlast")))
	w.Log("loud", "kernel", "unknown level and source", []byte(`{not json`))
	must(t, w.Close())
	equal(t, "messages", messages(t, s, tr.ID), []string{"bad \uFFFD byte", "windows", "", "unknown level and source", "last"})
	e := stored(t, s, tr.ID)[3]
	if e.Level != store.LogInfo || e.Source != store.LogSystem || e.Fields != nil {
		t.Fatalf("a bad entry was stored as %+v", e)
	}
}

func TestPartialLineKeptUntilClose(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	tr := newTask(t, s, true)
	w := tasklog.NewWriter(s, nil, tr.ID, 1, tasklog.Options{FlushEvery: time.Millisecond})
	out := w.Stdout()
	must(t, write(out, []byte("one\ntw")))
	deadline := time.Now().Add(5 * time.Second)
	for w.LastSeq() < 1 {
		if time.Now().After(deadline) {
			t.Fatal("the first line was never written")
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	equal(t, "before Close", messages(t, s, tr.ID), []string{"one"})
	must(t, write(out, []byte("o")))
	must(t, w.Close())
	equal(t, "after Close", messages(t, s, tr.ID), []string{"one", "two"})
	w.Log(store.LogInfo, store.LogSystem, "after Close", nil)
	must(t, w.Close())
	equal(t, "a Log after Close", messages(t, s, tr.ID), []string{"one", "two"})
}

func TestResumeFromSeq(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	tr := newTask(t, s, true)
	w := tasklog.NewWriter(s, nil, tr.ID, 1, tasklog.Options{})
	w.Log(store.LogInfo, store.LogSystem, "first run", nil)
	must(t, w.Close())
	last, err := s.LastLogSeq(t.Context(), tr.ID)
	must(t, err)
	w = tasklog.NewWriter(s, nil, tr.ID, last+1, tasklog.Options{})
	equal(t, "last seq before writing", w.LastSeq(), int64(1))
	w.Log(store.LogInfo, store.LogSystem, "second run", nil)
	must(t, w.Close())
	equal(t, "messages", messages(t, s, tr.ID), []string{"first run", "second run"})
}

func TestPublishedOnlyOnceStored(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	tr := newTask(t, s, true)
	b := bus.New()
	sub := b.Subscribe("task:"+tr.ID, 10_000)
	w := tasklog.NewWriter(s, b, tr.ID, 1, tasklog.Options{FlushLines: 64, FlushEvery: time.Millisecond})
	const n = 3000
	go func() {
		for i := 1; i <= n; i++ {
			w.Log(store.LogInfo, store.LogStdout, fmt.Sprintf("line %d", i), nil)
		}
	}()
	for want := int64(1); want <= n; want++ {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		v, err := sub.Recv(ctx)
		cancel()
		switch {
		case err == nil:
			e, ok := v.(*event.Line)
			if !ok {
				t.Fatalf("published a %T", v)
			}
			if e.Seq != want {
				t.Fatalf("published seq %d, want %d", e.Seq, want)
			}
			got, err := s.ListTaskLogs(t.Context(), tr.ID, e.Seq-1, 1)
			must(t, err)
			if len(got) != 1 || got[0].Message != e.Message {
				t.Fatalf("entry %d was published before it was stored (store has %+v)", e.Seq, got)
			}
		default:
			t.Fatalf("entry %d never published: %v", want, err)
		}
	}
	must(t, w.Close())
	if sub.Lagged() {
		t.Fatal("the subscriber lagged")
	}
}

// A store failure is retried, in order, without a gap: here the task does
// not exist yet when the first writes are tried.
func TestRetriesUntilTheStoreTakesThem(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	tr := newTask(t, s, false)
	w := tasklog.NewWriter(s, nil, tr.ID, 1, tasklog.Options{FlushEvery: time.Millisecond, Backoff: 5 * time.Millisecond, Retries: 1000})
	for i := range 100 {
		w.Log(store.LogInfo, store.LogStdout, fmt.Sprint(i), nil)
	}
	time.Sleep(30 * time.Millisecond)
	equal(t, "last seq while failing", w.LastSeq(), int64(0))
	must(t, s.CreateTaskRecord(t.Context(), tr))
	for i := 100; i < 200; i++ {
		w.Log(store.LogInfo, store.LogStdout, fmt.Sprint(i), nil)
	}
	must(t, w.Close())
	got := messages(t, s, tr.ID)
	equal(t, "stored", len(got), 200)
	for i, m := range got {
		equal(t, "message", m, fmt.Sprint(i))
	}
}

// When the store keeps failing the writer gives up: Close reports it and
// Log no longer blocks.
func TestGivesUpAndReports(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	tr := newTask(t, s, false)
	w := tasklog.NewWriter(s, nil, tr.ID, 1, tasklog.Options{FlushEvery: time.Millisecond, Backoff: time.Millisecond, Retries: 3, MaxBuffered: 10})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 1000 {
			w.Log(store.LogInfo, store.LogStdout, "x", nil)
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Log blocked after the writer gave up")
	}
	err := w.Close()
	if err == nil || !strings.Contains(err.Error(), "task not found") {
		t.Fatalf("Close = %v, want the store's error", err)
	}
	if !errors.Is(w.Close(), err) {
		t.Fatal("a second Close forgot the error")
	}
	equal(t, "last seq", w.LastSeq(), int64(0))
}

// Backpressure: a small buffer still takes every line, in order.
func TestBackpressure(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	tr := newTask(t, s, true)
	w := tasklog.NewWriter(s, nil, tr.ID, 1, tasklog.Options{MaxBuffered: 8, FlushLines: 4})
	for i := range 500 {
		w.Log(store.LogInfo, store.LogStdout, fmt.Sprint(i), nil)
	}
	must(t, w.Close())
	got := messages(t, s, tr.ID)
	equal(t, "stored", len(got), 500)
	for i, m := range got {
		equal(t, "message", m, fmt.Sprint(i))
	}
}

// TestSync: Sync returns once every line logged before it is stored, long
// before the flusher's own timer would write them.
func TestSync(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	tr := newTask(t, s, true)
	w := tasklog.NewWriter(s, nil, tr.ID, 1, tasklog.Options{FlushLines: 1 << 20, FlushEvery: time.Hour})
	defer w.Close()
	for round := 1; round <= 3; round++ {
		for i := range 10 {
			w.Log(store.LogInfo, store.LogStdout, fmt.Sprintf("round %d line %d", round, i), nil)
		}
		w.Sync()
		if got := len(stored(t, s, tr.ID)); got != round*10 {
			t.Fatalf("after Sync in round %d: %d lines stored, want %d", round, got, round*10)
		}
	}
	w.Sync() // nothing new: returns at once
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w.Sync() // after Close: returns
}
