package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/berthhq/berth/internal/fault"
	"github.com/berthhq/berth/internal/store"
)

var taskLogTests = []test{
	{"AppendAndList", testTaskLogs},
	{"AppendRefused", testTaskLogsRefused},
	{"AppendLargeBatch", testTaskLogsLargeBatch},
	{"Retention", testTaskLogRetention},
	{"GoWithTheirTask", testTaskLogsGoWithTheirTask},
	{"AppendRacesDelete", testTaskLogsAppendRacesDelete},
}

// logs returns n entries of task tr numbered from first.
func logs(tr *store.TaskRecord, first int64, n int) []store.LogEntry {
	out := make([]store.LogEntry, n)
	for i := range out {
		seq := first + int64(i)
		out[i] = store.LogEntry{
			TaskID:  tr.ID,
			Seq:     seq,
			Time:    micro(epoch.Add(time.Duration(seq) * time.Millisecond)),
			Level:   store.LogInfo,
			Source:  store.LogStdout,
			Message: fmt.Sprintf("line %d", seq),
		}
	}
	return out
}

func testTaskLogs(t *testing.T, e *env) {
	owner := e.user()
	w := e.workspace(owner)
	tr := e.task(w, store.TaskRunning)
	other := e.task(w, store.TaskRunning)

	seq, err := e.s.LastLogSeq(e.ctx, tr.ID)
	must(t, err)
	equal(t, "last seq of an empty log", seq, int64(0))

	entries := logs(tr, 1, 450) // several INSERTs in one call
	entries[7].Level, entries[7].Source = store.LogError, store.LogTool
	entries[7].Fields = json.RawMessage(`{"tool":"Bash","input":{"command":"ls"}}`)
	entries[8].Message = "ünïcödé \x00 and a\nnewline"
	must(t, e.s.AppendTaskLogs(e.ctx, entries))
	must(t, e.s.AppendTaskLogs(e.ctx, logs(other, 1, 3)))
	must(t, e.s.AppendTaskLogs(e.ctx, nil))

	seq, err = e.s.LastLogSeq(e.ctx, tr.ID)
	must(t, err)
	equal(t, "last seq", seq, int64(450))
	all, err := e.s.ListTaskLogs(e.ctx, tr.ID, 0, 0)
	must(t, err)
	equal(t, "all", all, entries)
	page, err := e.s.ListTaskLogs(e.ctx, tr.ID, 100, 50)
	must(t, err)
	equal(t, "page", page, entries[100:150])
	page, err = e.s.ListTaskLogs(e.ctx, tr.ID, 450, 10)
	must(t, err)
	equal(t, "after the end", page, []store.LogEntry{})
	page, err = e.s.ListTaskLogs(e.ctx, other.ID, 0, 10)
	must(t, err)
	equal(t, "other task", len(page), 3)
}

// testTaskLogsLargeBatch appends, in one call, more lines than one
// statement of seven parameters a row could carry on any engine (SQLite
// binds at most 32766 parameters, Postgres 65535).
func testTaskLogsLargeBatch(t *testing.T, e *env) {
	owner := e.user()
	w := e.workspace(owner)
	tr := e.task(w, store.TaskRunning)
	entries := logs(tr, 1, 10000)
	entries[9999].Fields = json.RawMessage(`{"last":true}`)
	must(t, e.s.AppendTaskLogs(e.ctx, entries))
	all, err := e.s.ListTaskLogs(e.ctx, tr.ID, 0, 0)
	must(t, err)
	equal(t, "stored", len(all), len(entries))
	equal(t, "first", all[0], entries[0])
	equal(t, "last", all[9999], entries[9999])

	// A duplicate at the very end refuses the whole batch.
	batch := logs(tr, 10001, 9999)
	batch = append(batch, logs(tr, 1, 1)...)
	wantFault(t, e.s.AppendTaskLogs(e.ctx, batch), fault.ErrConflict)
	seq, err := e.s.LastLogSeq(e.ctx, tr.ID)
	must(t, err)
	equal(t, "last seq after a refused batch", seq, int64(10000))
}

func testTaskLogsRefused(t *testing.T, e *env) {
	owner := e.user()
	w := e.workspace(owner)
	tr := e.task(w, store.TaskRunning)
	must(t, e.s.AppendTaskLogs(e.ctx, logs(tr, 1, 10)))

	// A batch with one duplicate is refused whole.
	batch := logs(tr, 11, 300)
	batch = append(batch, logs(tr, 5, 1)...)
	wantFault(t, e.s.AppendTaskLogs(e.ctx, batch), fault.ErrConflict)
	seq, err := e.s.LastLogSeq(e.ctx, tr.ID)
	must(t, err)
	equal(t, "last seq after a refused batch", seq, int64(10))
	// A small batch too (Postgres writes it with one INSERT, not COPY).
	wantFault(t, e.s.AppendTaskLogs(e.ctx, append(logs(tr, 11, 2), logs(tr, 10, 1)...)), fault.ErrConflict)
	seq, err = e.s.LastLogSeq(e.ctx, tr.ID)
	must(t, err)
	equal(t, "last seq after a refused small batch", seq, int64(10))

	missing := &store.TaskRecord{ID: uuid.NewString()}
	wantMessage(t, e.s.AppendTaskLogs(e.ctx, logs(missing, 1, 2)), fault.ErrNotFound, "task not found")
	bad := logs(tr, 11, 1)
	bad[0].Level = "fatal"
	wantFault(t, e.s.AppendTaskLogs(e.ctx, bad), fault.ErrInvalid)
	bad = logs(tr, 11, 1)
	bad[0].Source = "kernel"
	wantFault(t, e.s.AppendTaskLogs(e.ctx, bad), fault.ErrInvalid)
	bad = logs(tr, 11, 1)
	bad[0].Fields = []byte(`{nope`)
	wantFault(t, e.s.AppendTaskLogs(e.ctx, bad), fault.ErrInvalid)
}

func testTaskLogRetention(t *testing.T, e *env) {
	owner := e.user()
	w := e.workspace(owner)
	completed := func(at time.Time) func(*store.TaskRecord) {
		return func(tr *store.TaskRecord) { tr.CompletedAt = &at }
	}
	old := e.task(w, store.TaskSucceeded, completed(epoch.Add(time.Hour)))
	recent := e.task(w, store.TaskFailed, completed(epoch.Add(3*time.Hour)))
	running := e.task(w, store.TaskRunning)
	for _, tr := range []*store.TaskRecord{old, recent, running} {
		must(t, e.s.AppendTaskLogs(e.ctx, logs(tr, 1, 5)))
	}
	n, err := e.s.DeleteTaskLogsBefore(e.ctx, epoch.Add(2*time.Hour))
	must(t, err)
	equal(t, "deleted", n, int64(5))
	for _, c := range []struct {
		tr   *store.TaskRecord
		want int64
	}{{old, 0}, {recent, 5}, {running, 5}} {
		seq, err := e.s.LastLogSeq(e.ctx, c.tr.ID)
		must(t, err)
		equal(t, "last seq of "+c.tr.ID, seq, c.want)
	}
	equal(t, "task kept", e.findTask(old.ID).Status, store.TaskSucceeded)
}

// testTaskLogsGoWithTheirTask: deleting a workspace deletes its tasks'
// logs and no others; a batch naming a missing task stores nothing, not
// even the lines of the task that exists.
func testTaskLogsGoWithTheirTask(t *testing.T, e *env) {
	owner := e.user()
	gone, kept := e.workspace(owner), e.workspace(owner)
	a, b := e.task(gone, store.TaskRunning), e.task(gone, store.TaskSucceeded)
	c := e.task(kept, store.TaskRunning)
	for _, tr := range []*store.TaskRecord{a, b, c} {
		must(t, e.s.AppendTaskLogs(e.ctx, logs(tr, 1, 5)))
	}
	must(t, e.s.DeleteWorkspace(e.ctx, gone.ID))
	for _, want := range []struct {
		tr   *store.TaskRecord
		last int64
	}{{a, 0}, {b, 0}, {c, 5}} {
		seq, err := e.s.LastLogSeq(e.ctx, want.tr.ID)
		must(t, err)
		equal(t, "last seq of "+want.tr.ID, seq, want.last)
	}

	// Small and large batches, which an engine may write in different
	// ways (Postgres: one INSERT, or COPY).
	for _, n := range []int{3, 300} {
		batch := append(logs(c, 6, n), logs(a, 1, 2)...)
		wantMessage(t, e.s.AppendTaskLogs(e.ctx, batch), fault.ErrNotFound, "task not found")
		seq, err := e.s.LastLogSeq(e.ctx, c.ID)
		must(t, err)
		equal(t, fmt.Sprintf("last seq after a batch of %d naming a deleted task", n), seq, int64(5))
	}
}

// testTaskLogsAppendRacesDelete deletes workspaces while their tasks' logs
// are being appended: whichever wins, no line outlives its task (each
// append either lands before the delete and goes with the task, or comes
// after it and is refused as NotFound).
func testTaskLogsAppendRacesDelete(t *testing.T, e *env) {
	owner := e.user()
	for round := range 10 {
		w := e.workspace(owner)
		tr := e.task(w, store.TaskRunning)
		stored := make(chan struct{})
		done := make(chan error, 1)
		go func() { done <- appendUntilRefused(e, tr, stored) }()
		<-stored
		must(t, e.s.DeleteWorkspace(e.ctx, w.ID))
		if err := <-done; err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		seq, err := e.s.LastLogSeq(e.ctx, tr.ID)
		must(t, err)
		equal(t, fmt.Sprintf("round %d: last seq of a deleted task", round), seq, int64(0))
	}
}

// appendUntilRefused appends batches of tr's log until the store refuses
// one as NotFound, closing stored after the first batch is in; any other
// error is returned.
func appendUntilRefused(e *env, tr *store.TaskRecord, stored chan<- struct{}) error {
	signal := sync.OnceFunc(func() { close(stored) })
	defer signal()
	for seq := int64(1); ; seq += 50 {
		err := e.s.AppendTaskLogs(e.ctx, logs(tr, seq, 50))
		if errors.Is(err, fault.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		signal()
		// A breath between batches: SQLite's write lock is not handed
		// over fairly (a waiting writer polls from its busy handler), so a
		// loop that never pauses can hold off the delete past its busy
		// timeout on a loaded machine; the race under test is whether a
		// line outlives its task, not SQLite's fairness.
		time.Sleep(time.Millisecond)
	}
}
