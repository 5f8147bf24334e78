// Package process runs berth workspaces as plain host processes, for
// development machines without a container engine.
//
// THIS IS NOT A SANDBOX. Commands run on the host as the user berth runs
// as, with that user's access to every file, the network and every other
// process. There is no container: no image, no resource limits, no
// capability dropping, no user switch, no network isolation — Spec.Image,
// User, Network, Limits and CapAdd are ignored. Use it only with code you
// would run in your own shell; berth says so at start and in /ready.
//
// What it does keep from the container runtimes: a workspace is created,
// started, stopped and removed (Create, Start and Stop only record state,
// and stopping ends the commands still running), commands run in the
// workspace directory, each in its own process group, with stdout and
// stderr kept apart, and stopping a command — cancelling its context —
// sends SIGTERM to its whole group and SIGKILL after a grace period.
// State lives in memory: a restarted berth sees no workspaces here.
// Every command's working directory is opened again, beneath the workspace
// directory and with no symbolic link on the way to it (internal/hostpath),
// so a command cannot make the next one run outside the workspace by
// replacing a directory with a link. Linux only (openat2).
package process

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/berthhq/berth/internal/hostpath"
	"github.com/berthhq/berth/internal/sandbox"
)

// DefaultKillGrace is how long a stopped command's processes have between
// SIGTERM and SIGKILL unless WithKillGrace says otherwise.
const DefaultKillGrace = 5 * time.Second

// defaultStopTimeout is Stop's grace period when it is given a negative
// one, as the Docker engine's default.
const defaultStopTimeout = 10 * time.Second

// eventBuffer is how many events a subscriber may fall behind by before its
// stream is ended with ErrLagged.
const eventBuffer = 64

// ErrLagged ends an event stream whose reader fell too far behind. Call
// Events again and List to catch up.
var ErrLagged = errors.New("process: event subscriber fell behind")

// Runtime keeps workspaces as host directories and runs commands in them.
// It is safe for concurrent use.
type Runtime struct {
	grace time.Duration

	mu    sync.Mutex
	boxes map[string]*box
	subs  map[*subscriber]struct{}
}

// box is one workspace's record: its "container".
type box struct {
	spec sandbox.Spec
	name string
	info sandbox.Info
	// groups are the process groups of this workspace's commands that may
	// still have members; Stop and Remove end them.
	groups map[*group]struct{}
	// op serialises Start, Stop and Remove of this box.
	op sync.Mutex
}

// Option configures New.
type Option func(*Runtime)

// WithKillGrace sets how long a cancelled command's processes get between
// SIGTERM and SIGKILL (default DefaultKillGrace).
func WithKillGrace(d time.Duration) Option { return func(r *Runtime) { r.grace = max(d, 0) } }

// New returns a runtime with no workspaces.
func New(opts ...Option) *Runtime {
	r := &Runtime{
		grace: DefaultKillGrace,
		boxes: make(map[string]*box),
		subs:  make(map[*subscriber]struct{}),
	}
	for _, o := range opts {
		o(r)
	}
	return r
}

// Create records a workspace whose commands will run in spec.HostPath, an
// existing directory, and returns its id. A name (spec.Name or
// "berth-<workspace id>") already in use is sandbox.ErrConflict.
func (r *Runtime) Create(_ context.Context, spec sandbox.Spec) (string, error) {
	if spec.WorkspaceID == "" {
		return "", errors.New("process create: a workspace id is required")
	}
	if !filepath.IsAbs(spec.HostPath) {
		return "", fmt.Errorf("process create: host path %q is not absolute", spec.HostPath)
	}
	f, err := hostpath.OpenDir(filepath.Clean(spec.HostPath))
	if err != nil {
		return "", fmt.Errorf("process create: host path: %w", err)
	}
	_ = f.Close() // read-only, opened only to check the path
	name := spec.Name
	if name == "" {
		name = "berth-" + spec.WorkspaceID
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("process create: %w", err)
	}
	id := "process-" + hex.EncodeToString(b[:])
	spec.HostPath = filepath.Clean(spec.HostPath)

	r.mu.Lock()
	defer r.mu.Unlock()
	for _, other := range r.boxes {
		if other.name == name {
			return "", fmt.Errorf("process create %s: %w", name, sandbox.ErrConflict)
		}
	}
	r.boxes[id] = &box{
		spec:   spec,
		name:   name,
		info:   sandbox.Info{ID: id, WorkspaceID: spec.WorkspaceID, State: sandbox.StateCreated},
		groups: make(map[*group]struct{}),
	}
	r.publish(id, spec.WorkspaceID, sandbox.StateCreated)
	return id, nil
}

// Start marks the workspace running, so commands may run in it. Starting a
// running workspace does nothing.
func (r *Runtime) Start(_ context.Context, id string) error {
	b, err := r.box("start", id)
	if err != nil {
		return err
	}
	b.op.Lock()
	defer b.op.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.boxes[id] != b {
		return fmt.Errorf("process start %s: %w", id, sandbox.ErrNotFound)
	}
	if b.info.State == sandbox.StateRunning {
		return nil
	}
	b.info.State, b.info.StartedAt, b.info.ExitCode = sandbox.StateRunning, time.Now(), 0
	r.publish(id, b.spec.WorkspaceID, sandbox.StateRunning)
	return nil
}

// Stop marks the workspace stopped and ends the commands still running in
// it: SIGTERM to their process groups, SIGKILL to what is left after
// timeout (negative: 10 s, the Docker engine's default). Stopping a
// workspace that is not running does nothing.
func (r *Runtime) Stop(_ context.Context, id string, timeout time.Duration) error {
	if timeout < 0 {
		timeout = defaultStopTimeout
	}
	return r.halt("stop", id, timeout, false)
}

// Remove forgets the workspace, killing the commands still running in it.
// The directory is never touched.
func (r *Runtime) Remove(_ context.Context, id string) error {
	return r.halt("remove", id, 0, true)
}

// halt ends a box's commands and marks it stopped, or forgets it.
func (r *Runtime) halt(op, id string, grace time.Duration, remove bool) error {
	b, err := r.box(op, id)
	if err != nil {
		return err
	}
	b.op.Lock()
	defer b.op.Unlock()
	r.mu.Lock()
	if r.boxes[id] != b {
		r.mu.Unlock()
		return fmt.Errorf("process %s %s: %w", op, id, sandbox.ErrNotFound)
	}
	wasRunning := b.info.State == sandbox.StateRunning
	if !wasRunning && !remove {
		r.mu.Unlock()
		return nil
	}
	// From here on no command can start in it.
	b.info.State = sandbox.StateStopped
	groups := make([]*group, 0, len(b.groups))
	for g := range b.groups {
		groups = append(groups, g)
	}
	r.mu.Unlock()

	endGroups(groups, grace)

	r.mu.Lock()
	defer r.mu.Unlock()
	if remove {
		delete(r.boxes, id)
		r.publish(id, b.spec.WorkspaceID, sandbox.StateMissing)
		return nil
	}
	b.info.ExitCode = 0
	r.publish(id, b.spec.WorkspaceID, sandbox.StateStopped)
	return nil
}

// Inspect reports the workspace's recorded state; an unknown id is
// sandbox.ErrNotFound.
func (r *Runtime) Inspect(_ context.Context, id string) (sandbox.Info, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b, ok := r.boxes[id]
	if !ok {
		return sandbox.Info{}, fmt.Errorf("process inspect %s: %w", id, sandbox.ErrNotFound)
	}
	return b.info, nil
}

// List reports every workspace this runtime holds.
func (r *Runtime) List(context.Context) ([]sandbox.Info, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	infos := make([]sandbox.Info, 0, len(r.boxes))
	for _, b := range r.boxes {
		infos = append(infos, b.info)
	}
	return infos, nil
}

// Build always fails: building an image needs a container engine.
func (r *Runtime) Build(context.Context, sandbox.BuildSpec) (string, error) {
	return "", errors.New("process: the process runtime cannot build images; run berth with the docker runtime")
}

// ImageID returns "" and no error: the process runtime runs no images, so
// there is nothing to resolve and a workspace records no image id.
func (r *Runtime) ImageID(context.Context, string) (string, error) { return "", nil }

func (r *Runtime) box(op, id string) (*box, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b, ok := r.boxes[id]
	if !ok {
		return nil, fmt.Errorf("process %s %s: %w", op, id, sandbox.ErrNotFound)
	}
	return b, nil
}
