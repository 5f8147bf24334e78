package server_test

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"connectrpc.com/connect/v2"

	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
	"github.com/berthhq/berth/internal/sandbox"
	"github.com/berthhq/berth/internal/sandbox/docker"
	"github.com/berthhq/berth/internal/sandbox/sandboxtest"
	"github.com/berthhq/berth/internal/testsvc"
)

// testAPIKey is the Anthropic key given to test servers; it must never show
// in a log line, a task record or an error.
const testAPIKey = "sk-ant-test-0123456789-never-print-me"

// installClaude copies the stand-in into the project directory, where the
// container sees it at /workspace/.bin/claude.
func installClaude(t *testing.T, projectDir string) { installClaudeTB(t, projectDir) }

func installClaudeTB(t testing.TB, projectDir string) {
	t.Helper()
	testsvc.CopyFakeClaude(t, filepath.Join(projectDir, ".bin", "claude"))
}

// waitTask polls a task until it leaves QUEUED/RUNNING (or until stop
// returns true) and returns it.
func waitTask(t testing.TB, c clients, ctx context.Context, id string, stop func(*berthv1.Task) bool) *berthv1.Task {
	t.Helper()
	var last *berthv1.Task
	eventually(t, "task "+id, func() bool {
		res, err := c.Task.GetTask(ctx, &berthv1.GetTaskRequest{Id: id})
		if err != nil {
			t.Fatalf("GetTask: %v", err)
		}
		last = res.GetTask()
		if stop != nil {
			return stop(last)
		}
		s := last.GetStatus()
		return s != berthv1.TaskStatus_TASK_STATUS_QUEUED && s != berthv1.TaskStatus_TASK_STATUS_RUNNING
	})
	return last
}

// allLogs pages through a task's stored log.
func allLogs(t testing.TB, c clients, ctx context.Context, id string) []*berthv1.LogEntry {
	t.Helper()
	var out []*berthv1.LogEntry
	after := int64(0)
	for {
		res, err := c.Task.GetTaskLogs(ctx, &berthv1.GetTaskLogsRequest{TaskId: id, AfterSeq: after, Limit: 1000})
		if err != nil {
			t.Fatalf("GetTaskLogs: %v", err)
		}
		out = append(out, res.GetEntries()...)
		after = res.GetNextAfterSeq()
		if !res.GetHasMore() {
			return out
		}
	}
}

// TestClaudeTasksOnDocker runs the stand-in claude inside a real container:
// the result and its logs are stored, the workspace starts on demand, and
// every failure mode ends in the right state with a clear error.
func TestClaudeTasksOnDocker(t *testing.T) {
	t.Parallel()
	cli := sandboxtest.Engine(t)
	srv := startServer(t, dockerFlags(t, cli,
		"--claude-path", "/workspace/.bin/claude", "--anthropic-api-key", testAPIKey,
		"--claude-idle-timeout", "2s", "--max-running-per-workspace", "1")...)
	c := srv.clients(protocols[0])
	ctx := as(t.Context(), register(t, c, "agent@example.com").GetTokens().GetAccessToken())
	dir := srv.mkdir(t, "agent")
	installClaude(t, dir)
	ws, err := c.Workspace.CreateWorkspace(ctx, &berthv1.CreateWorkspaceRequest{Name: "agent", Path: dir})
	if err != nil {
		t.Fatal(err)
	}
	wsID := ws.GetWorkspace().GetId()
	t.Cleanup(func() { removeContainer(cli, ws.GetWorkspace().GetContainerId()) })

	create := func(prompt string, cfg *berthv1.TaskConfig, cont string) *berthv1.Task {
		t.Helper()
		res, err := c.Task.CreateTask(ctx, &berthv1.CreateTaskRequest{
			WorkspaceId: wsID, Type: berthv1.TaskType_TASK_TYPE_CLAUDE_CHAT, Prompt: prompt, Config: cfg, ContinueTaskId: cont,
		})
		if err != nil {
			t.Fatalf("CreateTask %q: %v", prompt, err)
		}
		if res.GetTask().GetStatus() != berthv1.TaskStatus_TASK_STATUS_QUEUED {
			t.Fatalf("new task status %v", res.GetTask().GetStatus())
		}
		return res.GetTask()
	}

	// A normal run, on a stopped workspace that starts on demand.
	ok := waitTask(t, c, ctx, create("explain the project", &berthv1.TaskConfig{MaxTurns: 5}, "").GetId(), nil)
	if ok.GetStatus() != berthv1.TaskStatus_TASK_STATUS_SUCCEEDED || ok.GetResult().GetSummary() == "" || ok.GetSessionId() == "" ||
		ok.GetResult().GetDetails().GetFields()["num_turns"].GetNumberValue() < 1 || ok.GetProgress().GetTotal() != 5 {
		t.Fatalf("normal run = %v", ok)
	}
	logs := allLogs(t, c, ctx, ok.GetId())
	sources := map[berthv1.LogSource]int{}
	for i, e := range logs {
		if e.GetSeq() != int64(i+1) {
			t.Fatalf("log seq %d at %d", e.GetSeq(), i)
		}
		sources[e.GetSource()]++
	}
	if sources[berthv1.LogSource_LOG_SOURCE_ASSISTANT] == 0 || sources[berthv1.LogSource_LOG_SOURCE_TOOL] == 0 || sources[berthv1.LogSource_LOG_SOURCE_SYSTEM] == 0 {
		t.Errorf("log sources = %v", sources)
	}
	if w, _ := c.Workspace.GetWorkspace(ctx, &berthv1.GetWorkspaceRequest{Id: wsID}); w.GetWorkspace().GetStatus() != berthv1.WorkspaceStatus_WORKSPACE_STATUS_RUNNING {
		t.Errorf("the workspace was not started on demand: %v", w.GetWorkspace().GetStatus())
	}

	// Continuing the session resumes it.
	cont := waitTask(t, c, ctx, create("and now the tests", nil, ok.GetId()).GetId(), nil)
	if cont.GetStatus() != berthv1.TaskStatus_TASK_STATUS_SUCCEEDED || cont.GetSessionId() != ok.GetSessionId() {
		t.Errorf("continued run = %v (want session %s)", cont, ok.GetSessionId())
	}

	for _, tc := range []struct {
		prompt string
		cfg    *berthv1.TaskConfig
		status berthv1.TaskStatus
		code   string
	}{
		{"please [fail]", nil, berthv1.TaskStatus_TASK_STATUS_FAILED, "ERROR_DURING_EXECUTION"},
		{"please [noresult]", nil, berthv1.TaskStatus_TASK_STATUS_FAILED, "NO_RESULT"},
		{"please [hang]", nil, berthv1.TaskStatus_TASK_STATUS_FAILED, "AGENT_IDLE"},
		{"please [slow] [hang]", &berthv1.TaskConfig{Timeout: 1}, berthv1.TaskStatus_TASK_STATUS_TIMED_OUT, "TIMED_OUT"},
	} {
		got := waitTask(t, c, ctx, create(tc.prompt, tc.cfg, "").GetId(), nil)
		if got.GetStatus() != tc.status || got.GetError().GetCode() != tc.code {
			t.Errorf("%q: status %v, error %v", tc.prompt, got.GetStatus(), got.GetError())
		}
	}
	nonJSON := waitTask(t, c, ctx, create("please [nonjson]", nil, "").GetId(), nil)
	if nonJSON.GetStatus() != berthv1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Errorf("[nonjson] = %v", nonJSON)
	}
	stdout := 0
	for _, e := range allLogs(t, c, ctx, nonJSON.GetId()) {
		if e.GetSource() == berthv1.LogSource_LOG_SOURCE_STDOUT {
			stdout++
		}
	}
	if stdout == 0 {
		t.Error("[nonjson]: the non-JSON line was not logged as stdout")
	}

	// Cancel a running task (it hangs) and a queued one behind it (the
	// workspace runs one task at a time).
	hang := create("please [hang]", &berthv1.TaskConfig{Timeout: 600}, "")
	queued := create("never runs", nil, "")
	waitTask(t, c, ctx, hang.GetId(), func(task *berthv1.Task) bool {
		return task.GetStatus() == berthv1.TaskStatus_TASK_STATUS_RUNNING
	})
	q, err := c.Task.CancelTask(ctx, &berthv1.CancelTaskRequest{Id: queued.GetId()})
	if err != nil || q.GetTask().GetStatus() != berthv1.TaskStatus_TASK_STATUS_CANCELLED || q.GetTask().GetStartedAt() != nil {
		t.Errorf("cancel queued = %v, %v", q, err)
	}
	r, err := c.Task.CancelTask(ctx, &berthv1.CancelTaskRequest{Id: hang.GetId()})
	if err != nil || r.GetTask().GetStatus() != berthv1.TaskStatus_TASK_STATUS_CANCELLED {
		t.Errorf("cancel running = %v, %v", r, err)
	}
	_, err = c.Task.CancelTask(ctx, &berthv1.CancelTaskRequest{Id: hang.GetId()})
	wantCode(t, err, connect.CodeFailedPrecondition, "CONFLICT")
	// The cancelled agent's process is really gone: ask inside the container.
	rt, err := docker.New(t.Context(), docker.WithClient(cli))
	if err != nil {
		t.Fatal(err)
	}
	var ps bytes.Buffer
	if code, err := rt.Exec(t.Context(), ws.GetWorkspace().GetContainerId(), sandbox.ExecSpec{Argv: []string{"ps", "-o", "pid,args"}, Stdout: &ps}); err != nil || code != 0 {
		t.Fatalf("ps in the container: %d %v", code, err)
	}
	if strings.Contains(ps.String(), ".bin/claude") {
		t.Errorf("the cancelled agent still runs in the container:\n%s", ps.String())
	}

	// The key never shows: not in logs, records or errors.
	list, err := c.Task.ListTasks(ctx, &berthv1.ListTasksRequest{WorkspaceId: wsID, PageSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range list.GetTasks() {
		if strings.Contains(task.String(), testAPIKey) {
			t.Errorf("task %s record contains the API key", task.GetId())
		}
		for _, e := range allLogs(t, c, ctx, task.GetId()) {
			if strings.Contains(e.String(), testAPIKey) {
				t.Errorf("task %s log line %d contains the API key", task.GetId(), e.GetSeq())
			}
		}
	}
}
