package workspace

import (
	"context"
	"fmt"
	"time"

	"github.com/berthhq/berth/internal/access"
	"github.com/berthhq/berth/internal/event"
	"github.com/berthhq/berth/internal/fault"
	"github.com/berthhq/berth/internal/sandbox"
	"github.com/berthhq/berth/internal/store"
	"github.com/berthhq/berth/internal/stream"
)

// Runtime is what the workspace service needs of a container runtime
// (sandbox/docker in production, sandbox/process without an engine).
type Runtime interface {
	Create(ctx context.Context, spec sandbox.Spec) (string, error)
	Start(ctx context.Context, id string) error
	Stop(ctx context.Context, id string, timeout time.Duration) error
	Remove(ctx context.Context, id string) error
	Inspect(ctx context.Context, id string) (sandbox.Info, error)
	List(ctx context.Context) ([]sandbox.Info, error)
	Events(ctx context.Context) (<-chan sandbox.Event, <-chan error)
	// ImageID resolves an image reference to the id of the image the
	// engine has under it now; "" on a runtime without images.
	ImageID(ctx context.Context, ref string) (string, error)
}

// Containers are the container settings from the server configuration:
// defaults for every workspace and the maxima a workspace may ask for.
type Containers struct {
	Image string
	// ImageAllow lists glob patterns (path.Match) of the images a
	// workspace may name besides Image and its own builds.
	ImageAllow  []string
	Network     string
	User        string
	MemoryMB    int64
	CPUs        float64
	Pids        int64
	CapAdd      []string
	MaxMemoryMB int64
	MaxCPUs     float64
	MaxPids     int64
	StopTimeout time.Duration
	// IdleTimeout stops a running workspace nobody has used for this long;
	// 0 never does.
	IdleTimeout time.Duration
	// Ephemeral says the runtime keeps no containers across restarts (the
	// process runtime): at start-up a missing container then means
	// "stopped", not an error, and the next start makes a new one.
	Ephemeral bool
}

// KindStatus is the kind of the WorkspaceEvent that carries the workspace
// itself: its state when a watch starts, and each change of it.
const KindStatus = "workspace.status"

// checkLimits refuses resource requests above the configured maxima.
func (c Containers) checkLimits(spec Spec) error {
	var violations []fault.Violation
	if c.MaxMemoryMB > 0 && spec.MemoryMB > c.MaxMemoryMB {
		violations = append(violations, fault.Violation{Field: "resources.memory_mb", Reason: fmt.Sprintf("must be at most %d", c.MaxMemoryMB)})
	}
	if c.MaxCPUs > 0 && spec.CPUs > c.MaxCPUs {
		violations = append(violations, fault.Violation{Field: "resources.cpus", Reason: fmt.Sprintf("must be at most %g", c.MaxCPUs)})
	}
	if c.MaxPids > 0 && spec.Pids > c.MaxPids {
		violations = append(violations, fault.Violation{Field: "resources.pids", Reason: fmt.Sprintf("must be at most %d", c.MaxPids)})
	}
	if len(violations) == 0 {
		return nil
	}
	return &fault.Error{Kind: fault.ErrInvalid, Message: "resources exceed this server's limits: " + violations[0].Field + " " + violations[0].Reason, Violations: violations}
}

// containerSpec is the sandbox spec of a workspace: its own settings over
// the configured defaults.
func (c Containers) containerSpec(w *store.Workspace) sandbox.Spec {
	image := w.Image
	if image == "" {
		image = c.Image
	}
	mem, cpus, pids := w.MemoryMB, w.CPUs, w.Pids
	if mem == 0 {
		mem = c.MemoryMB
	}
	if cpus == 0 {
		cpus = c.CPUs
	}
	if pids == 0 {
		pids = c.Pids
	}
	return sandbox.Spec{
		WorkspaceID: w.ID,
		Name:        "berth-" + w.ID,
		Image:       image,
		HostPath:    w.Path,
		User:        c.User,
		Network:     c.Network,
		Limits:      sandbox.Limits{MemoryBytes: mem << 20, NanoCPUs: int64(cpus * 1e9), Pids: pids},
		CapAdd:      c.CapAdd,
	}
}

// Follow sends a workspace the caller may see: its current state, then
// every event published on its topic (its status changes and its tasks'
// lifecycle events) until ctx ends. send and loop run on the caller's
// goroutine (see stream.Loop).
func (s *Service) Follow(ctx context.Context, p access.Principal, id string, send func(any) error, loop stream.Loop) error {
	if _, err := s.store.FindWorkspace(ctx, id, p.Viewer()); err != nil {
		return err
	}
	return s.watcher().Watch(ctx, event.WorkspaceTopic(id), s.current(p, id), send, loop)
}

// OpenFollow is Follow a step at a time, for a transport that holds no
// goroutine while the workspace is quiet: it checks that the caller may
// see the workspace and sends its current state, and returns the watch,
// which the caller steps whenever wake was called and closes when done
// with it (see stream.Watcher.Open).
func (s *Service) OpenFollow(ctx context.Context, p access.Principal, id string, send func(any) error, wake func()) (*stream.Watch, error) {
	if _, err := s.store.FindWorkspace(ctx, id, p.Viewer()); err != nil {
		return nil, err
	}
	return s.watcher().Open(ctx, event.WorkspaceTopic(id), s.current(p, id), send, wake)
}

// watcher is the stream watcher of the service's workspaces.
func (s *Service) watcher() stream.Watcher { return stream.Watcher{Bus: s.bus, Metrics: s.streams} }

// current reads workspace id's state as p may see it, for a watch to send
// first and again when it lagged.
func (s *Service) current(p access.Principal, id string) func(context.Context) (any, error) {
	return func(ctx context.Context) (any, error) {
		w, err := s.store.FindWorkspace(ctx, id, p.Viewer())
		if err != nil {
			return nil, err
		}
		return event.WorkspaceChanged{Workspace: w, Time: s.now().UTC()}, nil
	}
}
