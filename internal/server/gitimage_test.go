package server_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/docker/docker/client"

	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
	"github.com/berthhq/berth/internal/sandbox"
	"github.com/berthhq/berth/internal/sandbox/docker"
	"github.com/berthhq/berth/internal/sandbox/sandboxtest"
)

var gitImg struct {
	once sync.Once
	ref  string
	err  error
}

// gitImage is the busybox test image plus the host's git binary and the
// shared libraries it links (nothing is pulled: the image is built locally
// through the Engine API from the busybox image), cached by a hash of the
// git binary.
func gitImage(t *testing.T, cli *client.Client) string {
	t.Helper()
	base := sandboxtest.Image(t)
	gitImg.once.Do(func() { gitImg.ref, gitImg.err = buildGitImage(t, cli, base) })
	if gitImg.err != nil {
		t.Fatalf("git test image: %v", gitImg.err)
	}
	return gitImg.ref
}

func buildGitImage(t *testing.T, cli *client.Client, base string) (string, error) {
	gitPath, err := exec.LookPath("git")
	if err != nil {
		return "", err
	}
	gitPath, _ = filepath.EvalSymlinks(gitPath)
	files := []string{gitPath}
	out, err := exec.Command("ldd", gitPath).Output()
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(out), "\n") {
		for _, f := range strings.Fields(line) {
			if strings.HasPrefix(f, "/") {
				files = append(files, f)
			}
		}
	}
	sum := sha256.New()
	io.WriteString(sum, base)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		sum.Write(data)
	}
	ref := "berth-test/git:" + hex.EncodeToString(sum.Sum(nil))[:16]
	if _, err := cli.ImageInspect(t.Context(), ref); err == nil {
		return ref, nil
	}
	dir, err := os.MkdirTemp("", "berth-gitimage-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		dst := filepath.Join(dir, "root", f)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(dst, data, 0o755); err != nil {
			return "", err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM "+base+"\nCOPY root/ /\n"), 0o644); err != nil {
		return "", err
	}
	rt, err := docker.New(t.Context(), docker.WithClient(cli))
	if err != nil {
		return "", err
	}
	ctxDir, err := os.Open(dir)
	if err != nil {
		return "", err
	}
	defer ctxDir.Close()
	var log bytes.Buffer
	if _, err := rt.Build(t.Context(), sandbox.BuildSpec{Context: ctxDir, Dockerfile: "Dockerfile", Tag: ref, Out: &log}); err != nil {
		return "", err
	}
	return ref, nil
}

// TestGitTasksOnDocker runs git operations inside a real container (the
// same executor path as production), against a repository made on the host.
func TestGitTasksOnDocker(t *testing.T) {
	t.Parallel()
	cli := sandboxtest.Engine(t)
	// Root inside the container (with every capability still dropped): the
	// repository below is owned by the test's root, and git refuses to work
	// in a repository another user owns.
	srv := startServer(t, append(dockerFlags(t, cli), "--workspace-image", gitImage(t, cli), "--workspace-user", "0:0")...)
	c := srv.clients(protocols[0])
	ctx := as(t.Context(), register(t, c, "dockergit@example.com").GetTokens().GetAccessToken())
	dir := srv.mkdir(t, "repo")
	git(t, dir, "init", "-q", "-b", "main")
	if err := os.WriteFile(filepath.Join(dir, "a.txt"), []byte("a\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	git(t, dir, "add", "a.txt")
	git(t, dir, "commit", "-q", "-m", "first")
	ws, err := c.Workspace.CreateWorkspace(ctx, &berthv1.CreateWorkspaceRequest{Name: "repo", Path: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeContainer(cli, ws.GetWorkspace().GetContainerId()) })
	if err := os.WriteFile(filepath.Join(dir, "new.txt"), []byte("new\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	before := git(t, dir, "rev-parse", "HEAD")
	res, err := c.Task.CreateTask(ctx, &berthv1.CreateTaskRequest{
		WorkspaceId: ws.GetWorkspace().GetId(), Type: berthv1.TaskType_TASK_TYPE_GIT_OPERATION,
		Git: &berthv1.GitOperation{Operation: berthv1.GitOperationType_GIT_OPERATION_TYPE_COMMIT, Message: "add new.txt"},
	})
	if err != nil {
		t.Fatal(err)
	}
	done := waitTask(t, c, ctx, res.GetTask().GetId(), nil)
	after := git(t, dir, "rev-parse", "HEAD")
	if done.GetStatus() != berthv1.TaskStatus_TASK_STATUS_SUCCEEDED || after == before ||
		done.GetResult().GetDetails().GetFields()["head"].GetStringValue() != after {
		t.Fatalf("commit in the container = %v (HEAD %s → %s)\nlogs: %v", done, before, after, allLogs(t, c, ctx, done.GetId()))
	}
	if files := git(t, dir, "show", "--name-only", "--format=", "HEAD"); files != "new.txt" {
		t.Errorf("the commit holds %q, want new.txt", files)
	}
	// Authored by the account that created the task, inside the container
	// too.
	if who := git(t, dir, "log", "-1", "--format=%an <%ae> %cn <%ce>"); who != "dockergit <dockergit@example.com> dockergit <dockergit@example.com>" {
		t.Errorf("commit identity %q", who)
	}
	status, err := c.Task.CreateTask(ctx, &berthv1.CreateTaskRequest{
		WorkspaceId: ws.GetWorkspace().GetId(), Type: berthv1.TaskType_TASK_TYPE_GIT_OPERATION,
		Git: &berthv1.GitOperation{Operation: berthv1.GitOperationType_GIT_OPERATION_TYPE_LOG},
	})
	if err != nil {
		t.Fatal(err)
	}
	logTask := waitTask(t, c, ctx, status.GetTask().GetId(), nil)
	found := false
	for _, e := range allLogs(t, c, ctx, logTask.GetId()) {
		found = found || strings.Contains(e.GetMessage(), "add new.txt")
	}
	if logTask.GetStatus() != berthv1.TaskStatus_TASK_STATUS_SUCCEEDED || !found {
		t.Errorf("git log in the container = %v (commit listed: %v)", logTask, found)
	}
}
