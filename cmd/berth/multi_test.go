package main_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/berthhq/berth/internal/sandbox/sandboxtest"
	"github.com/berthhq/berth/internal/testsvc"
)

// cluster is several berth processes sharing one Postgres database, one
// Valkey, one Docker engine, one JWT key and one workspace root, as
// instances behind a load balancer.
type cluster struct {
	cli        *client.Client
	args       []string
	claude     string
	project    string
	workspaces []string // ids of the workspaces made, whose containers go at the end
}

func newCluster(t *testing.T, extra ...string) *cluster {
	t.Helper()
	cli := sandboxtest.Engine(t)
	shared := t.TempDir()
	project := filepath.Join(shared, "workspaces", "p")
	if err := os.MkdirAll(filepath.Join(project, ".bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	// The stand-in claude runs inside the workspace containers, which see
	// the project at /workspace.
	claude := testsvc.CopyFakeClaude(t, filepath.Join(project, ".bin", "claude"))
	args := append([]string{
		"--runtime", "docker", "--docker-host", cli.DaemonHost(), "--workspace-image", sandboxtest.Image(t),
		"--workspace-network", "none", "--workspace-user", "1000:1000",
		"--workspace-memory", "256", "--workspace-cpus", "0.5", "--workspace-pids", "128",
		"--database-url", testsvc.Postgres(t), "--valkey-url", testsvc.StartRedis(t).URL(),
		"--jwt-key-file", filepath.Join(shared, "jwt.pem"), "--workspace-root", filepath.Join(shared, "workspaces"),
		"--claude-path", "/workspace/.bin/claude", "--anthropic-api-key", "sk-test", "--claude-idle-timeout", "10m",
		"--task-lease", "2s", "--max-running-tasks", "4", "--max-running-per-workspace", "4",
		"--rate-task-create", "0", "--rate-principal", "0",
		// One account runs every task here, the hung one among them: no
		// fair share, so they run as many at once as the instances allow.
		"--max-running-per-user", "0",
	}, extra...)
	c := &cluster{cli: cli, args: args, claude: claude, project: project}
	t.Cleanup(func() {
		// Workspace containers outlive a killed instance: remove them.
		list, err := cli.ContainerList(context.Background(), container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", "berth.workspace"))})
		if err != nil {
			return
		}
		for _, ctr := range list {
			if ctr.Labels["berth.workspace"] != "" && slices.Contains(c.workspaces, ctr.Labels["berth.workspace"]) {
				_ = cli.ContainerRemove(context.Background(), ctr.ID, container.RemoveOptions{Force: true})
			}
		}
	})
	return c
}

// start starts one more instance with its own data directory.
func (c *cluster) start(t *testing.T) *serverProcess {
	t.Helper()
	return startServeWith(t, t.TempDir(), c.args...)
}

// waitStatus polls a task on addr until its status is not QUEUED or
// RUNNING (or is want, when given), and returns it.
func waitStatus(t *testing.T, addr, token, id string, within time.Duration, want ...string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got := postJSON(t, addr, "/berth.v1.TaskService/GetTask", token, map[string]string{"id": id})["task"].(map[string]any)
		st := got["status"]
		done := st != "TASK_STATUS_QUEUED" && st != "TASK_STATUS_RUNNING"
		if len(want) > 0 {
			done = st == want[0]
		}
		if done {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s: %v after %s", id, got, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// logLinesOf returns a task's stored log, checking its seqs are 1..n.
func logLinesOf(t *testing.T, addr, token, id string) []any {
	t.Helper()
	var all []any
	after := 0
	for {
		page := postJSON(t, addr, "/berth.v1.TaskService/GetTaskLogs", token, map[string]any{"task_id": id, "after_seq": after, "limit": 1000})
		entries, _ := page["entries"].([]any)
		all = append(all, entries...)
		after += len(entries)
		if more, _ := page["has_more"].(bool); !more || len(entries) == 0 {
			break
		}
	}
	for i, e := range all {
		if seq := e.(map[string]any)["seq"]; seq != fmt.Sprint(i+1) {
			t.Fatalf("task %s: line %d has seq %v", id, i+1, seq)
		}
	}
	return all
}

// TestInstancesShareTasks: two instances on one Postgres and one Valkey.
// Tasks created
// through both at once each run exactly once; when the instance running a
// task is killed with SIGKILL, the other ends it FAILED/INTERRUPTED once
// its lease expires, with its log intact; a task created while an
// instance is down runs on the other.
func TestInstancesShareTasks(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	a := c.start(t)
	reg := postJSON(t, a.addr, "/berth.v1.AuthService/Register", "", map[string]string{"email": "multi@example.com", "password": "correct horse battery"})
	token := reg["tokens"].(map[string]any)["access_token"].(string)
	ws := postJSON(t, a.addr, "/berth.v1.WorkspaceService/CreateWorkspace", token, map[string]string{"name": "p", "path": c.project})
	wsID := ws["workspace"].(map[string]any)["id"].(string)
	c.workspaces = append(c.workspaces, wsID)
	create := func(addr, prompt string) string {
		task := postJSON(t, addr, "/berth.v1.TaskService/CreateTask", token, map[string]string{
			"workspace_id": wsID, "type": "TASK_TYPE_CLAUDE_CHAT", "prompt": prompt,
		})
		return task["task"].(map[string]any)["id"].(string)
	}

	// A task that hangs, claimed by A while A is the only instance.
	hung := create(a.addr, "hang here [hang]")
	waitStatus(t, a.addr, token, hung, 30*time.Second, "TASK_STATUS_RUNNING")
	var before []any
	for deadline := time.Now().Add(within(t)); len(before) < 2; time.Sleep(50 * time.Millisecond) {
		before = logLinesOf(t, a.addr, token, hung)
		if time.Now().After(deadline) {
			t.Fatalf("the hanging task wrote %d lines", len(before))
		}
	}
	b := c.start(t)

	// One task's line count, as a reference for "ran exactly once".
	ref := create(b.addr, "reference [lines:3]")
	if got := waitStatus(t, b.addr, token, ref, 30*time.Second); got["status"] != "TASK_STATUS_SUCCEEDED" {
		t.Fatalf("reference task: %v", got)
	}
	perRun := len(logLinesOf(t, b.addr, token, ref))

	// Many tasks at once, through both instances.
	const n = 24
	ids := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		addr := a.addr
		if i%2 == 1 {
			addr = b.addr
		}
		wg.Go(func() { ids[i] = create(addr, "many [lines:3]") })
	}
	wg.Wait()
	for i, id := range ids {
		addr := []string{a.addr, b.addr}[i%2]
		if got := waitStatus(t, addr, token, id, 60*time.Second); got["status"] != "TASK_STATUS_SUCCEEDED" {
			t.Fatalf("task %d: %v", i, got)
		}
		if lines := logLinesOf(t, addr, token, id); len(lines) != perRun {
			t.Errorf("task %d has %d log lines, one run writes %d: it ran more than once or not at all", i, len(lines), perRun)
		}
	}

	// Kill A, which runs the hanging task; B interrupts it after the lease.
	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = a.cmd.Wait()
	killed := time.Now()
	// While A is down, a new task through B still runs.
	during := create(b.addr, "while A is down [lines:3]")
	got := waitStatus(t, b.addr, token, hung, 30*time.Second, "TASK_STATUS_FAILED")
	if e, _ := got["error"].(map[string]any); e["code"] != "INTERRUPTED" {
		t.Fatalf("after the kill: %v", got)
	}
	if d := time.Since(killed); d < time.Second {
		t.Errorf("interrupted %s after the kill: before its 2s lease could expire", d)
	}
	after := logLinesOf(t, b.addr, token, hung)
	if len(after) < len(before) {
		t.Fatalf("log lines lost: %d before the kill, %d after", len(before), len(after))
	}
	for i := range before {
		if before[i].(map[string]any)["message"] != after[i].(map[string]any)["message"] {
			t.Errorf("line %d changed across the kill", i+1)
		}
	}
	if got := waitStatus(t, b.addr, token, during, 30*time.Second); got["status"] != "TASK_STATUS_SUCCEEDED" {
		t.Fatalf("task created while A was down: %v", got)
	}
	// The agent A had started in the shared container is stopped by B.
	for deadline := time.Now().Add(within(t)); ; time.Sleep(200 * time.Millisecond) {
		ps := c.ps(t, "berth-"+wsID)
		if !strings.Contains(ps, "hang here") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the interrupted task's agent still runs in the container:\n%s", ps)
		}
	}
}

// ps lists the processes of a container (pid, state, arguments), leaving
// out zombies.
func (c *cluster) ps(t *testing.T, ctr string) string {
	t.Helper()
	ctx := t.Context()
	ex, err := c.cli.ContainerExecCreate(ctx, ctr, container.ExecOptions{Cmd: []string{"ps", "-e", "-o", "pid,stat,args"}, AttachStdout: true, AttachStderr: true})
	if err != nil {
		t.Fatal(err)
	}
	att, err := c.cli.ContainerExecAttach(ctx, ex.ID, container.ExecAttachOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer att.Close()
	var out bytes.Buffer
	if _, err := stdcopy.StdCopy(&out, &out, att.Reader); err != nil {
		t.Fatal(err)
	}
	var live []string
	for _, l := range strings.Split(out.String(), "\n") {
		if f := strings.Fields(l); len(f) >= 3 && !strings.HasPrefix(f[1], "Z") {
			live = append(live, l)
		}
	}
	return strings.Join(live, "\n")
}
