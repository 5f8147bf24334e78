package docker

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/berthhq/berth/internal/sandbox"
)

// markerVar is the environment variable that tags every process an exec
// starts, and every process those start: the environment is inherited, so
// it is how a cancelled exec finds its whole process tree, including
// children that were orphaned or moved to another process group.
const markerVar = "BERTH_EXEC"

// stopScript stops one exec's processes from inside the container. It runs
// as the exec's own user, who may signal them and read their
// /proc/<pid>/environ; root would not do, as the container has neither
// CAP_KILL nor CAP_SYS_PTRACE. Its arguments are the marker
// ("BERTH_EXEC=<id>") and the grace period in twentieths of a second and in
// whole seconds (for a sleep without fractions). It sends SIGTERM to every
// process whose environment holds the marker, waits up to the grace period
// for them to go, then sends SIGKILL to the survivors. It is a constant:
// the marker travels as an argument, never inside the script.
const stopScript = `marker=$1
if sleep 0.01 2>/dev/null; then tick=0.05 n=$2; else tick=1 n=$3; fi
pids() {
	for f in /proc/[0-9]*/environ; do
		if tr '\0' '\n' 2>/dev/null <"$f" | grep -qxF -e "$marker"; then
			f=${f#/proc/}
			echo "${f%/environ}"
		fi
	done
}
p=$(pids)
[ -n "$p" ] || exit 0
kill -TERM $p 2>/dev/null
i=0
while [ "$i" -lt "$n" ]; do
	sleep "$tick"
	p=$(pids)
	[ -n "$p" ] || exit 0
	i=$((i + 1))
done
for round in 1 2 3; do
	kill -KILL $p 2>/dev/null
	sleep "$tick"
	p=$(pids)
	[ -n "$p" ] || exit 0
done
echo "still alive after SIGKILL:" $p >&2
exit 1
`

// stopSlack is how long, beyond the grace period, stopping an exec may take
// before berth gives up on it.
const stopSlack = 15 * time.Second

// drainTimeout bounds the wait for a stopped exec's output to end.
const drainTimeout = 5 * time.Second

// Exec runs spec.Argv in the running container id and returns its exit
// code; a command that exits non-zero is a code, not an error. Errors are
// for failures to run it: sandbox.ErrNotFound, sandbox.ErrNotRunning, an
// engine that fails. (A command the container cannot start is reported by
// the engine as exit code 126 or 127 with its message on stdout, as with
// docker exec.)
//
// spec.Dir defaults to /workspace; a relative Dir is below it.
//
// Stdout and stderr are demultiplexed and written to spec.Stdout and
// spec.Stderr as they arrive (a nil writer discards). spec.Stdin, when
// given, is copied to the command and then closed; otherwise the command's
// stdin is closed from the start. Exec does not wait for a Stdin that never
// returns once the command has ended.
//
// Cancelling ctx stops the command and everything it started: every process
// carrying this exec's marker in its environment gets SIGTERM, then SIGKILL
// after the kill grace (see WithKillGrace). Exec then returns ctx's error.
// A process that deliberately clears its environment escapes this; stopping
// the container ends it.
func (r *Runtime) Exec(ctx context.Context, id string, spec sandbox.ExecSpec) (int, error) {
	if len(spec.Argv) == 0 {
		return -1, errors.New("docker exec: no command")
	}
	marker, err := newMarker()
	if err != nil {
		return -1, err
	}
	env := make([]string, 0, len(spec.Env)+2)
	for _, kv := range spec.Env {
		if !strings.HasPrefix(kv, markerVar+"=") && !strings.HasPrefix(kv, sandbox.TagVar+"=") {
			env = append(env, kv)
		}
	}
	env = append(env, marker)
	if spec.Tag != "" {
		env = append(env, sandbox.TagVar+"="+spec.Tag)
	}
	dir := spec.Dir
	if !path.IsAbs(dir) {
		dir = path.Join(sandbox.MountPath, dir) // "" and "sub" are in the project
	}
	created, err := r.cli.ContainerExecCreate(ctx, id, container.ExecOptions{
		User:         spec.User,
		AttachStdin:  spec.Stdin != nil,
		AttachStdout: true,
		AttachStderr: true,
		Env:          env,
		WorkingDir:   dir,
		Cmd:          spec.Argv,
	})
	if err != nil {
		return -1, execError(id, err)
	}
	att, err := r.cli.ContainerExecAttach(ctx, created.ID, container.ExecAttachOptions{})
	if err != nil {
		if ctx.Err() != nil {
			// The command may have started before the attach gave up.
			return -1, r.cancelled(ctx, id, spec.User, marker)
		}
		return -1, execError(id, err)
	}
	defer att.Close()
	if spec.Stdin != nil {
		go func() {
			_, _ = io.Copy(att.Conn, spec.Stdin)
			_ = att.CloseWrite()
		}()
	}
	copied := make(chan error, 1)
	go func() {
		_, err := stdcopy.StdCopy(orDiscard(spec.Stdout), orDiscard(spec.Stderr), att.Reader)
		copied <- err
	}()

	select {
	case err := <-copied:
		if err != nil && ctx.Err() == nil {
			return -1, fmt.Errorf("docker exec %s: reading output: %w", short(id), err)
		}
	case <-ctx.Done():
		err := r.cancelled(ctx, id, spec.User, marker)
		// Once every process holding the output is gone the stream ends;
		// closing it is the backstop. Either way the copy has returned
		// before Exec does, so the writers are not used afterwards.
		select {
		case <-copied:
		case <-time.After(drainTimeout):
			att.Close()
			<-copied
		}
		return -1, err
	}
	code, err := r.waitExit(ctx, id, created.ID)
	if err != nil && ctx.Err() != nil {
		return -1, r.cancelled(ctx, id, spec.User, marker)
	}
	return code, err
}

// waitExit waits for the exec to be reported finished and returns its exit
// code. The output can end before the command does (it may close its
// stdout and stderr and go on), so this polls, with a growing interval.
func (r *Runtime) waitExit(ctx context.Context, id, execID string) (int, error) {
	wait := 2 * time.Millisecond
	for {
		ins, err := r.cli.ContainerExecInspect(ctx, execID)
		if err != nil {
			return -1, execError(id, err)
		}
		if !ins.Running {
			return ins.ExitCode, nil
		}
		select {
		case <-ctx.Done():
			return -1, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 250*time.Millisecond)
	}
}

// cancelled stops the processes of a cancelled exec and returns the error
// Exec reports: ctx's, with the reason if stopping them failed.
func (r *Runtime) cancelled(ctx context.Context, id, user, marker string) error {
	if err := r.stopExec(context.WithoutCancel(ctx), id, user, marker); err != nil {
		return fmt.Errorf("%w (and stopping the command failed: %v)", ctx.Err(), err)
	}
	return ctx.Err()
}

// StopTagged stops, as Exec's cancellation does (SIGTERM, then SIGKILL
// after the kill grace), every process in container id whose environment
// carries the exec tag tag, whoever started it; user is the user the
// processes run as (empty: the container's). A container that is gone or
// stopped has none left, which is success.
func (r *Runtime) StopTagged(ctx context.Context, id, user, tag string) error {
	if tag == "" {
		return errors.New("docker stop tagged: no tag")
	}
	return r.stopExec(ctx, id, user, sandbox.TagVar+"="+tag)
}

// stopExec runs stopScript in the container for one exec's marker and
// waits for it. A container that is gone or stopped has no processes left,
// so that is success.
func (r *Runtime) stopExec(ctx context.Context, id, user, marker string) error {
	ctx, cancel := context.WithTimeout(ctx, r.killGrace+stopSlack)
	defer cancel()
	ticks := int64((r.killGrace + 50*time.Millisecond - 1) / (50 * time.Millisecond))
	secs := int64((r.killGrace + time.Second - 1) / time.Second)
	created, err := r.cli.ContainerExecCreate(ctx, id, container.ExecOptions{
		User:         user,
		AttachStdout: true,
		AttachStderr: true,
		WorkingDir:   "/",
		Cmd: []string{"/bin/sh", "-c", stopScript, "berth-stop-exec", marker,
			strconv.FormatInt(ticks, 10), strconv.FormatInt(secs, 10)},
	})
	if err != nil {
		err = execError(id, err)
		if errors.Is(err, sandbox.ErrNotFound) || errors.Is(err, sandbox.ErrNotRunning) {
			return nil
		}
		return err
	}
	att, err := r.cli.ContainerExecAttach(ctx, created.ID, container.ExecAttachOptions{})
	if err != nil {
		return execError(id, err)
	}
	defer att.Close()
	var out bytes.Buffer
	if _, err := stdcopy.StdCopy(&out, &out, att.Reader); err != nil {
		return fmt.Errorf("docker exec %s: stopping a command: %w", short(id), err)
	}
	code, err := r.waitExit(ctx, id, created.ID)
	if err != nil {
		return err
	}
	if code != 0 {
		return fmt.Errorf("docker exec %s: stopping a command: exit %d: %s", short(id), code, strings.TrimSpace(out.String()))
	}
	return nil
}

// execError maps an engine error about running a command in container id.
func execError(id string, err error) error {
	if cerrdefs.IsConflict(err) && strings.Contains(err.Error(), "not running") {
		return fmt.Errorf("docker exec %s: %w (%w)", short(id), sandbox.ErrNotRunning, err)
	}
	return containerError("exec", id, err)
}

// newMarker returns "BERTH_EXEC=<random id>" for one exec.
func newMarker() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("docker exec: random marker: %w", err)
	}
	return markerVar + "=" + hex.EncodeToString(b[:]), nil
}

func orDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}
