package docker_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/mount"

	"github.com/berthhq/berth/internal/sandbox"
	"github.com/berthhq/berth/internal/sandbox/docker"
	"github.com/berthhq/berth/internal/sandbox/sandboxtest"
)

// killGrace keeps cancelled execs quick in tests.
const killGrace = time.Second

func newRuntime(t testing.TB) *docker.Runtime {
	t.Helper()
	rt, err := docker.New(t.Context(), docker.WithClient(sandboxtest.Engine(t)), docker.WithKillGrace(killGrace))
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

// baseSpec is what every test container is made from: the test image, a
// non-root user, no network, and limits.
func baseSpec(t testing.TB) sandbox.Spec {
	return sandbox.Spec{
		Image:   sandboxtest.Image(t),
		User:    "1000:1000",
		Network: "none",
		Limits:  sandbox.Limits{MemoryBytes: 256 << 20, NanoCPUs: 500_000_000, Pids: 128},
	}
}

func TestSuite(t *testing.T) {
	t.Parallel()
	sandboxtest.Run(t, func(t *testing.T) sandboxtest.Runtime { return newRuntime(t) }, baseSpec(t))
}

func TestCreateConfiguresContainer(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	base := baseSpec(t)
	base.CapAdd = []string{"CHOWN"}
	base.Env = []string{"BERTH_TEST=1"}
	id, spec := sandboxtest.CreateContainer(t, rt, base)

	c, err := sandboxtest.Engine(t).ContainerInspect(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.Name, "/berth-"+spec.WorkspaceID; got != want {
		t.Errorf("name %q, want %q", got, want)
	}
	if got := c.Config.Labels; got[sandbox.LabelWorkspace] != spec.WorkspaceID || got[sandbox.LabelManaged] != "true" {
		t.Errorf("labels %v, want %s=%s and %s=true", got, sandbox.LabelWorkspace, spec.WorkspaceID, sandbox.LabelManaged)
	}
	if c.Config.Image != spec.Image || c.Config.User != "1000:1000" || c.Config.WorkingDir != sandbox.MountPath {
		t.Errorf("image %q, user %q, working dir %q", c.Config.Image, c.Config.User, c.Config.WorkingDir)
	}
	if !slices.Contains(c.Config.Env, "BERTH_TEST=1") {
		t.Errorf("env %v lacks BERTH_TEST=1", c.Config.Env)
	}
	h := c.HostConfig
	if len(h.Mounts) != 1 || h.Mounts[0].Type != mount.TypeBind || h.Mounts[0].Source != spec.HostPath ||
		h.Mounts[0].Target != sandbox.MountPath || h.Mounts[0].ReadOnly {
		t.Errorf("mounts %+v, want %s bound read-write at %s", h.Mounts, spec.HostPath, sandbox.MountPath)
	}
	if h.Memory != 256<<20 || h.MemorySwap != 256<<20 || h.NanoCPUs != 500_000_000 || h.PidsLimit == nil || *h.PidsLimit != 128 {
		t.Errorf("limits: memory %d, swap %d, nano CPUs %d, pids %v", h.Memory, h.MemorySwap, h.NanoCPUs, h.PidsLimit)
	}
	if !slices.Contains(h.SecurityOpt, "no-new-privileges:true") {
		t.Errorf("security options %v lack no-new-privileges", h.SecurityOpt)
	}
	// The engine spells capabilities with or without CAP_, by version.
	if !slices.Equal(h.CapDrop, []string{"ALL"}) || len(h.CapAdd) != 1 || strings.TrimPrefix(h.CapAdd[0], "CAP_") != "CHOWN" {
		t.Errorf("capabilities: drop %v, add %v; want ALL and CHOWN", h.CapDrop, h.CapAdd)
	}
	if h.NetworkMode != "none" {
		t.Errorf("network mode %q, want none", h.NetworkMode)
	}
	if !h.RestartPolicy.IsNone() {
		t.Errorf("restart policy %+v, want none", h.RestartPolicy)
	}
	if h.Init == nil || !*h.Init {
		t.Error("no init process")
	}

	// And from inside, as the processes see it.
	if err := rt.Start(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	if r := sandboxtest.Exec(t, rt, id, "id", "-u"); strings.TrimSpace(r.Stdout) != "1000" {
		t.Errorf("id -u = %q, want 1000", r.Stdout)
	}
	status := sandboxtest.Exec(t, rt, id, "cat", "/proc/self/status").Stdout
	for _, want := range []string{"NoNewPrivs:\t1", "CapEff:\t0000000000000000", "CapBnd:\t0000000000000001"} {
		if !strings.Contains(status, want+"\n") {
			t.Errorf("/proc/self/status lacks %q:\n%s", want, status)
		}
	}
	if r := sandboxtest.Exec(t, rt, id, "ls", "/sys/class/net"); strings.TrimSpace(r.Stdout) != "lo" {
		t.Errorf("network interfaces %q, want only lo", r.Stdout)
	}
	if r := sandboxtest.Exec(t, rt, id, "cat", "/sys/fs/cgroup/pids/pids.max"); r.Code == 0 && strings.TrimSpace(r.Stdout) != "128" {
		t.Errorf("pids.max = %q, want 128", r.Stdout)
	}
	if r := sandboxtest.Exec(t, rt, id, "sh", "-c", "echo hi > from-inside && ls -ln from-inside"); r.Code != 0 {
		t.Fatalf("writing to %s: %+v", sandbox.MountPath, r)
	}
	if _, err := os.Stat(filepath.Join(spec.HostPath, "from-inside")); err != nil {
		t.Fatalf("the file written in %s is not in the project directory: %v", sandbox.MountPath, err)
	}
}

func TestCreateRefusesBadSpecs(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	good := sandboxtest.NewSpec(t, baseSpec(t))
	for name, mutate := range map[string]func(*sandbox.Spec){
		"no workspace id":   func(s *sandbox.Spec) { s.WorkspaceID = "" },
		"no image":          func(s *sandbox.Spec) { s.Image = "" },
		"relative path":     func(s *sandbox.Spec) { s.HostPath = "relative" },
		"missing directory": func(s *sandbox.Spec) { s.HostPath = filepath.Join(s.HostPath, "missing") },
		"unknown image":     func(s *sandbox.Spec) { s.Image = "berth-test/no-such-image:1" },
	} {
		spec := good
		mutate(&spec)
		id, err := rt.Create(t.Context(), spec)
		if err == nil {
			_ = rt.Remove(context.Background(), id)
			t.Errorf("%s: Create succeeded", name)
		}
	}
}

// TestRemovedBehindBerthsBack removes a container through the engine
// directly: the event stream reports it missing, and Inspect cannot find it.
func TestRemovedBehindBerthsBack(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	events, errs := rt.Events(ctx)
	id, spec := sandboxtest.StartContainer(t, rt, baseSpec(t))
	sandboxtest.WaitEvents(t, events, errs, id, sandbox.StateRunning)

	if err := sandboxtest.Engine(t).ContainerRemove(t.Context(), id, container.RemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	got := sandboxtest.WaitEvents(t, events, errs, id, sandbox.StateMissing)
	if got[len(got)-1] != sandbox.StateMissing {
		t.Errorf("states %v", got)
	}
	if _, err := rt.Inspect(t.Context(), id); !errors.Is(err, sandbox.ErrNotFound) {
		t.Errorf("Inspect: %v, want ErrNotFound", err)
	}
	infos, err := rt.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range infos {
		if in.WorkspaceID == spec.WorkspaceID {
			t.Errorf("List still has %+v", in)
		}
	}
}

func TestEventsCarryWorkspace(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	events, _ := rt.Events(ctx)
	id, spec := sandboxtest.CreateContainer(t, rt, baseSpec(t))
	for ev := range events {
		if ev.ContainerID == id {
			if ev.WorkspaceID != spec.WorkspaceID || ev.State != sandbox.StateCreated {
				t.Errorf("event %+v, want created for workspace %s", ev, spec.WorkspaceID)
			}
			return
		}
	}
}

func TestExecAsAnotherUser(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	id, _ := sandboxtest.StartContainer(t, rt, baseSpec(t))
	var out strings.Builder
	code, err := rt.Exec(t.Context(), id, sandbox.ExecSpec{Argv: []string{"id", "-u"}, User: "0", Stdout: &out})
	if err != nil || code != 0 || strings.TrimSpace(out.String()) != "0" {
		t.Errorf("id -u as user 0 = %d, %v, %q", code, err, out.String())
	}
	// Cancelling a root exec in a container whose user is not root.
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = rt.Exec(ctx, id, sandbox.ExecSpec{Argv: []string{"sh", "-c", "sleep 987654 & wait"}, User: "0"})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Exec after its deadline: %v", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("cancelling took %v", d)
	}
	if r := sandboxtest.Exec(t, rt, id, "ps", "-e", "-o", "pid,stat,args"); strings.Contains(r.Stdout, "sleep 987654") {
		t.Errorf("the root exec's child survived:\n%s", r.Stdout)
	}
}

func TestExecMissingCommand(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	id, _ := sandboxtest.StartContainer(t, rt, baseSpec(t))
	var out strings.Builder
	code, err := rt.Exec(t.Context(), id, sandbox.ExecSpec{Argv: []string{"berth-no-such-command"}, Stdout: &out, Stderr: &out})
	if err == nil && code != 126 && code != 127 {
		t.Errorf("Exec of a missing command = %d, nil; want an error or 126/127 (output %q)", code, out.String())
	}
}

func TestBuild(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"Dockerfile": "FROM scratch\nCOPY hello.txt /\nCOPY sub /sub\n",
		"hello.txt":  "hello\n",
		"sub/a.txt":  "a\n",
	})
	if err := os.Symlink("../hello.txt", filepath.Join(dir, "sub", "link")); err != nil {
		t.Fatal(err)
	}
	tag := "berth-test/build:" + strings.ToLower(t.Name())
	var out strings.Builder
	id, err := rt.Build(t.Context(), sandbox.BuildSpec{Context: openDir(t, dir), Tag: tag, Out: &out})
	if err != nil {
		t.Fatalf("Build: %v\n%s", err, out.String())
	}
	t.Cleanup(func() {
		_, _ = sandboxtest.Engine(t).ImageRemove(context.Background(), tag, image.RemoveOptions{Force: true, PruneChildren: true})
	})
	if !strings.HasPrefix(id, "sha256:") {
		t.Errorf("image id %q", id)
	}
	for _, want := range []string{"Step 1/3 : FROM scratch", "Step 2/3 : COPY hello.txt /", "Successfully tagged " + tag} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("build output lacks %q:\n%s", want, out.String())
		}
	}
	img, err := sandboxtest.Engine(t).ImageInspect(t.Context(), tag)
	if err != nil || img.ID != id {
		t.Errorf("ImageInspect(%s) = %s, %v; want %s", tag, img.ID, err, id)
	}
}

func TestBuildFailure(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"build/Dockerfile": "FROM scratch\nCOPY missing.txt /\n"})
	var out strings.Builder
	_, err := rt.Build(t.Context(), sandbox.BuildSpec{Context: openDir(t, dir), Dockerfile: "build/Dockerfile", Out: &out})
	if err == nil || !strings.Contains(err.Error(), "missing.txt") {
		t.Errorf("Build = %v, want an error naming missing.txt\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "Step 1/2") {
		t.Errorf("output before the failure was not streamed: %q", out.String())
	}
}

func TestBuildRefusesWhatItCannotSend(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	outside := t.TempDir()
	for name, link := range map[string]string{
		"relative escape": "../../etc/passwd",
		"absolute":        "/etc/passwd",
		"through a link":  "self/..",
	} {
		dir := t.TempDir()
		writeFiles(t, dir, map[string]string{"Dockerfile": "FROM scratch\n"})
		if err := os.Symlink(".", filepath.Join(dir, "self")); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(link, filepath.Join(dir, "link")); err != nil {
			t.Fatal(err)
		}
		_, err := rt.Build(t.Context(), sandbox.BuildSpec{Context: openDir(t, dir)})
		if err == nil || !strings.Contains(err.Error(), "outside the build context") {
			t.Errorf("%s (%s): Build = %v, want a refusal", name, link, err)
		}
	}
	if _, err := rt.Build(t.Context(), sandbox.BuildSpec{Context: openDir(t, outside), Dockerfile: "../Dockerfile"}); err == nil {
		t.Error("a Dockerfile outside the context was accepted")
	}
}

func TestNewWithoutEngine(t *testing.T) {
	t.Parallel()
	_, err := docker.New(t.Context(), docker.WithHost("unix://"+filepath.Join(t.TempDir(), "no.sock")))
	if err == nil || !strings.Contains(err.Error(), "no engine answers at unix://") {
		t.Errorf("New = %v, want an error saying no engine answers", err)
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	v, err := newRuntime(t).Version(t.Context())
	if err != nil || v == "" {
		t.Errorf("Version = %q, %v", v, err)
	}
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// openDir opens dir for a build context and closes it when the test ends.
func openDir(t *testing.T, dir string) *os.File {
	t.Helper()
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}
