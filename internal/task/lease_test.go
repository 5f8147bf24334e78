package task_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/berthhq/berth/internal/store"
	"github.com/berthhq/berth/internal/task"
)

// Two instances share one store and its queue: every task runs, on exactly
// one of them, once.
func TestTwoRunnersRunEachTaskOnce(t *testing.T) {
	t.Parallel()
	forEngine(t, func(t *testing.T, open func(t *testing.T) *store.Store) {
		const tasks = 24
		st := open(t)
		f := newFixture(t, st)
		queued := map[string]bool{}
		for i := range tasks {
			queued[f.queue(t, st, fmt.Sprintf("task %d [lines:3]", i)).ID] = true
		}
		cfg := task.RunnerConfig{MaxRunning: 3, Lease: 10 * time.Second}
		// Both start, and recover, before either runs a task: on SQLite
		// each takes itself to be alone (see RunnerConfig.Exclusive).
		a := newInstance(t, open(t), f, cfg, true)
		b := newInstance(t, open(t), f, cfg, true)
		a.start(t)
		b.start(t)

		eventually(t, "every task ended", func() bool {
			_, left, err := st.ListTasks(t.Context(), store.TaskFilter{Viewer: store.Viewer{Admin: true}, Status: store.TaskQueued})
			must(t, err)
			_, running, err := st.ListTasks(t.Context(), store.TaskFilter{Viewer: store.Viewer{Admin: true}, Status: store.TaskRunning})
			must(t, err)
			return left+running == 0
		})
		a.stop()
		b.stop()

		ranOn := map[string][]string{}
		sa, sb := a.statuses(), b.statuses()
		for name, all := range map[string]map[string][]store.TaskStatus{"a": sa, "b": sb} {
			for id, states := range all {
				// A run publishes RUNNING as it starts, then with each
				// change of progress, then its end; a second run of the
				// task here would log a second start, checked below.
				if len(states) > 0 && states[0] == store.TaskRunning {
					ranOn[id] = append(ranOn[id], name)
				}
			}
		}
		perInstance := map[string]int{}
		for id := range queued {
			if len(ranOn[id]) != 1 {
				t.Errorf("task %s started on %v, want exactly one instance; events on a %v, on b %v", id, ranOn[id], sa[id], sb[id])
				continue
			}
			perInstance[ranOn[id][0]]++
			tr := find(t, st, id)
			if tr.Status != store.TaskSucceeded || tr.LeaseOwner != "" {
				t.Errorf("task %s: %s, lease %q; want succeeded with no lease", id, tr.Status, tr.LeaseOwner)
			}
			starts := 0
			for _, e := range logs(t, st, id) {
				if e.Source == store.LogSystem && strings.HasPrefix(e.Message, "task started") {
					starts++
				}
			}
			if starts != 1 {
				t.Errorf("task %s logged %d starts", id, starts)
			}
		}
		if perInstance["a"] == 0 || perInstance["b"] == 0 {
			t.Errorf("tasks per instance %v: one instance ran them all", perInstance)
		}
	})
}

// An instance dies — it stops renewing its leases and never records the
// end of its task — and another one, sweeping, ends that task FAILED with
// code INTERRUPTED once the lease has run out; the lines the dead instance
// stored stay as they were.
func TestDeadRunnersTaskIsInterrupted(t *testing.T) {
	t.Parallel()
	forEngine(t, func(t *testing.T, open func(t *testing.T) *store.Store) {
		st := open(t)
		f := newFixture(t, st)
		tr := f.queue(t, st, "wait for ever [hang]")
		const lease = time.Second
		deadStore := open(t)
		dead := startInstance(t, deadStore, f, task.RunnerConfig{MaxRunning: 1, Lease: lease}, true)
		eventually(t, "the task runs and logs", func() bool {
			return find(t, st, tr.ID).Status == store.TaskRunning && len(logs(t, st, tr.ID)) >= 2
		})
		// Let it renew its lease a few times.
		time.Sleep(2 * lease)
		running := find(t, st, tr.ID)
		if running.LeaseOwner == "" || running.LeaseExpiresAt == nil || !running.LeaseExpiresAt.After(running.StartedAt.Add(lease)) {
			t.Fatalf("lease %q until %v, started %v: never renewed", running.LeaseOwner, running.LeaseExpiresAt, running.StartedAt)
		}

		// The instance dies: its store goes first, so nothing it does from
		// now on reaches the database.
		must(t, deadStore.Close())
		// Its shutdown, left to run out (its log writer retries for a while
		// before it gives up), cannot reach the database either.
		dead.cancel()
		before := logs(t, st, tr.ID)
		if got := find(t, st, tr.ID); got.Status != store.TaskRunning {
			t.Fatalf("the dead instance recorded its task as %s", got.Status)
		}

		// Its MaxRunning of 0 keeps it from running anything: it only sweeps.
		sweeper := startInstance(t, open(t), f, task.RunnerConfig{MaxRunning: 0, Lease: lease}, false)
		var ended *store.TaskRecord
		eventually(t, "the sweep ends the task", func() bool {
			ended = find(t, st, tr.ID)
			return ended.Status != store.TaskRunning
		})
		if ended.Status != store.TaskFailed || errorCode(t, ended) != "INTERRUPTED" {
			t.Fatalf("task ended %s with %s, want failed, INTERRUPTED", ended.Status, ended.Error)
		}
		lastLease := find(t, st, tr.ID).CompletedAt
		if lastLease.Before(*running.LeaseExpiresAt) {
			t.Errorf("ended at %v, before the lease it had ran out at %v", lastLease, running.LeaseExpiresAt)
		}
		if ended.LeaseOwner != "" {
			t.Errorf("lease owner %q after the end", ended.LeaseOwner)
		}
		after := logs(t, st, tr.ID)
		if len(after) != len(before) {
			t.Fatalf("%d log lines before the sweep, %d after", len(before), len(after))
		}
		for i := range before {
			if before[i].Seq != after[i].Seq || before[i].Message != after[i].Message {
				t.Fatalf("line %d changed: %+v → %+v", i, before[i], after[i])
			}
		}
		eventually(t, "the sweeper publishes the end", func() bool {
			states := sweeper.statuses()[tr.ID]
			return len(states) > 0 && states[len(states)-1] == store.TaskFailed
		})
	})
}

// A runner whose lease was taken — another instance's sweep judged it dead
// — stops the run at its next renewal and leaves the record as the sweep
// wrote it.
func TestRunnerStopsARunWhoseLeaseItLost(t *testing.T) {
	t.Parallel()
	forEngine(t, func(t *testing.T, open func(t *testing.T) *store.Store) {
		st := open(t)
		f := newFixture(t, st)
		tr := f.queue(t, st, "wait for ever [hang]")
		in := startInstance(t, open(t), f, task.RunnerConfig{MaxRunning: 1, Lease: time.Second}, true)
		eventually(t, "the task runs", func() bool {
			return find(t, st, tr.ID).Status == store.TaskRunning && in.running(t) == 1
		})

		// Another instance, its clock an hour ahead, sweeps.
		ended, err := st.FailExpiredLeases(t.Context(), time.Now().Add(time.Hour), &task.Failure{Code: "SWEPT"})
		must(t, err)
		if len(ended) != 1 || ended[0].ID != tr.ID {
			t.Fatalf("swept %v", ended)
		}
		eventually(t, "the run stops", func() bool { return in.running(t) == 0 })
		got := find(t, st, tr.ID)
		if got.Status != store.TaskFailed || errorCode(t, got) != "SWEPT" {
			t.Fatalf("task %s with %s, want failed as the sweep left it", got.Status, got.Error)
		}
		entries := logs(t, st, tr.ID)
		if last := entries[len(entries)-1]; !strings.Contains(last.Message, "lost its lease") {
			t.Errorf("last log line %q, want the run's end for a lost lease", last.Message)
		}
	})
}

// Recover on start: a runner alone on its store (SQLite, or Exclusive) ends
// every RUNNING task at once; one that shares a Postgres store ends only
// those whose lease ran out, since the others have a live runner.
func TestRecover(t *testing.T) {
	t.Parallel()
	forEngine(t, func(t *testing.T, open func(t *testing.T) *store.Store) {
		st := open(t)
		f := newFixture(t, st)
		now := time.Now()
		running := func(until time.Time) *store.TaskRecord {
			tr := &store.TaskRecord{ID: uuid.NewString(), WorkspaceID: f.ws.ID, Type: store.TaskClaudeChat,
				Status: store.TaskRunning, Priority: store.TaskPriorityLow, CreatedAt: now, StartedAt: &now,
				LeaseOwner: "another", LeaseExpiresAt: &until}
			must(t, st.CreateTaskRecord(t.Context(), tr))
			return tr
		}
		expired, live := running(now.Add(-time.Second)), running(now.Add(time.Hour))
		in := startInstance(t, open(t), f, task.RunnerConfig{MaxRunning: 0}, true)
		if got := find(t, st, expired.ID); got.Status != store.TaskFailed || errorCode(t, got) != "INTERRUPTED" {
			t.Errorf("expired lease: %s with %s, want failed, INTERRUPTED", got.Status, got.Error)
		}
		wantLive := store.TaskRunning
		if st.Engine() == "sqlite" {
			wantLive = store.TaskFailed
		}
		if got := find(t, st, live.ID); got.Status != wantLive {
			t.Errorf("live lease on %s: %s, want %s", st.Engine(), got.Status, wantLive)
		}
		states := in.statuses()
		if len(states[expired.ID]) != 1 || states[expired.ID][0] != store.TaskFailed {
			t.Errorf("published for the expired lease: %v", states[expired.ID])
		}

		if st.Engine() == "postgres" {
			// An Exclusive runner takes even a live lease to be left over.
			startInstance(t, open(t), f, task.RunnerConfig{MaxRunning: 0, Exclusive: true}, true)
			if got := find(t, st, live.ID); got.Status != store.TaskFailed || errorCode(t, got) != "INTERRUPTED" {
				t.Errorf("live lease, exclusive runner: %s with %s", got.Status, got.Error)
			}
		}
	})
}
