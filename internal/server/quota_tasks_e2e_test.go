package server_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"connectrpc.com/connect/v2"

	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
)

// TestRunningPerUser: while one member holds their cap of hung tasks,
// their next task waits, even with higher priority, and another user's
// task starts in the free slot.
func TestRunningPerUser(t *testing.T) {
	t.Parallel()
	e := newQuotaEnv(t, "--max-running-tasks", "3", "--max-running-per-workspace", "1", "--max-running-per-user", "2")
	ws := []string{e.ws, e.workspace(t, "two"), e.workspace(t, "three"), e.workspace(t, "four")}
	_, busy := e.member(t, "busy@example.com", ws[0], ws[1], ws[2])
	_, patient := e.member(t, "patient@example.com", ws[3])

	var hung []string
	for i := range 2 {
		task, err := e.task(t, busy, ws[i], "wait [hang]", berthv1.TaskPriority_TASK_PRIORITY_HIGH)
		if err != nil {
			t.Fatal(err)
		}
		hung = append(hung, task.GetId())
	}
	for _, id := range hung {
		eventually(t, "the hung tasks to run", func() bool {
			return e.status(t, id) == berthv1.TaskStatus_TASK_STATUS_RUNNING
		})
	}
	third, err := e.task(t, busy, ws[2], "wait [hang]", berthv1.TaskPriority_TASK_PRIORITY_HIGH)
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := e.task(t, patient, ws[3], "hello", berthv1.TaskPriority_TASK_PRIORITY_LOW)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the other user's task to run and end", func() bool {
		return e.status(t, theirs.GetId()) == berthv1.TaskStatus_TASK_STATUS_SUCCEEDED
	})
	if s := e.status(t, third.GetId()); s != berthv1.TaskStatus_TASK_STATUS_QUEUED {
		t.Fatalf("the busy member's third task is %v while two of theirs run, want QUEUED", s)
	}
	// One of the hung tasks is cancelled: the third one starts.
	if _, err := e.c.Task.CancelTask(as(t.Context(), busy), &berthv1.CancelTaskRequest{Id: hung[0]}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the third task to start once a slot of its user is free", func() bool {
		return e.status(t, third.GetId()) == berthv1.TaskStatus_TASK_STATUS_RUNNING
	})
	for _, id := range []string{hung[1], third.GetId()} {
		if _, err := e.c.Task.CancelTask(as(t.Context(), busy), &berthv1.CancelTaskRequest{Id: id}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestQueuedAndWorkspaceQuotas: past the queued-task quota CreateTask is
// ResourceExhausted naming it; 20 creates at once never pass it; the
// workspace quota refuses a member and not an admin.
func TestQueuedAndWorkspaceQuotas(t *testing.T) {
	t.Parallel()
	e := newQuotaEnv(t, "--max-running-tasks", "1", "--max-queued-per-user", "5", "--max-workspaces-per-user", "2")
	_, member := e.member(t, "queue@example.com", e.ws)
	// The one slot is taken by a hung task of the admin's.
	hang, err := e.task(t, e.admin, e.ws, "wait [hang]", berthv1.TaskPriority_TASK_PRIORITY_HIGH)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = e.c.Task.CancelTask(as(context.WithoutCancel(t.Context()), e.admin), &berthv1.CancelTaskRequest{Id: hang.GetId()})
	})
	eventually(t, "the hung task to run", func() bool {
		return e.status(t, hang.GetId()) == berthv1.TaskStatus_TASK_STATUS_RUNNING
	})
	var wg sync.WaitGroup
	errs := make([]error, 20)
	for i := range errs {
		wg.Go(func() { _, errs[i] = e.task(t, member, e.ws, "queued", berthv1.TaskPriority_TASK_PRIORITY_LOW) })
	}
	wg.Wait()
	created := 0
	for _, err := range errs {
		if err == nil {
			created++
			continue
		}
		wantCode(t, err, connect.CodeResourceExhausted, "RATE_LIMIT_EXCEEDED")
		if !strings.Contains(err.Error(), "max-queued-per-user (5)") {
			t.Errorf("refusal %q does not name the quota", err)
		}
	}
	if created != 5 {
		t.Fatalf("%d of 20 tasks queued at once, want the quota, 5", created)
	}

	// Workspaces: a member is held to the quota, the admin is not.
	for i := range 3 {
		if _, err := e.c.Workspace.CreateWorkspace(as(t.Context(), e.admin), &berthv1.CreateWorkspaceRequest{Name: fmt.Sprint("admin-", i), Path: e.srv.mkdir(t, fmt.Sprint("admin-", i))}); err != nil {
			t.Fatalf("admin's workspace %d: %v", i, err)
		}
	}
	for i := range 3 {
		err := e.memberWorkspace(t, member, fmt.Sprint("mine-", i))
		if i < 2 {
			if err != nil {
				t.Fatalf("member's workspace %d: %v", i, err)
			}
			continue
		}
		wantCode(t, err, connect.CodeResourceExhausted, "RATE_LIMIT_EXCEEDED")
		if !strings.Contains(err.Error(), "max-workspaces-per-user (2)") {
			t.Errorf("refusal %q does not name the quota", err)
		}
	}
}

// TestTaskLogCap: a task that prints far more than the cap stores at most
// the cap, then one line saying the log was truncated; the task still
// succeeds and its result notes the truncation.
func TestTaskLogCap(t *testing.T) {
	t.Parallel()
	const limit = 4096
	e := newQuotaEnv(t, "--max-task-log-bytes", fmt.Sprint(limit))
	task, err := e.task(t, e.admin, e.ws, "flood [lines:3000]", berthv1.TaskPriority_TASK_PRIORITY_MEDIUM)
	if err != nil {
		t.Fatal(err)
	}
	ctx := as(t.Context(), e.admin)
	var got *berthv1.Task
	eventually(t, "the task to end", func() bool {
		res, err := e.c.Task.GetTask(ctx, &berthv1.GetTaskRequest{Id: task.GetId()})
		if err != nil {
			t.Fatal(err)
		}
		got = res.GetTask()
		return got.GetCompletedAt() != nil
	})
	if got.GetStatus() != berthv1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("task %v (%v), want it to go on and succeed", got.GetStatus(), got.GetError())
	}
	if v, ok := got.GetResult().GetDetails().GetFields()["log_truncated_at_bytes"]; !ok || v.GetNumberValue() != limit {
		t.Errorf("result details %v do not note the truncation at %d bytes", got.GetResult().GetDetails(), limit)
	}
	logs, err := e.c.Task.GetTaskLogs(ctx, &berthv1.GetTaskLogsRequest{TaskId: task.GetId(), Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	lines := logs.GetEntries()
	if len(lines) == 0 || len(lines) > 900 {
		t.Fatalf("%d lines stored", len(lines))
	}
	total := 0
	for _, l := range lines[:len(lines)-1] {
		total += len(l.GetMessage())
	}
	last := lines[len(lines)-1]
	t.Logf("%d lines, %d message bytes before the truncation line: %q", len(lines), total, last.GetMessage())
	if total > limit {
		t.Errorf("%d message bytes stored before the truncation line, over the cap of %d", total, limit)
	}
	if !strings.Contains(last.GetMessage(), "log truncated") || !strings.Contains(last.GetMessage(), fmt.Sprint(limit)) {
		t.Errorf("last line %q is not the truncation line", last.GetMessage())
	}
	if logs.GetHasMore() {
		t.Error("more lines after the truncation line")
	}
}
