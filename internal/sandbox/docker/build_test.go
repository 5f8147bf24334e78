package docker_test

import (
	"context"
	"crypto/rand"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"

	"github.com/berthhq/berth/internal/sandbox"
	"github.com/berthhq/berth/internal/sandbox/sandboxtest"
)

// TestBuildRunsUnderTheWorkspaceLimits: a RUN step of a build with network
// "none" sees only the loopback interface, and its memory limit is the one
// asked for (its cgroup's memory.max, or memory.limit_in_bytes on cgroup v1).
func TestBuildRunsUnderTheWorkspaceLimits(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	dir := t.TempDir()
	nonce := rand.Text() // no cached step: the RUN must really run
	writeFiles(t, dir, map[string]string{"Dockerfile": "FROM " + sandboxtest.Image(t) + "\n" +
		"RUN echo " + nonce + " && echo net: $(ls /sys/class/net) && " +
		"echo mem: $(cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes)\n"})
	var out strings.Builder
	id, err := rt.Build(t.Context(), sandbox.BuildSpec{
		Context: openDir(t, dir), Network: "none",
		Limits: sandbox.Limits{MemoryBytes: 96 << 20, NanoCPUs: 5e8}, Out: &out,
	})
	if err != nil {
		t.Fatalf("Build: %v\n%s", err, out.String())
	}
	t.Cleanup(func() { removeImage(t, id) })
	if !strings.Contains(out.String(), "net: lo\n") {
		t.Errorf("the build's RUN step saw other interfaces than lo:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "mem: 100663296\n") {
		t.Errorf("the build's RUN step did not run under a 96 MiB memory limit:\n%s", out.String())
	}
}

// TestBuildCancelStopsItOnTheEngine: cancelling a build's context while a
// RUN step sleeps ends Build, and the engine removes the step's container
// (nothing of the build goes on running).
func TestBuildCancelStopsItOnTheEngine(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	dir := t.TempDir()
	nonce := rand.Text()
	// The shell prints started-42-…, the build's step line only the command.
	writeFiles(t, dir, map[string]string{"Dockerfile": "FROM " + sandboxtest.Image(t) + "\nRUN echo started-$((40+2))-" + nonce + " && sleep 600\n"})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	started := make(chan struct{})
	out := &watch{want: "started-42-" + nonce, seen: func() { close(started) }}
	done := make(chan error, 1)
	go func() {
		_, err := rt.Build(ctx, sandbox.BuildSpec{Context: openDir(t, dir), Network: "none", Out: out})
		done <- err
	}()
	select {
	case <-started:
	case err := <-done:
		t.Fatalf("Build = %v before its step ran\n%s", err, out.text())
	}
	// (The engine may still list it as created while it runs.)
	if n := stepContainers(t, nonce); n != 1 {
		t.Fatalf("%d containers of the build's step, want 1", n)
	}
	cancel()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a cancelled build succeeded")
		}
	case <-time.After(5 * time.Minute):
		t.Fatalf("Build still runs 5 minutes after its context was cancelled\n%s", out.text())
	}
	// The step's container goes away: the engine saw the request end.
	for stepContainers(t, nonce) > 0 {
		if dl, ok := t.Deadline(); ok && time.Until(dl) < 10*time.Second {
			t.Fatal("the cancelled build's step container is still on the engine")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// stepContainers counts the containers whose command holds nonce.
func stepContainers(t *testing.T, nonce string) int {
	t.Helper()
	cs, err := sandboxtest.Engine(t).ContainerList(t.Context(), container.ListOptions{All: true})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, c := range cs {
		if strings.Contains(c.Command, nonce) {
			n++
		}
	}
	return n
}

// watch collects output and calls seen once want appears in it.
type watch struct {
	want string
	seen func()
	mu   sync.Mutex
	buf  strings.Builder
	once sync.Once
}

func (w *watch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if strings.Contains(w.buf.String(), w.want) {
		w.once.Do(w.seen)
	}
	return len(p), nil
}

func (w *watch) text() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func removeImage(t *testing.T, id string) {
	_, _ = sandboxtest.Engine(t).ImageRemove(context.Background(), id, image.RemoveOptions{Force: true, PruneChildren: true})
}
