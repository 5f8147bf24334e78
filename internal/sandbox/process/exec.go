package process

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/berthhq/berth/internal/hostpath"
	"github.com/berthhq/berth/internal/sandbox"
)

// outputDrain is how long Exec waits, once the command has exited, for
// processes it left behind to release its stdout and stderr — the same two
// seconds the Docker engine allows an exec.
const outputDrain = 2 * time.Second

// hostEnv lists the variables of berth's own environment a command gets:
// enough for programs to find themselves and their configuration, and none
// of berth's secrets.
var hostEnv = []string{"PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "TERM"}

// Exec runs spec.Argv on the host in the workspace directory and returns its
// exit code (128+n for a command killed by signal n); a command that exits
// non-zero is a code, not an error. A command that cannot be started is an
// error, as are sandbox.ErrNotFound and sandbox.ErrNotRunning.
//
// spec.Dir is read as a path inside the container: empty or /workspace is
// the workspace directory, /workspace/sub and sub are below it; anything
// outside it is refused. The environment is PATH, HOME and a few other
// variables from berth's own, then the workspace's Spec.Env, then spec.Env.
// spec.User is ignored. Stdout and stderr go to spec.Stdout and spec.Stderr
// as they are written; a nil Stdin reads as empty.
//
// The command runs in its own process group. Cancelling ctx sends SIGTERM
// to the group and SIGKILL after the kill grace; Exec then returns ctx's
// error. A process that leaves the group (setsid) escapes this.
func (r *Runtime) Exec(ctx context.Context, id string, spec sandbox.ExecSpec) (int, error) {
	if len(spec.Argv) == 0 {
		return -1, errors.New("process exec: no command")
	}
	if err := ctx.Err(); err != nil {
		return -1, err
	}
	r.mu.Lock()
	b, ok := r.boxes[id]
	if !ok {
		r.mu.Unlock()
		return -1, fmt.Errorf("process exec %s: %w", id, sandbox.ErrNotFound)
	}
	if b.info.State != sandbox.StateRunning {
		r.mu.Unlock()
		return -1, fmt.Errorf("process exec %s: %w", id, sandbox.ErrNotRunning)
	}
	// The directory is opened again for every command, beneath the
	// workspace directory opened with no symbolic link on the way, and the
	// command changes into that open directory: whatever a command before it
	// did to the tree (replaced a directory with a link to /, say), this one
	// runs inside the workspace or not at all.
	dir, err := openWorkDir(b.spec.HostPath, spec.Dir)
	if err != nil {
		r.mu.Unlock()
		return -1, fmt.Errorf("process exec %s: %w", id, err)
	}
	defer dir.Close()
	// #nosec G204 -- the process runtime runs the argv berth built (never a shell string); it is no sandbox, as its package doc says
	cmd := exec.Command(spec.Argv[0], spec.Argv[1:]...)
	cmd.Dir = hostpath.FDPath(dir)
	var tag []string
	if spec.Tag != "" {
		tag = []string{sandbox.TagVar + "=" + spec.Tag} // last: it wins over spec.Env
	}
	cmd.Env = environ(b.spec.Env, spec.Env, tag)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = spec.Stdin, spec.Stdout, spec.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = outputDrain
	// Started under the lock, so that a concurrent Stop either refuses it
	// or sees its group.
	if err := cmd.Start(); err != nil {
		r.mu.Unlock()
		return -1, fmt.Errorf("process exec %s: %w", id, err)
	}
	g := &group{pgid: cmd.Process.Pid}
	b.groups[g] = struct{}{}
	r.mu.Unlock()

	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err = <-waited:
		// Processes the command left running stay until they end or the
		// workspace stops, as in a container.
		go r.forgetWhenGone(b, g)
		return exitCode(cmd, err)
	case <-ctx.Done():
		endGroups([]*group{g}, r.grace)
		<-waited
		go r.forgetWhenGone(b, g)
		return -1, ctx.Err()
	}
}

// StopTagged stops every process on the host (of those berth may signal)
// whose environment carries the exec tag tag, whoever started it — a berth
// process that died included: SIGTERM, then SIGKILL after the kill grace.
// id and user are not needed on the host; id is accepted for symmetry with
// the Docker runtime.
func (r *Runtime) StopTagged(ctx context.Context, id, user, tag string) error {
	if tag == "" {
		return errors.New("process stop tagged: no tag")
	}
	want := []byte(sandbox.TagVar + "=" + tag)
	find := func() []int {
		entries, _ := os.ReadDir("/proc")
		var pids []int
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || pid == os.Getpid() {
				continue
			}
			env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
			if err != nil {
				continue // gone, or not ours to read
			}
			for kv := range bytes.SplitSeq(env, []byte{0}) {
				if bytes.Equal(kv, want) {
					pids = append(pids, pid)
					break
				}
			}
		}
		return pids
	}
	signal := func(sig syscall.Signal) bool {
		pids := find()
		for _, pid := range pids {
			_ = syscall.Kill(pid, sig)
		}
		return len(pids) > 0
	}
	if !signal(syscall.SIGTERM) {
		return nil
	}
	deadline := time.Now().Add(r.grace)
	for time.Now().Before(deadline) {
		if len(find()) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	signal(syscall.SIGKILL)
	return nil
}

// forgetWhenGone drops g from b once no process is left in it.
func (r *Runtime) forgetWhenGone(b *box, g *group) {
	for g.alive() {
		time.Sleep(500 * time.Millisecond)
	}
	r.mu.Lock()
	delete(b.groups, g)
	r.mu.Unlock()
}

// exitCode reads the exit code of a command that has been waited for.
func exitCode(cmd *exec.Cmd, err error) (int, error) {
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) && !errors.Is(err, exec.ErrWaitDelay) {
		return -1, fmt.Errorf("process exec: %w", err)
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal()), nil
	}
	return cmd.ProcessState.ExitCode(), nil
}

// openWorkDir opens an exec's working directory, a path inside the
// container (empty, /workspace, /workspace/sub or sub), on the host: the
// workspace directory hostPath with no symbolic link on the way, then the
// directory below it without leaving it (hostpath.OpenBeneath).
func openWorkDir(hostPath, dir string) (*os.File, error) {
	rel := dir
	if filepath.IsAbs(dir) {
		r, err := filepath.Rel(sandbox.MountPath, filepath.Clean(dir))
		if err != nil || r == ".." || strings.HasPrefix(r, ".."+string(filepath.Separator)) {
			return nil, fmt.Errorf("working directory %q is outside %s", dir, sandbox.MountPath)
		}
		rel = r
	}
	wd, err := hostpath.OpenIn(hostPath, filepath.Clean(rel))
	if errors.Is(err, hostpath.ErrRoot) {
		return nil, fmt.Errorf("the workspace directory: %w", err)
	}
	if err != nil {
		return nil, fmt.Errorf("working directory %q: %w", dir, err)
	}
	return wd, nil
}

// environ builds a command's environment: the allowed host variables, then
// each list in turn, later values overriding earlier ones.
func environ(lists ...[]string) []string {
	var env []string
	for _, k := range hostEnv {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	for _, l := range lists {
		env = append(env, l...)
	}
	// os/exec keeps the last value of a repeated variable.
	return env
}
