package server_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect/v2"

	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
	"github.com/berthhq/berth/internal/sandbox/sandboxtest"
	"github.com/berthhq/berth/internal/testsvc"
)

// git runs git on the host in dir (test set-up only).
func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com", "HOME="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestGitTasks runs whitelisted git operations against a real repository
// (on the process runtime, where the host's git runs them; the busybox test
// image has no git) and refuses option injection before anything runs.
func TestGitTasks(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	c := srv.clients(protocols[0])
	ctx := as(t.Context(), register(t, c, "git@example.com").GetTokens().GetAccessToken())
	dir := srv.mkdir(t, "repo")
	git(t, dir, "init", "-q", "-b", "main")
	if err := os.WriteFile(filepath.Join(dir, "README"), []byte("one\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	git(t, dir, "add", "README")
	git(t, dir, "commit", "-q", "-m", "first")
	ws, err := c.Workspace.CreateWorkspace(ctx, &berthv1.CreateWorkspaceRequest{Name: "repo", Path: dir})
	if err != nil {
		t.Fatal(err)
	}
	run := func(op *berthv1.GitOperation, env map[string]string) *berthv1.Task {
		t.Helper()
		res, err := c.Task.CreateTask(ctx, &berthv1.CreateTaskRequest{
			WorkspaceId: ws.GetWorkspace().GetId(), Type: berthv1.TaskType_TASK_TYPE_GIT_OPERATION, Git: op,
			Config: &berthv1.TaskConfig{Environment: env},
		})
		if err != nil {
			t.Fatalf("CreateTask %v: %v", op, err)
		}
		return waitTask(t, c, ctx, res.GetTask().GetId(), nil)
	}

	status := run(&berthv1.GitOperation{Operation: berthv1.GitOperationType_GIT_OPERATION_TYPE_STATUS}, nil)
	if status.GetStatus() != berthv1.TaskStatus_TASK_STATUS_SUCCEEDED ||
		status.GetResult().GetDetails().GetFields()["head"].GetStringValue() != git(t, dir, "rev-parse", "HEAD") {
		t.Fatalf("status = %v", status)
	}
	if err := os.WriteFile(filepath.Join(dir, "README"), []byte("two\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	diff := run(&berthv1.GitOperation{Operation: berthv1.GitOperationType_GIT_OPERATION_TYPE_DIFF, Paths: []string{"README"}}, nil)
	found := false
	for _, e := range allLogs(t, c, ctx, diff.GetId()) {
		found = found || e.GetMessage() == "+two"
	}
	if diff.GetStatus() != berthv1.TaskStatus_TASK_STATUS_SUCCEEDED || !found {
		t.Errorf("diff = %v (line +two logged: %v)", diff, found)
	}
	before := git(t, dir, "rev-parse", "HEAD")
	// The commit's identity is the account's (its name defaults to the
	// email's local part), never one from the environment.
	commit := run(&berthv1.GitOperation{Operation: berthv1.GitOperationType_GIT_OPERATION_TYPE_COMMIT, Message: "second", Paths: []string{"README"}}, nil)
	after := git(t, dir, "rev-parse", "HEAD")
	if commit.GetStatus() != berthv1.TaskStatus_TASK_STATUS_SUCCEEDED || after == before ||
		commit.GetResult().GetDetails().GetFields()["head"].GetStringValue() != after {
		t.Errorf("commit = %v (HEAD %s → %s)", commit, before, after)
	}
	if who := git(t, dir, "log", "-1", "--format=%an <%ae> %cn <%ce>"); who != "git <git@example.com> git <git@example.com>" {
		t.Errorf("commit identity %q", who)
	}

	// Option injection is refused at creation: nothing is queued or run.
	marker := filepath.Join(t.TempDir(), "pwned")
	for _, op := range []*berthv1.GitOperation{
		{Operation: berthv1.GitOperationType_GIT_OPERATION_TYPE_CHECKOUT, Ref: "--upload-pack=touch " + marker},
		{Operation: berthv1.GitOperationType_GIT_OPERATION_TYPE_CLONE, Url: "--upload-pack=touch " + marker},
		{Operation: berthv1.GitOperationType_GIT_OPERATION_TYPE_CLONE, Url: "ext::sh -c touch% " + marker},
		{Operation: berthv1.GitOperationType_GIT_OPERATION_TYPE_DIFF, Paths: []string{"../../etc/passwd"}},
	} {
		_, err := c.Task.CreateTask(ctx, &berthv1.CreateTaskRequest{WorkspaceId: ws.GetWorkspace().GetId(), Type: berthv1.TaskType_TASK_TYPE_GIT_OPERATION, Git: op})
		details := wantCode(t, err, connect.CodeInvalidArgument, "VALIDATION_ERROR")
		if fields := fieldViolations(details); len(fields) != 1 || !strings.HasPrefix(fields[0], "git.") {
			t.Errorf("%v: violations %v", op, fields)
		}
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("an injected command ran")
	}
	failed := run(&berthv1.GitOperation{Operation: berthv1.GitOperationType_GIT_OPERATION_TYPE_CHECKOUT, Ref: "no-such-branch"}, nil)
	if failed.GetStatus() != berthv1.TaskStatus_TASK_STATUS_FAILED || failed.GetError().GetCode() != "EXIT_CODE" {
		t.Errorf("checkout of a missing ref = %v", failed)
	}
}

// TestTaskPriorityOrder: with one slot, queued tasks run by priority, then
// age.
func TestTaskPriorityOrder(t *testing.T) {
	t.Parallel()
	claude := testsvc.FakeClaude(t)
	srv := startServer(t, "--claude-path", claude, "--anthropic-api-key", testAPIKey, "--max-running-tasks", "1", "--max-running-per-workspace", "1")
	c := srv.clients(protocols[0])
	ctx := as(t.Context(), register(t, c, "order@example.com").GetTokens().GetAccessToken())
	ws, err := c.Workspace.CreateWorkspace(ctx, &berthv1.CreateWorkspaceRequest{Name: "order", Path: srv.mkdir(t, "order")})
	if err != nil {
		t.Fatal(err)
	}
	create := func(prompt string, prio berthv1.TaskPriority) string {
		res, err := c.Task.CreateTask(ctx, &berthv1.CreateTaskRequest{WorkspaceId: ws.GetWorkspace().GetId(), Type: berthv1.TaskType_TASK_TYPE_CLAUDE_CHAT, Prompt: prompt, Priority: prio})
		if err != nil {
			t.Fatal(err)
		}
		return res.GetTask().GetId()
	}
	blocker := create("please [slow]", berthv1.TaskPriority_TASK_PRIORITY_HIGH)
	waitTask(t, c, ctx, blocker, func(task *berthv1.Task) bool { return task.GetStatus() == berthv1.TaskStatus_TASK_STATUS_RUNNING })
	ids := map[string]string{
		"low-1":    create("a", berthv1.TaskPriority_TASK_PRIORITY_LOW),
		"medium-1": create("b", berthv1.TaskPriority_TASK_PRIORITY_UNSPECIFIED), // medium by default
		"high-1":   create("c", berthv1.TaskPriority_TASK_PRIORITY_HIGH),
		"low-2":    create("d", berthv1.TaskPriority_TASK_PRIORITY_LOW),
		"high-2":   create("e", berthv1.TaskPriority_TASK_PRIORITY_HIGH),
	}
	started := map[string]time.Time{}
	for name, id := range ids {
		task := waitTask(t, c, ctx, id, nil)
		if task.GetStatus() != berthv1.TaskStatus_TASK_STATUS_SUCCEEDED {
			t.Fatalf("%s = %v", name, task)
		}
		started[name] = task.GetStartedAt().AsTime()
	}
	order := []string{"high-1", "high-2", "medium-1", "low-1", "low-2"}
	got := slices.Clone(order)
	slices.SortFunc(got, func(a, b string) int { return started[a].Compare(started[b]) })
	if !slices.Equal(got, order) {
		t.Errorf("run order %v, want %v", got, order)
	}
}

// TestBudgetRefusesClaudeTasks: once a user's agent spend reaches the
// budget, new claude_chat tasks are refused; other task types are not.
func TestBudgetRefusesClaudeTasks(t *testing.T) {
	t.Parallel()
	claude := testsvc.FakeClaude(t)
	srv := startServer(t, "--claude-path", claude, "--anthropic-api-key", testAPIKey, "--budget-usd", "0.0001")
	c := srv.clients(protocols[0])
	ctx := as(t.Context(), register(t, c, "budget@example.com").GetTokens().GetAccessToken())
	ws, err := c.Workspace.CreateWorkspace(ctx, &berthv1.CreateWorkspaceRequest{Name: "b", Path: srv.mkdir(t, "b")})
	if err != nil {
		t.Fatal(err)
	}
	req := &berthv1.CreateTaskRequest{WorkspaceId: ws.GetWorkspace().GetId(), Type: berthv1.TaskType_TASK_TYPE_CLAUDE_CHAT, Prompt: "spend"}
	first, err := c.Task.CreateTask(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if done := waitTask(t, c, ctx, first.GetTask().GetId(), nil); done.GetStatus() != berthv1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("first task = %v", done)
	}
	_, err = c.Task.CreateTask(ctx, req)
	wantCode(t, err, connect.CodeResourceExhausted, "RATE_LIMIT_EXCEEDED")
	if !strings.Contains(errMessage(err), "budget") {
		t.Errorf("budget refusal: %v", err)
	}
	stats, err := c.Stats.GetStats(ctx, &berthv1.GetStatsRequest{})
	if err != nil || stats.GetTotalCostUsd() <= 0 || stats.GetTasksByStatus()["succeeded"] != 1 {
		t.Errorf("stats after a paid task = %v, %v", stats, err)
	}
	res, err := http.Get(srv.AdminURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(res.Body)
	res.Body.Close()
	for _, want := range []string{`berth_tasks_finished_total{status="succeeded",type="claude_chat"} 1`, "berth_agent_cost_usd_total", "berth_tasks_queued", "berth_task_log_lines_total"} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestDockerBuildTask builds a FROM scratch context from the workspace.
func TestDockerBuildTask(t *testing.T) {
	t.Parallel()
	cli := sandboxtest.Engine(t)
	srv := startServer(t, dockerFlags(t, cli)...)
	c := srv.clients(protocols[0])
	ctx := as(t.Context(), register(t, c, "build@example.com").GetTokens().GetAccessToken())
	dir := srv.mkdir(t, "build")
	if err := os.MkdirAll(filepath.Join(dir, "img"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{"img/Dockerfile": "FROM scratch\nCOPY hello.txt /\n", "img/hello.txt": "hello\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ws, err := c.Workspace.CreateWorkspace(ctx, &berthv1.CreateWorkspaceRequest{Name: "build", Path: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeContainer(cli, ws.GetWorkspace().GetContainerId()) })
	// A bare tag lands in the workspace's own build repository.
	tag := "berth-build/" + ws.GetWorkspace().GetId() + ":v1"
	res, err := c.Task.CreateTask(ctx, &berthv1.CreateTaskRequest{
		WorkspaceId: ws.GetWorkspace().GetId(), Type: berthv1.TaskType_TASK_TYPE_DOCKER_BUILD,
		DockerBuild: &berthv1.DockerBuild{ContextDir: "img", Tag: "v1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	done := waitTask(t, c, ctx, res.GetTask().GetId(), nil)
	if done.GetStatus() != berthv1.TaskStatus_TASK_STATUS_SUCCEEDED || done.GetResult().GetDetails().GetFields()["tag"].GetStringValue() != tag {
		t.Fatalf("build = %v", done)
	}
	t.Cleanup(func() { _, _ = cli.ImageRemove(context.Background(), tag, imageRemoveOptions()) })
	if _, err := cli.ImageInspect(t.Context(), tag); err != nil {
		t.Errorf("the built image is not there: %v", err)
	}
	if len(allLogs(t, c, ctx, done.GetId())) < 3 {
		t.Error("the build output was not logged")
	}
	_, err = c.Task.CreateTask(ctx, &berthv1.CreateTaskRequest{
		WorkspaceId: ws.GetWorkspace().GetId(), Type: berthv1.TaskType_TASK_TYPE_DOCKER_BUILD,
		DockerBuild: &berthv1.DockerBuild{ContextDir: "../outside"},
	})
	wantCode(t, err, connect.CodeInvalidArgument, "VALIDATION_ERROR")
}

// TestConcurrencyLimits: with 2 global slots and 1 per workspace, no two
// tasks of one workspace ever overlap, and never more than 2 run at once —
// checked from the recorded start and end times of every task.
func TestConcurrencyLimits(t *testing.T) {
	t.Parallel()
	claude := testsvc.FakeClaude(t)
	srv := startServer(t, "--claude-path", claude, "--anthropic-api-key", testAPIKey, "--max-running-tasks", "2", "--max-running-per-workspace", "1")
	c := srv.clients(protocols[0])
	ctx := as(t.Context(), register(t, c, "limits@example.com").GetTokens().GetAccessToken())
	type span struct {
		ws         string
		start, end time.Time
	}
	var ids []string
	for w := range 3 {
		res, err := c.Workspace.CreateWorkspace(ctx, &berthv1.CreateWorkspaceRequest{Name: "w" + string(rune('a'+w)), Path: srv.mkdir(t, "w"+string(rune('a'+w)))})
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			task, err := c.Task.CreateTask(ctx, &berthv1.CreateTaskRequest{WorkspaceId: res.GetWorkspace().GetId(), Type: berthv1.TaskType_TASK_TYPE_CLAUDE_CHAT, Prompt: "[slow]"})
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, task.GetTask().GetId())
		}
	}
	var spans []span
	for _, id := range ids {
		task := waitTask(t, c, ctx, id, nil)
		if task.GetStatus() != berthv1.TaskStatus_TASK_STATUS_SUCCEEDED {
			t.Fatalf("task = %v", task)
		}
		spans = append(spans, span{task.GetWorkspaceId(), task.GetStartedAt().AsTime(), task.GetCompletedAt().AsTime()})
	}
	for _, s := range spans {
		overlapping, sameWorkspace := 0, 0
		for _, o := range spans {
			if o.start.Before(s.end) && s.start.Before(o.end) { // includes s itself
				overlapping++
				if o.ws == s.ws {
					sameWorkspace++
				}
			}
		}
		// Overlap with s counts tasks running at some moment of s; the
		// global limit bounds those at s's start.
		atStart := 0
		for _, o := range spans {
			if !o.start.After(s.start) && o.end.After(s.start) {
				atStart++
			}
		}
		if sameWorkspace > 1 || atStart > 2 {
			t.Errorf("limits broken around %v: %d of its workspace overlap, %d running at its start", s, sameWorkspace, atStart)
		}
		_ = overlapping
	}
}
