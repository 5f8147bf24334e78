package server_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"

	"connectrpc.com/connect/v2"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"

	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
	"github.com/berthhq/berth/internal/sandbox/sandboxtest"
)

// dockerFlags point a test server at the test engine and image, with no
// network for containers.
func dockerFlags(t *testing.T, cli *client.Client, extra ...string) []string {
	return append([]string{
		"--runtime", "docker",
		"--docker-host", cli.DaemonHost(),
		"--workspace-image", sandboxtest.Image(t),
		"--workspace-network", "none",
		"--workspace-user", "1000:1000",
		"--workspace-memory", "256", "--workspace-cpus", "0.5", "--workspace-pids", "128",
	}, extra...)
}

// TestDockerWorkspaceLifecycle: a workspace is a real container with the
// labels, mount, limits and security options asked for; start, stop and
// delete drive it; the host directory survives.
func TestDockerWorkspaceLifecycle(t *testing.T) {
	t.Parallel()
	cli := sandboxtest.Engine(t)
	srv := startServer(t, dockerFlags(t, cli, "--workspace-image-allow", "berth-test/does-not-*")...)
	c := srv.clients(protocols[0])
	ctx := as(t.Context(), register(t, c, "docker@example.com").GetTokens().GetAccessToken())
	dir := srv.mkdir(t, "project")

	_, err := c.Workspace.CreateWorkspace(ctx, &berthv1.CreateWorkspaceRequest{Name: "big", Path: dir, Resources: &berthv1.ResourceLimits{MemoryMb: 1 << 20}})
	details := wantCode(t, err, connect.CodeInvalidArgument, "VALIDATION_ERROR")
	if !slices.Contains(fieldViolations(details), "resources.memory_mb") {
		t.Errorf("over-limit memory: %v", fieldViolations(details))
	}

	created, err := c.Workspace.CreateWorkspace(ctx, &berthv1.CreateWorkspaceRequest{Name: "box", Path: dir, Resources: &berthv1.ResourceLimits{Pids: 64}})
	if err != nil {
		t.Fatalf("CreateWorkspace: %v", err)
	}
	w := created.GetWorkspace()
	if w.GetContainerId() == "" || w.GetStatus() != berthv1.WorkspaceStatus_WORKSPACE_STATUS_STOPPED {
		t.Fatalf("created = %v", w)
	}
	t.Cleanup(func() {
		_ = cli.ContainerRemove(context.Background(), w.GetContainerId(), container.RemoveOptions{Force: true})
	})

	info, err := cli.ContainerInspect(t.Context(), w.GetContainerId())
	if err != nil {
		t.Fatalf("the container does not exist: %v", err)
	}
	if info.Config.Labels["berth.workspace"] != w.GetId() || info.Config.Labels["berth.managed"] != "true" {
		t.Errorf("labels = %v", info.Config.Labels)
	}
	mounted := false
	for _, m := range info.Mounts {
		if m.Source == dir && m.Destination == "/workspace" && m.RW {
			mounted = true
		}
	}
	if !mounted || info.Config.WorkingDir != "/workspace" {
		t.Errorf("mounts = %+v, workdir %q", info.Mounts, info.Config.WorkingDir)
	}
	hc := info.HostConfig
	if hc.Memory != 256<<20 || hc.NanoCPUs != 5e8 || hc.PidsLimit == nil || *hc.PidsLimit != 64 {
		t.Errorf("limits: memory %d, nanocpus %d, pids %v", hc.Memory, hc.NanoCPUs, hc.PidsLimit)
	}
	if !slices.Contains(hc.SecurityOpt, "no-new-privileges:true") || !slices.Contains(hc.CapDrop, "ALL") || len(hc.CapAdd) != 0 {
		t.Errorf("security: opts %v, drop %v, add %v", hc.SecurityOpt, hc.CapDrop, hc.CapAdd)
	}
	if info.Config.User != "1000:1000" || string(hc.NetworkMode) != "none" {
		t.Errorf("user %q, network %q", info.Config.User, hc.NetworkMode)
	}

	started, err := c.Workspace.StartWorkspace(ctx, &berthv1.StartWorkspaceRequest{Id: w.GetId()})
	if err != nil || started.GetWorkspace().GetStatus() != berthv1.WorkspaceStatus_WORKSPACE_STATUS_RUNNING {
		t.Fatalf("StartWorkspace = %v, %v", started, err)
	}
	if info, _ := cli.ContainerInspect(t.Context(), w.GetContainerId()); !info.State.Running {
		t.Fatal("the container is not running")
	}
	_, err = c.Workspace.UpdateWorkspace(ctx, &berthv1.UpdateWorkspaceRequest{Id: w.GetId(), Archived: new(true)})
	wantCode(t, err, connect.CodeFailedPrecondition, "CONFLICT")

	stopped, err := c.Workspace.StopWorkspace(ctx, &berthv1.StopWorkspaceRequest{Id: w.GetId()})
	if err != nil || stopped.GetWorkspace().GetStatus() != berthv1.WorkspaceStatus_WORKSPACE_STATUS_STOPPED {
		t.Fatalf("StopWorkspace = %v, %v", stopped, err)
	}
	if info, _ := cli.ContainerInspect(t.Context(), w.GetContainerId()); info.State.Running {
		t.Fatal("the container still runs")
	}

	if _, err := c.Workspace.DeleteWorkspace(ctx, &berthv1.DeleteWorkspaceRequest{Id: w.GetId()}); err != nil {
		t.Fatalf("DeleteWorkspace: %v", err)
	}
	if _, err := cli.ContainerInspect(t.Context(), w.GetContainerId()); !cerrdefs.IsNotFound(err) {
		t.Errorf("the container survived DeleteWorkspace: %v", err)
	}

	// An image the server does not allow is refused up front.
	_, err = c.Workspace.CreateWorkspace(ctx, &berthv1.CreateWorkspaceRequest{Name: "other", Path: dir, Image: "berth-test/not-allowed:1"})
	if !slices.Contains(fieldViolations(wantCode(t, err, connect.CodeInvalidArgument, "VALIDATION_ERROR")), "image") {
		t.Errorf("a create with an image not allowed: %v", err)
	}
	// An allowed image that does not exist: the create fails for good
	// (FailedPrecondition: trying again cannot help) with the engine's
	// reason, and leaves no record behind.
	_, err = c.Workspace.CreateWorkspace(ctx, &berthv1.CreateWorkspaceRequest{Name: "ghost", Path: dir, Image: "berth-test/does-not-exist:1"})
	wantCode(t, err, connect.CodeFailedPrecondition, "CONFLICT")
	if !strings.Contains(errMessage(err), "does-not-exist") {
		t.Errorf("create with a missing image: %v", err)
	}
	list, _ := c.Workspace.ListWorkspaces(ctx, &berthv1.ListWorkspacesRequest{})
	if list.GetPagination().GetTotal() != 0 {
		t.Errorf("a failed create left records: %v", list)
	}

	status, body, _ := do(t, mustRequest(t, http.MethodGet, srv.URL+"/ready"))
	rt, _ := body["checks"].(map[string]any)["runtime"].(map[string]any)
	if status != http.StatusOK || !strings.HasPrefix(rt["state"].(string), "docker: ok (engine ") {
		t.Errorf("/ready = %d %v", status, body)
	}
}

func mustRequest(t *testing.T, method, url string) *http.Request {
	req, err := http.NewRequestWithContext(t.Context(), method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// TestDockerStatusStaysTrue: a container removed behind berth's back turns
// its workspace to ERROR with the reason; starting it again makes a new
// container; a berth restart reconciles what changed while it was down.
func TestDockerStatusStaysTrue(t *testing.T) {
	t.Parallel()
	cli := sandboxtest.Engine(t)
	srv := startServer(t, dockerFlags(t, cli)...)
	c := srv.clients(protocols[0])
	ctx := as(t.Context(), register(t, c, "events@example.com").GetTokens().GetAccessToken())
	created, err := c.Workspace.CreateWorkspace(ctx, &berthv1.CreateWorkspaceRequest{Name: "gone", Path: srv.mkdir(t, "gone")})
	if err != nil {
		t.Fatal(err)
	}
	id, first := created.GetWorkspace().GetId(), created.GetWorkspace().GetContainerId()
	if _, err := c.Workspace.StartWorkspace(ctx, &berthv1.StartWorkspaceRequest{Id: id}); err != nil {
		t.Fatal(err)
	}
	if err := cli.ContainerRemove(t.Context(), first, container.RemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	var got *berthv1.Workspace
	eventually(t, "the workspace to turn ERROR", func() bool {
		res, err := c.Workspace.GetWorkspace(ctx, &berthv1.GetWorkspaceRequest{Id: id})
		got = res.GetWorkspace()
		return err == nil && got.GetStatus() == berthv1.WorkspaceStatus_WORKSPACE_STATUS_ERROR
	})
	if !strings.Contains(got.GetStatusReason(), "removed outside berth") {
		t.Errorf("reason = %q", got.GetStatusReason())
	}

	restarted, err := c.Workspace.StartWorkspace(ctx, &berthv1.StartWorkspaceRequest{Id: id})
	if err != nil || restarted.GetWorkspace().GetStatus() != berthv1.WorkspaceStatus_WORKSPACE_STATUS_RUNNING ||
		restarted.GetWorkspace().GetContainerId() == first || restarted.GetWorkspace().GetContainerId() == "" {
		t.Fatalf("restart after removal = %v, %v", restarted, err)
	}
	second := restarted.GetWorkspace().GetContainerId()
	t.Cleanup(func() { _ = cli.ContainerRemove(context.Background(), second, container.RemoveOptions{Force: true}) })

	// A container stopped behind berth's back: the event stream says so.
	timeout := 1
	if err := cli.ContainerStop(t.Context(), second, container.StopOptions{Timeout: &timeout}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the workspace to turn STOPPED", func() bool {
		res, err := c.Workspace.GetWorkspace(ctx, &berthv1.GetWorkspaceRequest{Id: id})
		return err == nil && res.GetWorkspace().GetStatus() == berthv1.WorkspaceStatus_WORKSPACE_STATUS_STOPPED
	})
}

// TestDockerReconcileOnRestart: what changes while berth is down is found
// when it starts again.
func TestDockerReconcileOnRestart(t *testing.T) {
	t.Parallel()
	cli := sandboxtest.Engine(t)
	dataDir := t.TempDir()
	flags := append(dockerFlags(t, cli), "--data-dir", dataDir, "--workspace-root", dataDir+"/ws")
	first := startServerUntil(t, flags...)
	c := first.srv.clients(protocols[0])
	ctx := as(t.Context(), register(t, c, "restart@example.com").GetTokens().GetAccessToken())
	var ids, containers []string
	for _, name := range []string{"kept", "removed"} {
		res, err := c.Workspace.CreateWorkspace(ctx, &berthv1.CreateWorkspaceRequest{Name: name, Path: first.srv.mkdir(t, name)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Workspace.StartWorkspace(ctx, &berthv1.StartWorkspaceRequest{Id: res.GetWorkspace().GetId()}); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.GetWorkspace().GetId())
		containers = append(containers, res.GetWorkspace().GetContainerId())
		t.Cleanup(func() {
			_ = cli.ContainerRemove(context.Background(), res.GetWorkspace().GetContainerId(), container.RemoveOptions{Force: true})
		})
	}
	first.stop()

	timeout := 1
	if err := cli.ContainerStop(t.Context(), containers[0], container.StopOptions{Timeout: &timeout}); err != nil {
		t.Fatal(err)
	}
	if err := cli.ContainerRemove(t.Context(), containers[1], container.RemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}

	second := startServer(t, flags...)
	c = second.clients(protocols[0])
	login, err := c.Auth.Login(t.Context(), &berthv1.LoginRequest{Email: "restart@example.com", Password: "correct horse battery"})
	if err != nil {
		t.Fatal(err)
	}
	ctx = as(t.Context(), login.GetTokens().GetAccessToken())
	want := []berthv1.WorkspaceStatus{berthv1.WorkspaceStatus_WORKSPACE_STATUS_STOPPED, berthv1.WorkspaceStatus_WORKSPACE_STATUS_ERROR}
	for i, id := range ids {
		eventually(t, "reconciliation of "+id, func() bool {
			res, err := c.Workspace.GetWorkspace(ctx, &berthv1.GetWorkspaceRequest{Id: id})
			return err == nil && res.GetWorkspace().GetStatus() == want[i]
		})
	}
}

// TestIdleWorkspaceStops: a running workspace nobody uses is stopped after
// the idle timeout.
func TestIdleWorkspaceStops(t *testing.T) {
	t.Parallel()
	cli := sandboxtest.Engine(t)
	srv := startServer(t, dockerFlags(t, cli, "--workspace-idle-timeout", "1s")...)
	c := srv.clients(protocols[0])
	ctx := as(t.Context(), register(t, c, "idle@example.com").GetTokens().GetAccessToken())
	res, err := c.Workspace.CreateWorkspace(ctx, &berthv1.CreateWorkspaceRequest{Name: "idle", Path: srv.mkdir(t, "idle")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cli.ContainerRemove(context.Background(), res.GetWorkspace().GetContainerId(), container.RemoveOptions{Force: true})
	})
	if _, err := c.Workspace.StartWorkspace(ctx, &berthv1.StartWorkspaceRequest{Id: res.GetWorkspace().GetId()}); err != nil {
		t.Fatal(err)
	}
	// ListWorkspaces is not activity on one workspace, so polling with it
	// does not keep the workspace alive.
	eventually(t, "the idle workspace to stop", func() bool {
		list, err := c.Workspace.ListWorkspaces(ctx, &berthv1.ListWorkspacesRequest{Status: "stopped"})
		return err == nil && list.GetPagination().GetTotal() == 1
	})
	if info, _ := cli.ContainerInspect(t.Context(), res.GetWorkspace().GetContainerId()); info.State.Running {
		t.Error("the container of an idle-stopped workspace still runs")
	}
}

func removeContainer(cli *client.Client, id string) {
	if id != "" {
		_ = cli.ContainerRemove(context.Background(), id, container.RemoveOptions{Force: true})
	}
}

func imageRemoveOptions() image.RemoveOptions { return image.RemoveOptions{Force: true} }
