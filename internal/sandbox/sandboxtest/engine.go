package sandboxtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/client"
)

// EngineDir holds the Docker engine Engine starts when none answers: its
// socket (docker.sock), data root (so images persist between runs), exec
// root, pid file, log (dockerd.log) and the lock that lets only one test
// binary start it. The engine is left running for the next test binary and
// the next run; stop it with `kill $(cat /tmp/berth-test-dockerd/dockerd.pid)`.
const EngineDir = "/tmp/berth-test-dockerd"

// engineStartTimeout bounds how long a starting engine may take to answer.
const engineStartTimeout = 60 * time.Second

var engine struct {
	once sync.Once
	opts []client.Opt
	err  error
}

// Engine returns a client of a Docker engine that answers, closed when the
// test ends. It tries, in order: the engine the environment names
// (DOCKER_HOST, or the default socket); one a test binary started before,
// at EngineDir/docker.sock; and, when dockerd is installed and the test
// runs as root, a new one it starts there:
//
//	dockerd --bridge=none --iptables=false --ip6tables=false --data-root … --exec-root … -H unix://…
//
// Test binaries running in parallel take a lock before starting it, so at
// most one is started, and all of them share it. When there is no engine
// and none can be started, the test is skipped with the reason — unless
// CI=true, where a missing engine fails the test.
func Engine(t testing.TB) *client.Client {
	t.Helper()
	engine.once.Do(func() { engine.opts, engine.err = findEngine() })
	if engine.err != nil {
		unavailable(t, "no Docker engine: %v", engine.err)
	}
	cli, err := client.NewClientWithOpts(engine.opts...)
	if err != nil {
		t.Fatalf("docker client: %v", err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

// unavailable skips the test, or fails it under CI=true, where every real
// service the tests need must be there.
func unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf(format+" (CI=true: a missing engine fails the run)", args...)
	}
	t.Skipf(format, args...)
}

func findEngine() ([]client.Opt, error) {
	fromEnv := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	envErr := ping(fromEnv)
	if envErr == nil {
		return fromEnv, nil
	}
	own := []client.Opt{client.WithHost("unix://" + filepath.Join(EngineDir, "docker.sock")), client.WithAPIVersionNegotiation()}
	if ping(own) == nil {
		return own, nil
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("none answers (%v), and only root may start dockerd", envErr)
	}
	dockerd, err := exec.LookPath("dockerd")
	if err != nil {
		return nil, fmt.Errorf("none answers (%v), and dockerd is not installed (Debian: docker.io)", envErr)
	}
	if err := startEngine(dockerd, own); err != nil {
		return nil, fmt.Errorf("none answered (%v), and starting one failed: %w", envErr, err)
	}
	return own, nil
}

// startEngine starts dockerd in EngineDir unless another test binary did
// while this one waited for the lock.
func startEngine(dockerd string, opts []client.Opt) error {
	if err := os.MkdirAll(EngineDir, 0o700); err != nil {
		return err
	}
	unlock, err := lockFile(filepath.Join(EngineDir, "lock"))
	if err != nil {
		return err
	}
	defer unlock()
	if ping(opts) == nil {
		return nil
	}
	logPath := filepath.Join(EngineDir, "dockerd.log")
	// #nosec G304 -- G304: a file this test support made or was pointed at by the test
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer log.Close()
	// #nosec G204 -- G204: test support starting the service binaries and commands it builds the argv of
	cmd := exec.Command(dockerd,
		"--bridge=none", "--iptables=false", "--ip6tables=false",
		"--data-root", filepath.Join(EngineDir, "data"),
		"--exec-root", filepath.Join(EngineDir, "exec"),
		"--pidfile", filepath.Join(EngineDir, "dockerd.pid"),
		"-H", "unix://"+filepath.Join(EngineDir, "docker.sock"),
		// Its own containerd namespaces, should it share a containerd
		// with the host's engine.
		"--containerd-namespace", "berth-test",
		"--containerd-plugins-namespace", "berth-test-plugins",
	)
	cmd.Stdout, cmd.Stderr = log, log
	// Its own session: it outlives this test binary and is not hit by
	// signals sent to the test's process group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(engineStartTimeout)
	for {
		if ping(opts) == nil {
			return nil
		}
		select {
		case err := <-exited:
			return fmt.Errorf("dockerd exited (%v); see %s", err, logPath)
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("dockerd did not answer within %v; see %s", engineStartTimeout, logPath)
		}
	}
}

// ping reports whether an engine answers with these client options.
func ping(opts []client.Opt) error {
	cli, err := client.NewClientWithOpts(opts...)
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = cli.Ping(ctx)
	return err
}

// lockFile takes an exclusive lock shared by every process on the machine,
// waiting for it, and returns its release.
func lockFile(path string) (func(), error) {
	// #nosec G304 -- G304: a file this test support made or was pointed at by the test
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		// #nosec G104 -- G104: best-effort cleanup or output in test support; a failure shows in the test
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	// #nosec G104 -- G104: best-effort cleanup or output in test support; a failure shows in the test
	return func() { f.Close() }, nil
}
