package main_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berthhq/berth/internal/testsvc"
)

// postJSON sends a Connect JSON POST and decodes the answer.
func postJSON(t *testing.T, addr, procedure, token string, body any) map[string]any {
	t.Helper()
	raw, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+procedure, bytes.NewReader(raw))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("%s: %d %v %v", procedure, res.StatusCode, out, err)
	}
	return out
}

// killProcessesOf kills every process running the executable at path (the
// stand-in claude a killed berth could not stop).
func killProcessesOf(path string) {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe")); err == nil && exe == path {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// TestKill9Recovery: berth is killed with SIGKILL while a task runs; on the
// next start the task is FAILED with code INTERRUPTED and the log lines it
// had written are intact.
func TestKill9Recovery(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	claude := testsvc.CopyFakeClaude(t, filepath.Join(t.TempDir(), "claude"))
	t.Cleanup(func() { killProcessesOf(claude) })
	args := []string{"--runtime", "process", "--data-dir", dataDir, "--claude-path", claude,
		"--anthropic-api-key", "sk-test", "--claude-idle-timeout", "10m"}
	first := startServeWith(t, dataDir, args...)

	reg := postJSON(t, first.addr, "/berth.v1.AuthService/Register", "", map[string]string{"email": "k@example.com", "password": "correct horse battery"})
	token := reg["tokens"].(map[string]any)["access_token"].(string)
	project := filepath.Join(dataDir, "workspaces", "p")
	if err := os.MkdirAll(project, 0o755); err != nil {
		t.Fatal(err)
	}
	ws := postJSON(t, first.addr, "/berth.v1.WorkspaceService/CreateWorkspace", token, map[string]string{"name": "p", "path": project})
	wsID := ws["workspace"].(map[string]any)["id"].(string)
	task := postJSON(t, first.addr, "/berth.v1.TaskService/CreateTask", token, map[string]string{
		"workspace_id": wsID, "type": "TASK_TYPE_CLAUDE_CHAT", "prompt": "please [hang]",
	})
	taskID := task["task"].(map[string]any)["id"].(string)

	var before []any
	deadline := time.Now().Add(within(t))
	for {
		logs := postJSON(t, first.addr, "/berth.v1.TaskService/GetTaskLogs", token, map[string]any{"task_id": taskID})
		before, _ = logs["entries"].([]any)
		got := postJSON(t, first.addr, "/berth.v1.TaskService/GetTask", token, map[string]string{"id": taskID})
		if len(before) >= 2 && got["task"].(map[string]any)["status"] == "TASK_STATUS_RUNNING" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the task never ran: %v, %d log lines", got, len(before))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.cmd.Wait()

	second := startServeWith(t, dataDir, args...)
	login := postJSON(t, second.addr, "/berth.v1.AuthService/Login", "", map[string]string{"email": "k@example.com", "password": "correct horse battery"})
	token = login["tokens"].(map[string]any)["access_token"].(string)
	var got map[string]any
	deadline = time.Now().Add(within(t))
	for {
		got = postJSON(t, second.addr, "/berth.v1.TaskService/GetTask", token, map[string]string{"id": taskID})["task"].(map[string]any)
		if got["status"] != "TASK_STATUS_RUNNING" || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got["status"] != "TASK_STATUS_FAILED" || got["error"].(map[string]any)["code"] != "INTERRUPTED" {
		t.Fatalf("after restart: %v", got)
	}
	logs := postJSON(t, second.addr, "/berth.v1.TaskService/GetTaskLogs", token, map[string]any{"task_id": taskID})
	after, _ := logs["entries"].([]any)
	if len(after) < len(before) {
		t.Fatalf("log lines lost: %d before the kill, %d after", len(before), len(after))
	}
	for i, e := range after {
		if seq, _ := strconv.Atoi(e.(map[string]any)["seq"].(string)); seq != i+1 {
			t.Fatalf("log seq %v at %d", e, i)
		}
	}
	for i := range before {
		if b, a := before[i].(map[string]any)["message"], after[i].(map[string]any)["message"]; b != a {
			t.Errorf("line %d changed: %q → %q", i+1, b, a)
		}
	}
	if !strings.Contains(got["error"].(map[string]any)["message"].(string), "logs") {
		t.Errorf("INTERRUPTED message: %v", got["error"])
	}
}
