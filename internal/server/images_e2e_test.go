package server_test

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/google/uuid"
	"google.golang.org/protobuf/encoding/protojson"

	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
	"github.com/berthhq/berth/internal/sandbox"
	"github.com/berthhq/berth/internal/sandbox/docker"
	"github.com/berthhq/berth/internal/sandbox/sandboxtest"
	"github.com/berthhq/berth/internal/store"
	"github.com/berthhq/berth/internal/taskdoc"
)

// images are the images of an image test, each under a tag of its own so
// that moving them disturbs no other test: def is the server's default
// workspace image (the test image), alt another image (the test image with
// a file /variant) that the server allows.
type images struct {
	def, alt       string // references
	defID, altID   string // their ids when made
	allowPattern   string // --workspace-image-allow matching alt only
	notAllowedLike string // a reference next to alt that the pattern does not match
}

func makeImages(t *testing.T, cli *client.Client) images {
	t.Helper()
	nonce := strings.ToLower(rand.Text())
	im := images{
		def:            "berth-test/poison-default:" + nonce,
		alt:            "berth-test/poison-alt:" + nonce,
		allowPattern:   "berth-test/poison-alt:*",
		notAllowedLike: "berth-test/poison-other:" + nonce,
	}
	base := sandboxtest.Image(t)
	if err := cli.ImageTag(t.Context(), base, im.def); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = cli.ImageRemove(context.Background(), im.def, image.RemoveOptions{}) })
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM "+base+"\nRUN echo "+nonce+" > /variant\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rt, err := docker.New(t.Context(), docker.WithClient(cli))
	if err != nil {
		t.Fatal(err)
	}
	ctxDir, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ctxDir.Close()
	var out strings.Builder
	if im.altID, err = rt.Build(t.Context(), sandbox.BuildSpec{Context: ctxDir, Tag: im.alt, Network: "none", Out: &out}); err != nil {
		t.Fatalf("building %s: %v\n%s", im.alt, err, out.String())
	}
	t.Cleanup(func() {
		_, _ = cli.ImageRemove(context.Background(), im.alt, image.RemoveOptions{Force: true, PruneChildren: true})
	})
	im.defID = imageID(t, cli, im.def)
	if im.defID == im.altID {
		t.Fatal("the two test images are one")
	}
	return im
}

// imageID is the engine's id for ref now; "" when it has no such image.
func imageID(t *testing.T, cli *client.Client, ref string) string {
	t.Helper()
	img, err := cli.ImageInspect(t.Context(), ref)
	if cerrdefs.IsNotFound(err) {
		return ""
	}
	if err != nil {
		t.Fatalf("ImageInspect %s: %v", ref, err)
	}
	return img.ID
}

// TestBuildsCannotPoisonImages is the image-poisoning attack of issue #12:
// a member of a workspace builds, on the shared engine, an image under the
// name of the server's workspace image (or another workspace's build), so
// that every workspace started afterwards would run their code. Every such
// tag is refused at CreateTask; a task stored with one (bypassing
// CreateTask, as one stored before the rule) fails when it runs; the
// images keep their ids. The same context builds into the workspace's own
// repository, with no network and under the workspace's memory limit, and
// the workspace — only that one — can switch to it.
func TestBuildsCannotPoisonImages(t *testing.T) {
	t.Parallel()
	cli := sandboxtest.Engine(t)
	im := makeImages(t, cli)
	srv := startServer(t, dockerFlags(t, cli, "--workspace-image", im.def, "--workspace-image-allow", im.allowPattern)...)
	c := srv.clients(protocols[0])
	admin := as(t.Context(), register(t, c, "admin@example.com").GetTokens().GetAccessToken()) // the first account is admin
	memberReg := register(t, c, "member@example.com")
	member := as(t.Context(), memberReg.GetTokens().GetAccessToken())

	dirA := srv.mkdir(t, "a")
	nonce := strings.ToLower(rand.Text())
	dockerfile := "FROM " + im.def + "\nRUN echo poisoned-" + nonce + " > /poison && echo net: $(ls /sys/class/net) && " +
		"echo mem: $(cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes)\n"
	if err := os.WriteFile(filepath.Join(dirA, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		t.Fatal(err)
	}
	createWS := func(name, dir, img string) (*berthv1.Workspace, error) {
		res, err := c.Workspace.CreateWorkspace(admin, &berthv1.CreateWorkspaceRequest{Name: name, Path: dir, Image: img})
		if err == nil {
			t.Cleanup(func() { removeContainer(cli, res.GetWorkspace().GetContainerId()) })
		}
		return res.GetWorkspace(), err
	}
	a, err := createWS("a", dirA, "")
	if err != nil {
		t.Fatal(err)
	}
	b, err := createWS("b", srv.mkdir(t, "b"), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Workspace.AddMember(admin, &berthv1.AddMemberRequest{WorkspaceId: a.GetId(), UserId: memberReg.GetUser().GetId(), Role: berthv1.WorkspaceRole_WORKSPACE_ROLE_EDITOR}); err != nil {
		t.Fatal(err)
	}
	const production = "berth-workspace:latest"
	productionID := imageID(t, cli, production)
	t.Cleanup(func() {
		// Should the attack ever work, undo it on the shared engine.
		img, err := cli.ImageInspect(context.Background(), production)
		switch {
		case err == nil && productionID == "":
			_, _ = cli.ImageRemove(context.Background(), production, image.RemoveOptions{})
		case err == nil && img.ID != productionID:
			_ = cli.ImageTag(context.Background(), productionID, production)
		}
	})
	ownRepo := "berth-build/" + a.GetId()

	// Refused up front, with the names that are allowed.
	for _, tag := range []string{
		production, im.def, "berth-build/" + b.GetId() + ":x", ownRepo, "berth-build/" + a.GetId() + "/x:y",
		strings.ToUpper(ownRepo) + ":x", ownRepo + "@sha256:" + strings.Repeat("0", 64), "busybox:latest", im.alt,
	} {
		_, err := c.Task.CreateTask(member, &berthv1.CreateTaskRequest{WorkspaceId: a.GetId(), Type: berthv1.TaskType_TASK_TYPE_DOCKER_BUILD,
			DockerBuild: &berthv1.DockerBuild{Tag: tag}})
		if !slices.Contains(fieldViolations(wantCode(t, err, connect.CodeInvalidArgument, "VALIDATION_ERROR")), "docker_build.tag") ||
			!strings.Contains(errMessage(err), ownRepo+":<tag>") {
			t.Errorf("tag %q: %v", tag, err)
		}
	}
	_, err = c.Task.CreateTask(member, &berthv1.CreateTaskRequest{WorkspaceId: a.GetId(), Type: berthv1.TaskType_TASK_TYPE_DOCKER_BUILD,
		DockerBuild: &berthv1.DockerBuild{Dockerfile: "../../../etc/passwd"}})
	if !slices.Contains(fieldViolations(wantCode(t, err, connect.CodeInvalidArgument, "VALIDATION_ERROR")), "docker_build.dockerfile") {
		t.Errorf("Dockerfile ../../../etc/passwd: %v", err)
	}

	// Stored without CreateTask's check, the poisoning build fails when
	// it runs, before anything is built.
	st, err := store.Open(t.Context(), filepath.Join(srv.DataDir, "berth.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, tag := range []string{im.def, production} {
		raw, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(&berthv1.DockerBuild{Tag: tag})
		if err != nil {
			t.Fatal(err)
		}
		id := uuid.NewString()
		if err := st.CreateTaskRecord(t.Context(), &store.TaskRecord{
			ID: id, WorkspaceID: a.GetId(), CreatedBy: memberReg.GetUser().GetId(), Type: store.TaskDockerBuild,
			Status: store.TaskQueued, Priority: store.TaskPriorityMedium, Config: storedDoc[taskdoc.Config](t, []byte("{}")), DockerBuild: storedDoc[taskdoc.DockerBuild](t, raw),
			Tags: []string{}, Metadata: map[string]string{}, CreatedAt: time.Now().UTC(),
		}); err != nil {
			t.Fatal(err)
		}
		done := waitTask(t, c, member, id, nil)
		if done.GetStatus() != berthv1.TaskStatus_TASK_STATUS_FAILED || done.GetError().GetCode() != "TAG_REFUSED" ||
			!strings.Contains(done.GetError().GetMessage(), ownRepo+":<tag>") {
			t.Errorf("stored build tagged %s = %v, want FAILED with TAG_REFUSED", tag, done)
		}
	}
	if got := imageID(t, cli, im.def); got != im.defID {
		t.Fatalf("the default image %s changed: %s, was %s", im.def, got, im.defID)
	}
	if got := imageID(t, cli, production); got != productionID {
		t.Fatalf("%s changed: %q, was %q", production, got, productionID)
	}

	// A context directory that is a link out of the workspace is refused
	// when the build opens it (beneath the workspace directory).
	if err := os.Symlink(t.TempDir(), filepath.Join(dirA, "out")); err != nil {
		t.Fatal(err)
	}
	res, err := c.Task.CreateTask(member, &berthv1.CreateTaskRequest{WorkspaceId: a.GetId(), Type: berthv1.TaskType_TASK_TYPE_DOCKER_BUILD,
		DockerBuild: &berthv1.DockerBuild{ContextDir: "out"}})
	if err != nil {
		t.Fatal(err)
	}
	if done := waitTask(t, c, member, res.GetTask().GetId(), nil); done.GetStatus() != berthv1.TaskStatus_TASK_STATUS_FAILED ||
		!strings.Contains(done.GetError().GetMessage(), "leaves the workspace") {
		t.Errorf("a build from a context linked out of the workspace = %v", done)
	}
	if err := os.Remove(filepath.Join(dirA, "out")); err != nil { // a link out would fail the next build too
		t.Fatal(err)
	}

	// The same context builds into the workspace's own repository, its RUN
	// step with no network and the workspace's memory limit (256 MiB).
	res, err = c.Task.CreateTask(member, &berthv1.CreateTaskRequest{WorkspaceId: a.GetId(), Type: berthv1.TaskType_TASK_TYPE_DOCKER_BUILD,
		DockerBuild: &berthv1.DockerBuild{Tag: "v1"}})
	if err != nil {
		t.Fatal(err)
	}
	own := ownRepo + ":v1"
	t.Cleanup(func() {
		_, _ = cli.ImageRemove(context.Background(), own, image.RemoveOptions{Force: true, PruneChildren: true})
	})
	done := waitTask(t, c, member, res.GetTask().GetId(), nil)
	fields := done.GetResult().GetDetails().GetFields()
	if done.GetStatus() != berthv1.TaskStatus_TASK_STATUS_SUCCEEDED || fields["tag"].GetStringValue() != own ||
		fields["image_id"].GetStringValue() != imageID(t, cli, own) {
		t.Fatalf("own build = %v", done)
	}
	var log strings.Builder
	for _, l := range allLogs(t, c, member, done.GetId()) {
		log.WriteString(l.GetMessage() + "\n")
	}
	if !strings.Contains(log.String(), "net: lo\n") || !strings.Contains(log.String(), "mem: 268435456\n") {
		t.Errorf("the build's RUN step did not run with no network and a 256 MiB limit:\n%s", log.String())
	}
	if got := imageID(t, cli, im.def); got != im.defID {
		t.Fatalf("the default image %s changed: %s, was %s", im.def, got, im.defID)
	}

	// A workspace may run its own build, not another workspace's.
	_, err = createWS("c", srv.mkdir(t, "c"), own)
	if !slices.Contains(fieldViolations(wantCode(t, err, connect.CodeInvalidArgument, "VALIDATION_ERROR")), "image") {
		t.Errorf("a new workspace running another's build: %v", err)
	}
	_, err = c.Workspace.UpdateWorkspace(admin, &berthv1.UpdateWorkspaceRequest{Id: b.GetId(), Image: &own})
	if !slices.Contains(fieldViolations(wantCode(t, err, connect.CodeInvalidArgument, "VALIDATION_ERROR")), "image") {
		t.Errorf("b switching to a's build: %v", err)
	}
	updated, err := c.Workspace.UpdateWorkspace(member, &berthv1.UpdateWorkspaceRequest{Id: a.GetId(), Image: &own})
	if err != nil || updated.GetWorkspace().GetImage() != own {
		t.Fatalf("a switching to its own build = %v, %v", updated, err)
	}
	events, err := c.Admin.ListAuditEvents(admin, &berthv1.ListAuditEventsRequest{Action: "workspace.image"})
	if err != nil || len(events.GetEvents()) != 1 || events.GetEvents()[0].GetActorId() != memberReg.GetUser().GetId() ||
		events.GetEvents()[0].GetTargetId() != a.GetId() || events.GetEvents()[0].GetDetails()["image"] != own {
		t.Errorf("the image switch was not audited: %v, %v", events, err)
	}
	// (The builds started a; the new image is used from its next start.)
	if _, err := c.Workspace.StopWorkspace(member, &berthv1.StopWorkspaceRequest{Id: a.GetId()}); err != nil {
		t.Fatal(err)
	}
	started, err := c.Workspace.StartWorkspace(member, &berthv1.StartWorkspaceRequest{Id: a.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeContainer(cli, started.GetWorkspace().GetContainerId()) })
	if w := started.GetWorkspace(); w.GetImage() != own || w.GetImageId() != imageID(t, cli, own) || containerImage(t, cli, w.GetContainerId()) != w.GetImageId() {
		t.Errorf("a started from its own build: image %q, image_id %q, container from %q; want %s (%s)",
			w.GetImage(), w.GetImageId(), containerImage(t, cli, w.GetContainerId()), own, imageID(t, cli, own))
	}
}

func containerImage(t *testing.T, cli *client.Client, id string) string {
	t.Helper()
	info, err := cli.ContainerInspect(t.Context(), id)
	if err != nil {
		t.Fatalf("ContainerInspect %s: %v", id, err)
	}
	return info.Image
}

// TestWorkspaceImagesAreResolvedAtStart: a workspace's container is made
// from the id its image name gives when it is created or started; the
// record shows the name in effect and that id; moving the default image's
// tag to another image and restarting the workspace makes a new container
// from the new id; an image not allowed is refused, one allowed works, and
// one no longer allowed is refused at start for good (FailedPrecondition).
func TestWorkspaceImagesAreResolvedAtStart(t *testing.T) {
	t.Parallel()
	cli := sandboxtest.Engine(t)
	im := makeImages(t, cli)
	srv := startServer(t, dockerFlags(t, cli, "--workspace-image", im.def, "--workspace-image-allow", im.allowPattern)...)
	c := srv.clients(protocols[0])
	admin := as(t.Context(), register(t, c, "admin@example.com").GetTokens().GetAccessToken())

	_, err := c.Workspace.CreateWorkspace(admin, &berthv1.CreateWorkspaceRequest{Name: "x", Path: srv.mkdir(t, "x"), Image: im.notAllowedLike})
	details := wantCode(t, err, connect.CodeInvalidArgument, "VALIDATION_ERROR")
	if !slices.Contains(fieldViolations(details), "image") || !strings.Contains(errMessage(err), im.allowPattern) {
		t.Errorf("an image not allowed: %v", err)
	}

	alt, err := c.Workspace.CreateWorkspace(admin, &berthv1.CreateWorkspaceRequest{Name: "alt", Path: srv.mkdir(t, "alt"), Image: im.alt})
	if err != nil {
		t.Fatalf("an allowed image: %v", err)
	}
	t.Cleanup(func() { removeContainer(cli, alt.GetWorkspace().GetContainerId()) })
	if w := alt.GetWorkspace(); w.GetImage() != im.alt || w.GetImageId() != im.altID || containerImage(t, cli, w.GetContainerId()) != im.altID {
		t.Errorf("allowed image: image %q, image_id %q, want %s (%s)", w.GetImage(), w.GetImageId(), im.alt, im.altID)
	}

	created, err := c.Workspace.CreateWorkspace(admin, &berthv1.CreateWorkspaceRequest{Name: "w", Path: srv.mkdir(t, "w")})
	if err != nil {
		t.Fatal(err)
	}
	w := created.GetWorkspace()
	t.Cleanup(func() { removeContainer(cli, w.GetContainerId()) })
	if w.GetImage() != im.def || w.GetImageId() != im.defID {
		t.Errorf("created: image %q, image_id %q; want %s (%s)", w.GetImage(), w.GetImageId(), im.def, im.defID)
	}
	started, err := c.Workspace.StartWorkspace(admin, &berthv1.StartWorkspaceRequest{Id: w.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	first := started.GetWorkspace()
	if first.GetImageId() != im.defID || first.GetContainerId() != w.GetContainerId() || containerImage(t, cli, first.GetContainerId()) != im.defID {
		t.Errorf("started: image_id %q, container %s from %s; want the created container from %s",
			first.GetImageId(), first.GetContainerId(), containerImage(t, cli, first.GetContainerId()), im.defID)
	}
	if _, err := c.Workspace.StopWorkspace(admin, &berthv1.StopWorkspaceRequest{Id: w.GetId()}); err != nil {
		t.Fatal(err)
	}

	// The default image's tag moves to the other image.
	if err := cli.ImageTag(t.Context(), im.alt, im.def); err != nil {
		t.Fatal(err)
	}
	restarted, err := c.Workspace.StartWorkspace(admin, &berthv1.StartWorkspaceRequest{Id: w.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	second := restarted.GetWorkspace()
	t.Cleanup(func() { removeContainer(cli, second.GetContainerId()) })
	if second.GetImage() != im.def || second.GetImageId() != im.altID {
		t.Errorf("restarted: image %q, image_id %q; want %s (%s)", second.GetImage(), second.GetImageId(), im.def, im.altID)
	}
	if second.GetContainerId() == first.GetContainerId() || containerImage(t, cli, second.GetContainerId()) != im.altID {
		t.Errorf("restarted in container %s from %s; want a new container from %s", second.GetContainerId(), containerImage(t, cli, second.GetContainerId()), im.altID)
	}
	if _, err := cli.ContainerInspect(t.Context(), first.GetContainerId()); !cerrdefs.IsNotFound(err) {
		t.Errorf("the container made from the old image is still there: %v", err)
	}
	got, err := c.Workspace.GetWorkspace(admin, &berthv1.GetWorkspaceRequest{Id: w.GetId()})
	if err != nil || got.GetWorkspace().GetImageId() != im.altID || got.GetWorkspace().GetContainerId() != second.GetContainerId() {
		t.Errorf("GetWorkspace = %v, %v", got, err)
	}

	// An image that is no longer allowed (stored before the allow-list
	// changed; here written to the store directly) is refused at start,
	// for good, and the workspace says why.
	if _, err := c.Workspace.StopWorkspace(admin, &berthv1.StopWorkspaceRequest{Id: w.GetId()}); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(t.Context(), filepath.Join(srv.DataDir, "berth.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.UpdateWorkspace(t.Context(), w.GetId(), store.WorkspaceUpdate{Image: &im.notAllowedLike}, time.Now().UTC()); err != nil {
		t.Fatal(err)
	}
	_, err = c.Workspace.StartWorkspace(admin, &berthv1.StartWorkspaceRequest{Id: w.GetId()})
	wantCode(t, err, connect.CodeFailedPrecondition, "CONFLICT")
	if !strings.Contains(errMessage(err), "not allowed") {
		t.Errorf("start with an image no longer allowed: %v", err)
	}
	got, err = c.Workspace.GetWorkspace(admin, &berthv1.GetWorkspaceRequest{Id: w.GetId()})
	if err != nil || got.GetWorkspace().GetStatus() != berthv1.WorkspaceStatus_WORKSPACE_STATUS_ERROR || !strings.Contains(got.GetWorkspace().GetStatusReason(), im.notAllowedLike) {
		t.Errorf("after a refused start: %v, %v", got, err)
	}

	// An allowed image the engine does not have: the start fails for good
	// too (FailedPrecondition, not Unavailable), saying which image.
	missing := strings.Replace(im.alt, ":", ":missing-", 1)
	if _, err := c.Workspace.UpdateWorkspace(admin, &berthv1.UpdateWorkspaceRequest{Id: alt.GetWorkspace().GetId(), Image: &missing}); err != nil {
		t.Fatal(err)
	}
	_, err = c.Workspace.StartWorkspace(admin, &berthv1.StartWorkspaceRequest{Id: alt.GetWorkspace().GetId()})
	wantCode(t, err, connect.CodeFailedPrecondition, "CONFLICT")
	if !strings.Contains(errMessage(err), missing) {
		t.Errorf("start with a missing image: %v", err)
	}
}

// TestProcessWorkspacesRecordNoImageID: the process runtime runs no image,
// so a workspace on it records none, while image still shows the image in
// effect (the default) and the image rule still holds.
func TestProcessWorkspacesRecordNoImageID(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	c := srv.clients(protocols[1])
	admin := as(t.Context(), register(t, c, "admin@example.com").GetTokens().GetAccessToken())
	_, err := c.Workspace.CreateWorkspace(admin, &berthv1.CreateWorkspaceRequest{Name: "p", Path: srv.mkdir(t, "p"), Image: "python:3.12"})
	if !slices.Contains(fieldViolations(wantCode(t, err, connect.CodeInvalidArgument, "VALIDATION_ERROR")), "image") {
		t.Errorf("an image not allowed: %v", err)
	}
	created, err := c.Workspace.CreateWorkspace(admin, &berthv1.CreateWorkspaceRequest{Name: "p", Path: srv.mkdir(t, "p")})
	if err != nil {
		t.Fatal(err)
	}
	started, err := c.Workspace.StartWorkspace(admin, &berthv1.StartWorkspaceRequest{Id: created.GetWorkspace().GetId()})
	if err != nil {
		t.Fatal(err)
	}
	if w := started.GetWorkspace(); w.GetImage() != "berth-workspace:latest" || w.GetImageId() != "" || w.GetStatus() != berthv1.WorkspaceStatus_WORKSPACE_STATUS_RUNNING {
		t.Errorf("started on the process runtime: image %q, image_id %q, status %v", w.GetImage(), w.GetImageId(), w.GetStatus())
	}
}
