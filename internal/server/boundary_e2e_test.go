package server_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"connectrpc.com/connect/v2"
	"github.com/docker/docker/api/types/container"

	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
	"github.com/berthhq/berth/internal/sandbox/sandboxtest"
)

// TestBoundaryWorkspaceDirectories performs, as ordinary members on a real
// Docker engine, the attacks on workspace storage that used to work —
// claiming another user's directory, nesting a workspace in another, and
// replacing a workspace's directory with a symbolic link so that its
// container mounts the host's / — and checks each is refused and the host
// is untouched.
func TestBoundaryWorkspaceDirectories(t *testing.T) {
	t.Parallel()
	cli := sandboxtest.Engine(t)
	srv := startServer(t, dockerFlags(t, cli)...)
	c := srv.clients(protocols[0])
	admin := as(t.Context(), register(t, c, "admin@example.com").GetTokens().GetAccessToken())
	aliceRes := register(t, c, "alice@example.com")
	alice := as(t.Context(), aliceRes.GetTokens().GetAccessToken())
	mallory := as(t.Context(), register(t, c, "mallory@example.com").GetTokens().GetAccessToken())

	// berth makes Alice's directory: <root>/<her id>/<workspace id>, given
	// to the container user.
	made, err := c.Workspace.CreateWorkspace(alice, &berthv1.CreateWorkspaceRequest{Name: "project"})
	if err != nil {
		t.Fatalf("CreateWorkspace without a path: %v", err)
	}
	w := made.GetWorkspace()
	t.Cleanup(func() {
		_ = cli.ContainerRemove(context.Background(), w.GetContainerId(), container.RemoveOptions{Force: true})
	})
	root, err := filepath.EvalSymlinks(srv.Root)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(root, aliceRes.GetUser().GetId(), w.GetId()); w.GetPath() != want || !w.GetManaged() {
		t.Fatalf("workspace path %q managed %v; want %q, managed", w.GetPath(), w.GetManaged(), want)
	}
	fi, err := os.Stat(w.GetPath())
	if err != nil || !fi.IsDir() {
		t.Fatalf("the workspace directory was not made: %v", err)
	}
	if os.Geteuid() == 0 {
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != 1000 || st.Gid != 1000 {
			t.Errorf("the workspace directory belongs to %d:%d, want the container user 1000:1000", st.Uid, st.Gid)
		}
	}
	if w.GetResources().GetMemoryMb() != 256 || w.GetResources().GetPids() != 128 {
		t.Errorf("resources in the record = %v, want the defaults in effect (256 MiB, 128 pids)", w.GetResources())
	}

	// Mallory cannot name a host directory at all, so not Alice's either.
	_, err = c.Workspace.CreateWorkspace(mallory, &berthv1.CreateWorkspaceRequest{Name: "steal", Path: w.GetPath()})
	wantCode(t, err, connect.CodePermissionDenied, "FORBIDDEN")
	// Not even an admin can import a directory that is, contains or lies in
	// another workspace's.
	inside := filepath.Join(w.GetPath(), "child")
	if err := os.Mkdir(inside, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{w.GetPath(), inside, filepath.Dir(w.GetPath())} {
		_, err = c.Workspace.CreateWorkspace(admin, &berthv1.CreateWorkspaceRequest{Name: "import-" + filepath.Base(path), Path: path})
		details := wantCode(t, err, connect.CodeAlreadyExists, "CONFLICT")
		if got := fieldViolations(details); len(got) != 1 || got[0] != "path" {
			t.Errorf("import of %s: violations %v", path, got)
		}
		if strings.Contains(err.Error(), w.GetId()) || strings.Contains(err.Error(), aliceRes.GetUser().GetId()) {
			t.Errorf("the refusal names the other workspace or its owner: %v", err)
		}
	}
	// The refusal of a path says nothing of what is on the host.
	for _, path := range []string{"/etc/passwd", "/proc/self/cwd", filepath.Join(root, "missing")} {
		_, err = c.Workspace.CreateWorkspace(admin, &berthv1.CreateWorkspaceRequest{Name: "oracle", Path: path})
		wantCode(t, err, connect.CodeInvalidArgument, "VALIDATION_ERROR")
		for _, leak := range []string{"does not exist", "not a directory", "resolved", "cannot be"} {
			if strings.Contains(err.Error(), leak) {
				t.Errorf("CreateWorkspace(%s) tells about the host: %v", path, err)
			}
		}
	}

	// The attack: something that can write where the directory is (an
	// agent of a workspace around it, before nesting was refused) replaces
	// it with a link to the host's /, then starts the workspace. Each time
	// the start is refused, the workspace is ERROR and nothing is mounted.
	marker := filepath.Join(t.TempDir(), "host-dir")
	if err := os.Mkdir(marker, 0o755); err != nil {
		t.Fatal(err)
	}
	real := w.GetPath() + ".moved"
	if err := os.Rename(w.GetPath(), real); err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{"/", marker} {
		if err := os.Symlink(target, w.GetPath()); err != nil {
			t.Fatal(err)
		}
		_, err = c.Workspace.StartWorkspace(alice, &berthv1.StartWorkspaceRequest{Id: w.GetId()})
		wantCode(t, err, connect.CodeFailedPrecondition, "CONFLICT")
		got, err := c.Workspace.GetWorkspace(alice, &berthv1.GetWorkspaceRequest{Id: w.GetId()})
		if err != nil {
			t.Fatal(err)
		}
		if got.GetWorkspace().GetStatus() != berthv1.WorkspaceStatus_WORKSPACE_STATUS_ERROR || !strings.Contains(got.GetWorkspace().GetStatusReason(), "no longer the directory") {
			t.Errorf("after the refused start (link to %s): %v %q", target, got.GetWorkspace().GetStatus(), got.GetWorkspace().GetStatusReason())
		}
		if strings.Contains(got.GetWorkspace().GetStatusReason(), target+" ") {
			t.Errorf("the reason says where the link points: %q", got.GetWorkspace().GetStatusReason())
		}
		info, err := cli.ContainerInspect(t.Context(), w.GetContainerId())
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Running {
			t.Fatalf("the container runs with its directory replaced by a link to %s", target)
		}
		// A task that would start it on demand fails the same way.
		task, err := c.Task.CreateTask(alice, &berthv1.CreateTaskRequest{WorkspaceId: w.GetId(), Type: berthv1.TaskType_TASK_TYPE_GIT_OPERATION,
			Git: &berthv1.GitOperation{Operation: berthv1.GitOperationType_GIT_OPERATION_TYPE_STATUS}})
		if err != nil {
			t.Fatal(err)
		}
		done := waitTask(t, c, alice, task.GetTask().GetId(), nil)
		if done.GetStatus() != berthv1.TaskStatus_TASK_STATUS_FAILED || done.GetError().GetCode() != "WORKSPACE_UNAVAILABLE" {
			t.Errorf("a task in the workspace with its directory replaced: %v %v", done.GetStatus(), done.GetError())
		}
		if err := os.Remove(w.GetPath()); err != nil {
			t.Fatal(err)
		}
	}
	if entries, _ := os.ReadDir(marker); len(entries) != 0 {
		t.Errorf("files appeared in the host directory the link pointed to: %v", entries)
	}

	// Put back, the directory is used again, and it is what is mounted.
	if err := os.Rename(real, w.GetPath()); err != nil {
		t.Fatal(err)
	}
	started, err := c.Workspace.StartWorkspace(alice, &berthv1.StartWorkspaceRequest{Id: w.GetId()})
	if err != nil || started.GetWorkspace().GetStatus() != berthv1.WorkspaceStatus_WORKSPACE_STATUS_RUNNING {
		t.Fatalf("StartWorkspace with the directory back: %v, %v", started, err)
	}
	info, err := cli.ContainerInspect(t.Context(), started.GetWorkspace().GetContainerId())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range info.Mounts {
		if m.Destination == "/workspace" && m.Source != w.GetPath() {
			t.Errorf("/workspace is mounted from %s, want %s", m.Source, w.GetPath())
		}
	}

	// Deleting with its directory removes what berth made; an imported
	// directory is never deleted.
	imported := srv.mkdir(t, "imported")
	imp, err := c.Workspace.CreateWorkspace(admin, &berthv1.CreateWorkspaceRequest{Name: "imported", Path: imported})
	if err != nil {
		t.Fatalf("an admin imports a free directory: %v", err)
	}
	if imp.GetWorkspace().GetManaged() {
		t.Error("an imported workspace reads as managed")
	}
	_, err = c.Workspace.DeleteWorkspace(admin, &berthv1.DeleteWorkspaceRequest{Id: imp.GetWorkspace().GetId(), DeleteDirectory: true})
	wantCode(t, err, connect.CodeFailedPrecondition, "CONFLICT")
	if _, err := c.Workspace.DeleteWorkspace(admin, &berthv1.DeleteWorkspaceRequest{Id: imp.GetWorkspace().GetId()}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(imported); err != nil {
		t.Errorf("deleting an imported workspace touched its directory: %v", err)
	}
	if _, err := c.Workspace.DeleteWorkspace(alice, &berthv1.DeleteWorkspaceRequest{Id: w.GetId(), DeleteDirectory: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(w.GetPath()); !os.IsNotExist(err) {
		t.Errorf("the managed directory is still there after delete_directory: %v", err)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Errorf("the host directory is gone: %v", err)
	}
}

// TestBoundaryWorkingDirectory: a task's working directory that became a
// link out of the workspace (here to /, as an agent could make it) fails
// the task before anything runs, on the process runtime where it would be
// the host's /.
func TestBoundaryWorkingDirectory(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	c := srv.clients(protocols[0])
	_ = register(t, c, "admin@example.com")
	member := as(t.Context(), register(t, c, "member@example.com").GetTokens().GetAccessToken())
	made, err := c.Workspace.CreateWorkspace(member, &berthv1.CreateWorkspaceRequest{Name: "wd"})
	if err != nil {
		t.Fatal(err)
	}
	w := made.GetWorkspace()
	if err := os.Symlink("/", filepath.Join(w.GetPath(), "escape")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(w.GetPath(), "sub", "dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("sub/dir", filepath.Join(w.GetPath(), "inside")); err != nil {
		t.Fatal(err)
	}
	run := func(wd string) *berthv1.Task {
		t.Helper()
		res, err := c.Task.CreateTask(member, &berthv1.CreateTaskRequest{WorkspaceId: w.GetId(), Type: berthv1.TaskType_TASK_TYPE_GIT_OPERATION,
			Config: &berthv1.TaskConfig{WorkingDir: wd},
			Git:    &berthv1.GitOperation{Operation: berthv1.GitOperationType_GIT_OPERATION_TYPE_STATUS}})
		if err != nil {
			t.Fatalf("CreateTask(working_dir %q): %v", wd, err)
		}
		return waitTask(t, c, member, res.GetTask().GetId(), nil)
	}
	for _, wd := range []string{"escape", "escape/etc", "sub/../escape"} {
		if strings.Contains(wd, "..") {
			_, err := c.Task.CreateTask(member, &berthv1.CreateTaskRequest{WorkspaceId: w.GetId(), Type: berthv1.TaskType_TASK_TYPE_GIT_OPERATION,
				Config: &berthv1.TaskConfig{WorkingDir: wd}, Git: &berthv1.GitOperation{Operation: berthv1.GitOperationType_GIT_OPERATION_TYPE_STATUS}})
			wantCode(t, err, connect.CodeInvalidArgument, "VALIDATION_ERROR")
			continue
		}
		done := run(wd)
		if done.GetStatus() != berthv1.TaskStatus_TASK_STATUS_FAILED || done.GetError().GetCode() != "WORKING_DIR" {
			t.Errorf("working_dir %q through a link to /: %v %v", wd, done.GetStatus(), done.GetError())
		}
	}
	// A link that stays inside is followed: git runs (and fails, as there
	// is no repository), rather than being refused.
	if done := run("inside"); done.GetError().GetCode() == "WORKING_DIR" {
		t.Errorf("working_dir through a link inside the workspace was refused: %v", done.GetError())
	}
}

// TestManagedWorkspaceClonesGitURL: a member's workspace made without a
// path gets a fresh directory, and its git_url is cloned into it by its
// first task — here from a git daemon on loopback, on the process runtime.
func TestManagedWorkspaceClonesGitURL(t *testing.T) {
	t.Parallel()
	repos := t.TempDir()
	origin := filepath.Join(repos, "demo.git")
	work := t.TempDir()
	gitRun := func(dir string, args ...string) {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
			"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	gitRun(work, "init", "-q", "-b", "main")
	if err := os.WriteFile(filepath.Join(work, "README"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	gitRun(work, "add", "README")
	gitRun(work, "commit", "-q", "-m", "first")
	gitRun(repos, "clone", "-q", "--bare", work, origin)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	daemon := exec.Command("git", "daemon", "--export-all", "--reuseaddr", "--base-path="+repos,
		"--listen=127.0.0.1", fmt.Sprintf("--port=%d", port), repos)
	if err := daemon.Start(); err != nil {
		t.Fatalf("git daemon: %v", err)
	}
	t.Cleanup(func() { _ = daemon.Process.Kill(); _ = daemon.Wait() })
	eventually(t, "git daemon listening", func() bool {
		conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			conn.Close()
		}
		return err == nil
	})

	srv := startServer(t)
	c := srv.clients(protocols[0])
	_ = register(t, c, "admin@example.com")
	member := as(t.Context(), register(t, c, "member@example.com").GetTokens().GetAccessToken())
	made, err := c.Workspace.CreateWorkspace(member, &berthv1.CreateWorkspaceRequest{
		Name: "demo", GitUrl: fmt.Sprintf("git://127.0.0.1:%d/demo.git", port), Branch: "main",
	})
	if err != nil {
		t.Fatal(err)
	}
	w := made.GetWorkspace()
	tasks, err := c.Task.ListTasks(member, &berthv1.ListTasksRequest{WorkspaceId: w.GetId()})
	if err != nil || len(tasks.GetTasks()) != 1 {
		t.Fatalf("tasks of the new workspace: %v, %v; want the clone", tasks, err)
	}
	clone := waitTask(t, c, member, tasks.GetTasks()[0].GetId(), nil)
	if clone.GetStatus() != berthv1.TaskStatus_TASK_STATUS_SUCCEEDED || clone.GetGit().GetOperation() != berthv1.GitOperationType_GIT_OPERATION_TYPE_CLONE {
		t.Fatalf("the clone task: %v %v %v", clone.GetStatus(), clone.GetGit(), clone.GetError())
	}
	if b, err := os.ReadFile(filepath.Join(w.GetPath(), "README")); err != nil || string(b) != "hello\n" {
		t.Errorf("the clone is not in the workspace directory: %q, %v", b, err)
	}

	// A git_url the git rules refuse is refused before anything is made.
	_, err = c.Workspace.CreateWorkspace(member, &berthv1.CreateWorkspaceRequest{Name: "bad", GitUrl: "ext::sh -c touch% /tmp/pwned"})
	wantCode(t, err, connect.CodeInvalidArgument, "VALIDATION_ERROR")
	entries, _ := os.ReadDir(filepath.Dir(w.GetPath()))
	if len(entries) != 1 {
		t.Errorf("the member's directory holds %d workspace directories, want 1 (nothing made for a refused workspace)", len(entries))
	}
}

// TestGitInit: a managed workspace starts empty; a git_operation INIT
// makes it a repository on the branch asked for.
func TestGitInit(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	c := srv.clients(protocols[0])
	_ = register(t, c, "admin@example.com")
	member := as(t.Context(), register(t, c, "member@example.com").GetTokens().GetAccessToken())
	made, err := c.Workspace.CreateWorkspace(member, &berthv1.CreateWorkspaceRequest{Name: "fresh"})
	if err != nil {
		t.Fatal(err)
	}
	w := made.GetWorkspace()
	res, err := c.Task.CreateTask(member, &berthv1.CreateTaskRequest{WorkspaceId: w.GetId(), Type: berthv1.TaskType_TASK_TYPE_GIT_OPERATION,
		Git: &berthv1.GitOperation{Operation: berthv1.GitOperationType_GIT_OPERATION_TYPE_INIT, Ref: "trunk"}})
	if err != nil {
		t.Fatal(err)
	}
	done := waitTask(t, c, member, res.GetTask().GetId(), nil)
	if done.GetStatus() != berthv1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("init: %v %v", done.GetStatus(), done.GetError())
	}
	head, err := os.ReadFile(filepath.Join(w.GetPath(), ".git", "HEAD"))
	if err != nil || strings.TrimSpace(string(head)) != "ref: refs/heads/trunk" {
		t.Errorf(".git/HEAD = %q, %v; want the trunk branch", head, err)
	}
	_, err = c.Task.CreateTask(member, &berthv1.CreateTaskRequest{WorkspaceId: w.GetId(), Type: berthv1.TaskType_TASK_TYPE_GIT_OPERATION,
		Git: &berthv1.GitOperation{Operation: berthv1.GitOperationType_GIT_OPERATION_TYPE_INIT, Paths: []string{"sub"}}})
	wantCode(t, err, connect.CodeInvalidArgument, "VALIDATION_ERROR")
}

// TestTaskRecordsShowWhatIsInEffect: a claude_chat task that asks for no
// limits is recorded with the limits it runs with (the server's
// --claude-max-turns and --task-timeout), and its progress counts turns and
// ends at 100 % with the CLI's own count.
func TestTaskRecordsShowWhatIsInEffect(t *testing.T) {
	t.Parallel()
	e := newStreamEnv(t, "--claude-max-turns", "40", "--task-timeout", "20m")
	res, err := e.c.Task.CreateTask(e.ctx, &berthv1.CreateTaskRequest{WorkspaceId: e.ws, Type: berthv1.TaskType_TASK_TYPE_CLAUDE_CHAT, Prompt: "summarise"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg := res.GetTask().GetConfig(); cfg.GetMaxTurns() != 40 || cfg.GetTimeout() != 1200 {
		t.Errorf("the new task's config = %v; want max_turns 40 and timeout 1200 (the values in effect)", cfg)
	}
	done := waitTask(t, e.c, e.ctx, res.GetTask().GetId(), nil)
	if done.GetStatus() != berthv1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("task: %v %v", done.GetStatus(), done.GetError())
	}
	turns := done.GetResult().GetDetails().GetFields()["num_turns"].GetNumberValue()
	if p := done.GetProgress(); p.GetPercentage() != 100 || float64(p.GetCurrent()) != turns || turns == 0 {
		t.Errorf("progress at the end = %v, want 100 %% at the CLI's %v turns", p, turns)
	}
	var limit bool
	for _, l := range allLogs(t, e.c, e.ctx, done.GetId()) {
		limit = limit || strings.Contains(l.GetMessage(), "time limit 20m0s")
	}
	if !limit {
		t.Error("the log does not say the time limit in effect")
	}
	// A git task's record shows its time limit too (max_turns is for agents).
	git, err := e.c.Task.CreateTask(e.ctx, &berthv1.CreateTaskRequest{WorkspaceId: e.ws, Type: berthv1.TaskType_TASK_TYPE_GIT_OPERATION,
		Git: &berthv1.GitOperation{Operation: berthv1.GitOperationType_GIT_OPERATION_TYPE_STATUS}, Config: &berthv1.TaskConfig{Timeout: 60}})
	if err != nil {
		t.Fatal(err)
	}
	if cfg := git.GetTask().GetConfig(); cfg.GetTimeout() != 60 || cfg.GetMaxTurns() != 0 {
		t.Errorf("git task config = %v", cfg)
	}
}
