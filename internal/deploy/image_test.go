package deploy

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/berthhq/berth/internal/config"
	"github.com/berthhq/berth/internal/sandbox"
	"github.com/berthhq/berth/internal/sandbox/docker"
	"github.com/berthhq/berth/internal/sandbox/sandboxtest"
)

// hostCABundle is the CA bundle the test puts where the build stage's
// /etc/ssl/certs/ca-certificates.crt would come from.
const hostCABundle = "/etc/ssl/certs/ca-certificates.crt"

// finalStageDockerfile rewrites the real Dockerfile's final stage for a
// context holding the files the build stage would have made: each
// `COPY --from=build SRC DST` becomes `COPY [its other flags] FILE DST`, FILE
// being what files maps DST to. Every other line is kept as it is, so the
// image built is the real final stage. A COPY --from the test cannot map
// fails the test.
func finalStageDockerfile(t testing.TB, text string, files map[string]string) string {
	t.Helper()
	stage := finalStage(t, text)
	if stage[0].args != "scratch" {
		t.Fatalf("Dockerfile: the final stage is FROM %s; the test can build only FROM scratch without a registry", stage[0].args)
	}
	var b strings.Builder
	for _, in := range stage {
		line := in.cmd + " " + in.args
		if in.cmd == "COPY" && strings.Contains(in.args, "--from=") {
			fields := strings.Fields(in.args)
			var flags []string
			for _, f := range fields[:len(fields)-2] {
				if !strings.HasPrefix(f, "--from=") {
					flags = append(flags, f)
				}
			}
			dst := fields[len(fields)-1]
			src, ok := files[dst]
			if !ok || len(fields) != len(flags)+3 {
				t.Fatalf("Dockerfile: %s: the test prepares no file for %s", line, dst)
			}
			line = strings.Join(append(append([]string{"COPY"}, flags...), src, dst), " ")
		}
		b.WriteString(line + "\n")
	}
	return b.String()
}

func TestFinalStageDockerfile(t *testing.T) {
	t.Parallel()
	got := finalStageDockerfile(t, `FROM golang AS build
RUN make \
    things
FROM scratch
# comment
COPY --from=build /out/berth /berth
COPY --from=build --chown=1:2 /out/data /data
ENV A=b
`, map[string]string{"/berth": "berth", "/data": "data"})
	want := "FROM scratch\nCOPY berth /berth\nCOPY --chown=1:2 data /data\nENV A=b\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// TestImageRunsAndIsHealthy proves the Dockerfile's final stage without a
// registry: it builds berth on the host, builds the final stage around it on
// the local engine, runs the image with no network, and checks the image's
// own HEALTHCHECK, `berth healthcheck` by exec, the user, and a graceful
// exit on SIGTERM.
func TestImageRunsAndIsHealthy(t *testing.T) {
	t.Parallel()
	cli := sandboxtest.Engine(t)
	ctx, cancel := context.WithTimeout(context.Background(), sandboxtest.Within(t))
	defer cancel()

	// The build context: what the build stage would have made.
	dir := t.TempDir()
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", filepath.Join(dir, "berth"), "./cmd/berth")
	build.Dir = repoRoot(t)
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ca, err := os.ReadFile(hostCABundle)
	if err != nil {
		t.Fatalf("no CA bundle on this host (Debian: ca-certificates, installed by .ci/run): %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ca-certificates.crt"), ca, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "data"), 0o755); err != nil { // COPY --chown gives it to 65532
		t.Fatal(err)
	}
	dockerfile := finalStageDockerfile(t, readRepoFile(t, "Dockerfile"), map[string]string{
		"/etc/ssl/certs/ca-certificates.crt": "ca-certificates.crt",
		"/berth":                             "berth",
		"/data":                              "data",
	})
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		t.Fatal(err)
	}

	rt, err := docker.New(ctx, docker.WithClient(cli))
	if err != nil {
		t.Fatal(err)
	}
	tag := "berth-deploy-test:" + randomHex(t)
	ctxDir, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ctxDir.Close()
	var buildOut bytes.Buffer
	imageID, err := rt.Build(ctx, sandbox.BuildSpec{Context: ctxDir, Dockerfile: "Dockerfile", Tag: tag, Out: &buildOut})
	if err != nil {
		t.Fatalf("docker build of\n%s\n%v\n%s", dockerfile, err, buildOut.String())
	}
	t.Cleanup(func() {
		if _, err := cli.ImageRemove(context.Background(), imageID, image.RemoveOptions{Force: true, PruneChildren: true}); err != nil {
			t.Errorf("removing image %s: %v", tag, err)
		}
	})

	img, err := cli.ImageInspect(ctx, imageID)
	if err != nil {
		t.Fatal(err)
	}
	if img.Config == nil || img.Config.Healthcheck == nil {
		t.Fatal("the image has no HEALTHCHECK")
	}
	if want := []string{"CMD", "/berth", "healthcheck"}; !slices.Equal(img.Config.Healthcheck.Test, want) {
		t.Errorf("HEALTHCHECK = %q, want %q", img.Config.Healthcheck.Test, want)
	}
	if img.Config.User != "65532:65532" {
		t.Errorf("image USER = %q, want 65532:65532", img.Config.User)
	}
	if _, ok := img.Config.Volumes["/data"]; !ok {
		t.Errorf("image volumes = %v, want /data", img.Config.Volumes)
	}
	if s := img.Config.StopSignal; s != "" && s != "SIGTERM" {
		t.Errorf("image STOPSIGNAL = %q, want SIGTERM (the default)", s)
	}

	// The shutdown the container gets: berth's default --shutdown-timeout,
	// as the image does not set one.
	defaults, err := config.LoadEnv(nil, nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range img.Config.Env {
		if strings.HasPrefix(kv, "BERTH_SHUTDOWN_TIMEOUT=") {
			t.Fatalf("the image sets %s; the test assumes the default", kv)
		}
	}

	// Run it as it is, but for a faster health check interval.
	hc := container.HealthConfig{Test: img.Config.Healthcheck.Test, Interval: time.Second, Timeout: 3 * time.Second, Retries: 3}
	created, err := cli.ContainerCreate(ctx,
		&container.Config{Image: imageID, Healthcheck: &hc},
		&container.HostConfig{NetworkMode: "none"},
		nil, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	id := created.ID
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("container log:\n%s", containerLogs(cli, id))
		}
		if err := cli.ContainerRemove(context.Background(), id, container.RemoveOptions{Force: true, RemoveVolumes: true}); err != nil {
			t.Errorf("removing container: %v", err)
		}
	})
	if err := cli.ContainerStart(ctx, id, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}

	// The image's own HEALTHCHECK reports healthy (waiting as long as the
	// test's deadline allows: a loaded machine starts it slowly).
	deadline, _ := ctx.Deadline()
	for {
		ins, err := cli.ContainerInspect(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if !ins.State.Running {
			t.Fatalf("the container stopped (exit code %d) before it became healthy", ins.State.ExitCode)
		}
		if ins.State.Health != nil && ins.State.Health.Status == container.Healthy {
			if ins.Config.User != "65532:65532" {
				t.Errorf("container user = %q, want 65532:65532", ins.Config.User)
			}
			break
		}
		if ins.State.Health != nil && ins.State.Health.Status == container.Unhealthy || time.Now().After(deadline) {
			t.Fatalf("container health: %+v", ins.State.Health)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// `berth healthcheck` by exec, as the user the image runs as.
	code, out := execIn(ctx, t, cli, id, "/berth", "healthcheck")
	if code != 0 {
		t.Errorf("berth healthcheck in the container exited %d: %s", code, out)
	}

	// SIGTERM: berth shuts down gracefully within its shutdown timeout,
	// before the engine would SIGKILL it (exit code 137), and exits 0.
	secs := int(defaults.ShutdownTimeout / time.Second)
	if err := cli.ContainerStop(ctx, id, container.StopOptions{Timeout: &secs}); err != nil {
		t.Fatal(err)
	}
	ins, err := cli.ContainerInspect(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if ins.State.Running || ins.State.ExitCode != 0 || ins.State.OOMKilled {
		t.Errorf("after SIGTERM: running %v, exit code %d, OOM killed %v; want exit code 0", ins.State.Running, ins.State.ExitCode, ins.State.OOMKilled)
	}
	if logs := containerLogs(cli, id); !strings.Contains(logs, "starting berth") {
		t.Errorf("the container's log does not show berth starting:\n%s", logs)
	}
}

// execIn runs argv in the container and returns its exit code and output.
func execIn(ctx context.Context, t testing.TB, cli *client.Client, id string, argv ...string) (int, string) {
	t.Helper()
	ex, err := cli.ContainerExecCreate(ctx, id, container.ExecOptions{Cmd: argv, AttachStdout: true, AttachStderr: true})
	if err != nil {
		t.Fatal(err)
	}
	att, err := cli.ContainerExecAttach(ctx, ex.ID, container.ExecAttachOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	_, err = stdcopy.StdCopy(&out, &out, att.Reader)
	att.Close()
	if err != nil {
		t.Fatal(err)
	}
	for {
		ins, err := cli.ContainerExecInspect(ctx, ex.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !ins.Running {
			return ins.ExitCode, out.String()
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func containerLogs(cli *client.Client, id string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rc, err := cli.ContainerLogs(ctx, id, container.LogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer rc.Close()
	var out bytes.Buffer
	if _, err := stdcopy.StdCopy(&out, &out, rc); err != nil {
		fmt.Fprintf(&out, "(reading the log: %v)", err)
	}
	return out.String()
}

func randomHex(t testing.TB) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
