package docker

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"

	"github.com/berthhq/berth/internal/sandbox"
)

// idleCommand is a workspace container's main process: it only has to stay
// alive until the container is stopped, and work on a bare image. A POSIX sh
// loop does (busybox's sleep takes no "infinity"); the trap makes SIGTERM end
// it at once, and docker-init (Init) reaps the processes execs leave behind.
var idleCommand = []string{"/bin/sh", "-c", "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done"}

// Create makes the container for a workspace and returns its id; it does not
// start it. The container carries the berth labels, has spec.HostPath
// bind-mounted read-write at /workspace (also its working directory), the
// limits, user, network mode and capabilities from spec, no-new-privileges,
// no restart policy, and is named spec.Name or "berth-<workspace id>". A name
// already taken is sandbox.ErrConflict.
func (r *Runtime) Create(ctx context.Context, spec sandbox.Spec) (string, error) {
	if spec.WorkspaceID == "" {
		return "", errors.New("docker create: a workspace id is required")
	}
	if spec.Image == "" {
		return "", errors.New("docker create: an image is required")
	}
	if !filepath.IsAbs(spec.HostPath) {
		return "", fmt.Errorf("docker create: host path %q is not absolute", spec.HostPath)
	}
	name := spec.Name
	if name == "" {
		name = "berth-" + spec.WorkspaceID
	}
	cfg := &container.Config{
		Image:      spec.Image,
		Cmd:        idleCommand,
		User:       spec.User,
		Env:        spec.Env,
		WorkingDir: sandbox.MountPath,
		Labels: map[string]string{
			sandbox.LabelWorkspace: spec.WorkspaceID,
			sandbox.LabelManaged:   "true",
		},
	}
	withInit := true
	host := &container.HostConfig{
		Mounts: []mount.Mount{{
			Type:   mount.TypeBind,
			Source: filepath.Clean(spec.HostPath),
			Target: sandbox.MountPath,
		}},
		NetworkMode:   container.NetworkMode(spec.Network),
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyDisabled},
		SecurityOpt:   []string{"no-new-privileges:true"},
		CapDrop:       []string{"ALL"},
		CapAdd:        spec.CapAdd,
		Init:          &withInit,
		Resources: container.Resources{
			Memory:   spec.Limits.MemoryBytes,
			NanoCPUs: spec.Limits.NanoCPUs,
		},
	}
	if spec.Limits.MemoryBytes > 0 {
		// Memory and swap together may not exceed the limit: a workspace
		// that outgrows it is killed rather than swapping the host.
		host.MemorySwap = spec.Limits.MemoryBytes
	}
	if spec.Limits.Pids > 0 {
		pids := spec.Limits.Pids
		host.PidsLimit = &pids
	}
	resp, err := r.cli.ContainerCreate(ctx, cfg, host, nil, nil, name)
	switch {
	case err == nil:
		return resp.ID, nil
	case cerrdefs.IsConflict(err):
		return "", fmt.Errorf("docker create %s: %w (%w)", name, sandbox.ErrConflict, err)
	case cerrdefs.IsNotFound(err):
		// The only thing create can miss is the image.
		return "", fmt.Errorf("docker create %s: image %q: %w: build it or pull it on the engine first (%w)", name, spec.Image, sandbox.ErrImageNotFound, err)
	default:
		return "", fmt.Errorf("docker create %s: %w", name, err)
	}
}

// Start starts a created or stopped container; starting a running one does
// nothing.
func (r *Runtime) Start(ctx context.Context, id string) error {
	return containerError("start", id, r.cli.ContainerStart(ctx, id, container.StartOptions{}))
}

// Stop asks the container to stop (SIGTERM) and kills it when it has not
// stopped after timeout; a negative timeout means the engine's default. All
// processes in it end, execs included.
func (r *Runtime) Stop(ctx context.Context, id string, timeout time.Duration) error {
	var opts container.StopOptions
	if timeout >= 0 {
		secs := int(math.Ceil(timeout.Seconds()))
		opts.Timeout = &secs
	}
	return containerError("stop", id, r.cli.ContainerStop(ctx, id, opts))
}

// Remove deletes the container, stopping it first if it runs, with its
// anonymous volumes. The bind-mounted project directory is never touched.
func (r *Runtime) Remove(ctx context.Context, id string) error {
	err := r.cli.ContainerRemove(ctx, id, container.RemoveOptions{Force: true, RemoveVolumes: true})
	return containerError("remove", id, err)
}

// Inspect reports the container's state; a container that does not exist
// (any more) is sandbox.ErrNotFound.
func (r *Runtime) Inspect(ctx context.Context, id string) (sandbox.Info, error) {
	c, err := r.cli.ContainerInspect(ctx, id)
	if err != nil {
		return sandbox.Info{}, containerError("inspect", id, err)
	}
	info := sandbox.Info{ID: c.ID, ImageID: c.Image, State: sandbox.StateMissing}
	if c.Config != nil {
		info.WorkspaceID = c.Config.Labels[sandbox.LabelWorkspace]
	}
	if s := c.State; s != nil {
		info.State = state(s.Status)
		info.ExitCode = s.ExitCode
		info.Error = s.Error
		if s.OOMKilled && info.Error == "" {
			info.Error = "killed: out of memory"
		}
		if t, err := time.Parse(time.RFC3339Nano, s.StartedAt); err == nil && t.Year() > 1 {
			info.StartedAt = t
		}
	}
	return info, nil
}

// List reports every container berth manages on this engine (label
// berth.managed=true), running or not, whether or not berth still has a
// record for it. Only ID, WorkspaceID and State are filled; Inspect tells
// the rest.
func (r *Runtime) List(ctx context.Context) ([]sandbox.Info, error) {
	cs, err := r.cli.ContainerList(ctx, container.ListOptions{
		All:     true,
		Filters: filters.NewArgs(filters.Arg("label", sandbox.LabelManaged+"=true")),
	})
	if err != nil {
		return nil, fmt.Errorf("docker list: %w", err)
	}
	infos := make([]sandbox.Info, 0, len(cs))
	for _, c := range cs {
		infos = append(infos, sandbox.Info{
			ID:          c.ID,
			WorkspaceID: c.Labels[sandbox.LabelWorkspace],
			State:       state(c.State),
		})
	}
	return infos, nil
}

// state maps the engine's container status to berth's.
func state(status container.ContainerState) sandbox.State {
	switch status {
	case container.StateCreated:
		return sandbox.StateCreated
	case container.StateRunning, container.StatePaused, container.StateRestarting:
		return sandbox.StateRunning
	case container.StateExited, container.StateDead, container.StateRemoving:
		return sandbox.StateStopped
	default:
		return sandbox.StateMissing
	}
}
