package workspace

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"sync"
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

// transition is the one place that decides which status moves are legal.
// Moves the engine reports (a container dying, vanishing) are always
// accepted; these are the moves users ask for.
func transition(from, to store.WorkspaceStatus) error {
	ok := false
	switch to {
	case store.WorkspaceStarting:
		ok = from == store.WorkspaceStopped || from == store.WorkspaceError || from == store.WorkspaceRunning
	case store.WorkspaceStopping:
		ok = from == store.WorkspaceRunning || from == store.WorkspaceStarting || from == store.WorkspaceStopped || from == store.WorkspaceError
	}
	if !ok {
		return fault.New(fault.ErrFailedPrecondition, "a workspace that is %s cannot be %s", from, map[store.WorkspaceStatus]string{
			store.WorkspaceStarting: "started", store.WorkspaceStopping: "stopped",
		}[to])
	}
	return nil
}

// setContainer records a status with the container w now has and the id
// of the image it was created from, in one update, and publishes the
// change.
func (s *Service) setContainer(ctx context.Context, w *store.Workspace, status store.WorkspaceStatus, containerID, imageID string) (*store.Workspace, error) {
	reason := ""
	return s.update(ctx, w, store.WorkspaceUpdate{Status: &status, StatusReason: &reason, ContainerID: &containerID, ImageID: &imageID})
}

// setStatus records a status (and reason) and publishes the change.
func (s *Service) setStatus(ctx context.Context, w *store.Workspace, status store.WorkspaceStatus, reason string, containerID *string) (*store.Workspace, error) {
	return s.moveStatus(ctx, w, status, reason, containerID, nil)
}

// claimStatus moves w to status only if its status is still the one w was
// read with: of several callers — on this instance or on others sharing the
// store — racing to start or stop a workspace, exactly one wins; the others
// get fault.ErrFailedPrecondition.
func (s *Service) claimStatus(ctx context.Context, w *store.Workspace, status store.WorkspaceStatus) (*store.Workspace, error) {
	return s.moveStatus(ctx, w, status, "", nil, []store.WorkspaceStatus{w.Status})
}

func (s *Service) moveStatus(ctx context.Context, w *store.Workspace, status store.WorkspaceStatus, reason string, containerID *string, ifStatus []store.WorkspaceStatus) (*store.Workspace, error) {
	return s.update(ctx, w, store.WorkspaceUpdate{Status: &status, StatusReason: &reason, ContainerID: containerID, IfStatus: ifStatus})
}

// update applies upd to w's record, retires its cached copies, keeps the
// reader's view (access role, stats) on the result and publishes it.
func (s *Service) update(ctx context.Context, w *store.Workspace, upd store.WorkspaceUpdate) (*store.Workspace, error) {
	updated, err := s.store.UpdateWorkspace(context.WithoutCancel(ctx), w.ID, upd, s.now().UTC())
	if err != nil {
		return nil, err
	}
	s.forget(ctx, w.ID)
	updated.AccessRole, updated.Stats = w.AccessRole, w.Stats
	s.publish(updated)
	return updated, nil
}

func (s *Service) publish(w *store.Workspace) {
	if s.bus != nil {
		s.bus.Publish(event.WorkspaceTopic(w.ID), event.WorkspaceChanged{Workspace: w, Time: s.now().UTC()})
	}
}

// Start starts the workspace's container, creating a new one if it is gone
// or was made from another image than the one its image reference names
// now (see start).
func (s *Service) Start(ctx context.Context, p access.Principal, id string) (*store.Workspace, error) {
	w, err := s.operable(ctx, p, id)
	if err != nil {
		return nil, err
	}
	s.Touch(id)
	if w.Status == store.WorkspaceRunning {
		return w, nil
	}
	if err := transition(w.Status, store.WorkspaceStarting); err != nil {
		return nil, err
	}
	return s.start(ctx, w)
}

func (s *Service) start(ctx context.Context, w *store.Workspace) (*store.Workspace, error) {
	ctx = context.WithoutCancel(ctx) // a half-done start must finish its bookkeeping
	w, err := s.claimStatus(ctx, w, store.WorkspaceStarting)
	if err != nil {
		return nil, &lostClaim{err}
	}
	if err := s.checkDir(ctx, w); err != nil {
		return s.refuse(ctx, w, err)
	}
	// Every start resolves the workspace's image again: the rule may have
	// changed, and so may the image its name points to.
	imageID, err := s.resolveImage(ctx, w)
	if err != nil {
		return s.fail(ctx, w, "cannot use its image", err)
	}
	containerID := w.ContainerID
	if containerID != "" {
		info, err := s.runtime.Inspect(ctx, containerID)
		switch {
		case errors.Is(err, sandbox.ErrNotFound):
			containerID = ""
		case err == nil && info.State == sandbox.StateRunning:
			// Never replaced under the tasks running in it (EnsureRunning
			// restarts a RUNNING workspace whose container it could not
			// inspect); the record says what it runs.
			imageID = info.ImageID
		case err == nil && imageID != "" && info.ImageID != imageID:
			// Made from another image than the name gives now (the tag
			// moved, or the workspace switched images): a new container
			// from the image now in effect, so that the record tells what
			// runs. Only /workspace, the bind-mounted directory, carries
			// over; whatever was changed inside the old container is gone.
			if err := s.runtime.Remove(ctx, containerID); err != nil && !errors.Is(err, sandbox.ErrNotFound) {
				return s.fail(ctx, w, "removing its container made from an older image failed", err)
			}
			containerID = ""
		}
	}
	if containerID == "" {
		if containerID, imageID, err = s.createContainer(ctx, w); err != nil {
			return s.fail(ctx, w, "creating its container failed", err)
		}
	}
	if err := s.runtime.Start(ctx, containerID); err != nil {
		return s.fail(ctx, w, "starting its container failed", err, containerID)
	}
	return s.setContainer(ctx, w, store.WorkspaceRunning, containerID, imageID)
}

// fail records an ERROR status with a reason and answers Unavailable, or
// FailedPrecondition when trying again cannot help (a missing or refused
// image: see containerFault); the runtime's own message is kept in the
// reason, where the user can read it.
func (s *Service) fail(ctx context.Context, w *store.Workspace, what string, cause error, containerID ...string) (*store.Workspace, error) {
	var cid *string
	if len(containerID) > 0 {
		cid = &containerID[0]
	}
	reason := what + ": " + cause.Error()
	if m, ok := fault.Message(cause); ok {
		reason = what + ": " + m
	}
	if _, err := s.setStatus(ctx, w, store.WorkspaceError, reason, cid); err != nil {
		return nil, err
	}
	return nil, containerFault(what, cause)
}

// lostClaim is the error of a start that another call — here or on another
// instance — claimed first (a fault.ErrFailedPrecondition underneath).
type lostClaim struct{ err error }

func (e *lostClaim) Error() string { return e.err.Error() }
func (e *lostClaim) Unwrap() error { return e.err }

// errDirMoved is the public reason a workspace whose directory changed
// under berth cannot start. It says what a person can do, and nothing of
// where a link pointed.
const errDirMoved = "its directory is no longer the directory berth made or imported for it (a symbolic link or another workspace was found on its path), so it was not started; restore the directory, or delete the workspace"

// checkDir is the re-check of a workspace's directory before its container
// is created or started — when the engine mounts it: still the real
// directory stored (no symbolic link on the way, inside a root) and still
// shared with or nested in no other workspace. The container then mounts
// the stored path, which is that real path.
func (s *Service) checkDir(ctx context.Context, w *store.Workspace) error {
	if err := s.roots.Check(w.Path); err != nil {
		return err
	}
	others, err := s.store.OverlappingWorkspaces(ctx, w.Path, w.ID)
	if err != nil {
		return err
	}
	if len(others) > 0 {
		return fmt.Errorf("workspace: %s overlaps the directories of workspaces %v", w.Path, others)
	}
	return nil
}

// refuse records an ERROR status for a workspace whose directory failed
// checkDir and answers FailedPrecondition: starting it again will not help
// until the directory is fixed.
func (s *Service) refuse(ctx context.Context, w *store.Workspace, cause error) (*store.Workspace, error) {
	s.logger.Warn("workspace directory refused", "workspace", w.ID, "path", w.Path, "cause", cause.Error())
	if _, err := s.setStatus(ctx, w, store.WorkspaceError, errDirMoved, nil); err != nil {
		return nil, err
	}
	return nil, &fault.Error{Kind: fault.ErrFailedPrecondition, Message: "the workspace cannot start: " + errDirMoved, Cause: cause}
}

// Stop stops the workspace's container.
func (s *Service) Stop(ctx context.Context, p access.Principal, id string) (*store.Workspace, error) {
	w, err := s.operable(ctx, p, id)
	if err != nil {
		return nil, err
	}
	if w.Status == store.WorkspaceStopped {
		return w, nil
	}
	if err := transition(w.Status, store.WorkspaceStopping); err != nil {
		return nil, err
	}
	return s.stop(ctx, w)
}

func (s *Service) stop(ctx context.Context, w *store.Workspace) (*store.Workspace, error) {
	ctx = context.WithoutCancel(ctx)
	w, err := s.claimStatus(ctx, w, store.WorkspaceStopping)
	if err != nil {
		return nil, err
	}
	if w.ContainerID != "" {
		if err := s.runtime.Stop(ctx, w.ContainerID, s.containers.StopTimeout); err != nil && !errors.Is(err, sandbox.ErrNotFound) {
			return s.fail(ctx, w, "stopping its container failed", err)
		}
	}
	return s.setStatus(ctx, w, store.WorkspaceStopped, "", nil)
}

// Watch keeps workspace statuses true to the engine: it applies the
// runtime's container events until ctx ends, resubscribing after errors.
func (s *Service) Watch(ctx context.Context) {
	for ctx.Err() == nil {
		events, errs := s.runtime.Events(ctx)
	loop:
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-events:
				if !ok {
					break loop
				}
				s.apply(ctx, ev)
			case err, ok := <-errs:
				if ok && err != nil && ctx.Err() == nil {
					s.logger.Warn("container events interrupted; resubscribing", "error", err.Error())
				}
				break loop
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// apply updates a workspace from one container event.
func (s *Service) apply(ctx context.Context, ev sandbox.Event) {
	if ev.WorkspaceID == "" {
		return
	}
	w, err := s.store.FindWorkspace(ctx, ev.WorkspaceID, store.Viewer{Admin: true})
	if err != nil {
		if !errors.Is(err, fault.ErrNotFound) {
			s.logger.Warn("container event for an unreadable workspace", "workspace", ev.WorkspaceID, "error", err.Error())
		}
		return
	}
	if w.ContainerID != ev.ContainerID {
		return // an old container of this workspace, already replaced
	}
	var status store.WorkspaceStatus
	reason := ""
	switch ev.State {
	case sandbox.StateRunning:
		status = store.WorkspaceRunning
	case sandbox.StateStopped:
		if w.Status == store.WorkspaceStarting {
			return // the start in progress decides
		}
		status = store.WorkspaceStopped
	case sandbox.StateMissing:
		if w.Status == store.WorkspaceStarting {
			return // the start in progress decides (it may be replacing the container)
		}
		status, reason = store.WorkspaceError, "its container "+short(ev.ContainerID)+" was removed outside berth; start the workspace to create a new one"
	default:
		return
	}
	if w.Status == status || w.Status == store.WorkspaceArchived {
		return
	}
	if _, err := s.setStatus(ctx, w, status, reason, nil); err != nil {
		s.logger.Warn("recording a container event failed", "workspace", w.ID, "error", err.Error())
	}
}

// Reconcile compares the store with the runtime, at start-up: a record
// whose container is gone goes to ERROR with the reason; a record whose
// container runs or stopped meanwhile takes that status; containers berth
// labelled but has no record of are returned (and logged) for an operator.
func (s *Service) Reconcile(ctx context.Context) (orphans []sandbox.Info, err error) {
	infos, err := s.runtime.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	byContainer := make(map[string]sandbox.Info, len(infos))
	for _, info := range infos {
		byContainer[info.ID] = info
	}
	all, _, err := s.store.ListWorkspaces(ctx, store.WorkspaceFilter{Viewer: store.Viewer{Admin: true}})
	if err != nil {
		return nil, err
	}
	known := make(map[string]bool, len(all))
	for _, w := range all {
		if w.ContainerID == "" {
			if w.Status == store.WorkspaceCreating {
				_, err = s.setStatus(ctx, w, store.WorkspaceError, "its container was never created (berth stopped during creation); start the workspace to create one", nil)
			}
			if err != nil {
				return nil, err
			}
			continue
		}
		known[w.ContainerID] = true
		info, ok := byContainer[w.ContainerID]
		var (
			status store.WorkspaceStatus
			reason string
		)
		switch {
		case w.Status == store.WorkspaceArchived:
			continue
		case !ok && s.containers.Ephemeral:
			status, reason = store.WorkspaceStopped, ""
		case !ok:
			status, reason = store.WorkspaceError, "its container "+short(w.ContainerID)+" no longer exists; start the workspace to create a new one"
		case info.State == sandbox.StateRunning:
			status, reason = store.WorkspaceRunning, ""
		default:
			status, reason = store.WorkspaceStopped, ""
		}
		if status != w.Status || reason != w.StatusReason {
			if _, err := s.setStatus(ctx, w, status, reason, nil); err != nil {
				return nil, err
			}
		}
	}
	for _, info := range infos {
		if !known[info.ID] {
			orphans = append(orphans, info)
			s.logger.Warn("container labelled by berth has no workspace record", "container", info.ID, "workspace", info.WorkspaceID, "state", string(info.State))
		}
	}
	return orphans, nil
}

func short(id string) string { return id[:min(len(id), 12)] }

// MeasureDisk measures every workspace directory and records its size, so
// reads never walk a directory.
func (s *Service) MeasureDisk(ctx context.Context) error {
	all, _, err := s.store.ListWorkspaces(ctx, store.WorkspaceFilter{Viewer: store.Viewer{Admin: true}})
	if err != nil {
		return err
	}
	for _, w := range all {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err := s.roots.Check(w.Path); err != nil {
			continue // not walked: the next start reports it
		}
		mb := diskUsageMB(w.Path)
		if mb == w.DiskUsageMB {
			continue
		}
		if _, err := s.store.UpdateWorkspace(ctx, w.ID, store.WorkspaceUpdate{DiskUsageMB: &mb}, w.UpdatedAt); err != nil && !errors.Is(err, fault.ErrNotFound) {
			return err
		}
		s.forget(ctx, w.ID)
	}
	return nil
}

// diskUsageMB sums the sizes of the regular files under dir (symlinks are
// not followed), rounded up to MiB.
func diskUsageMB(dir string) int64 {
	var total int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // unreadable parts are skipped, not fatal
		}
		if d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				total += info.Size()
			}
		}
		return nil
	})
	return (total + 1<<20 - 1) >> 20
}

// activity tracks, per workspace, when it was last used and how many
// holders (running tasks, open streams, command sessions) keep it alive.
type activity struct {
	mu    sync.Mutex
	last  map[string]time.Time
	holds map[string]int
}

// Touch records API activity on a workspace.
func (s *Service) Touch(id string) {
	s.activity.mu.Lock()
	s.activity.last[id] = s.now()
	s.activity.mu.Unlock()
}

// Hold keeps a workspace from being stopped as idle until release is
// called; a running task or an open stream holds its workspace.
func (s *Service) Hold(id string) (release func()) {
	s.activity.mu.Lock()
	s.activity.holds[id]++
	s.activity.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.activity.mu.Lock()
			defer s.activity.mu.Unlock()
			if s.activity.holds[id]--; s.activity.holds[id] <= 0 {
				delete(s.activity.holds, id)
			}
			s.activity.last[id] = s.now()
		})
	}
}

// StopIdle stops every running workspace that nothing holds and nobody has
// used for the idle timeout, and returns the ids it stopped.
func (s *Service) StopIdle(ctx context.Context) ([]string, error) {
	if s.containers.IdleTimeout <= 0 {
		return nil, nil
	}
	running, _, err := s.store.ListWorkspaces(ctx, store.WorkspaceFilter{Viewer: store.Viewer{Admin: true}, Status: string(store.WorkspaceRunning)})
	if err != nil {
		return nil, err
	}
	now := s.now()
	var stopped []string
	for _, w := range running {
		s.activity.mu.Lock()
		last, seen := s.activity.last[w.ID]
		held := s.activity.holds[w.ID] > 0
		if !seen {
			// Not used since this process started: count from now.
			s.activity.last[w.ID] = now
			last = now
		}
		s.activity.mu.Unlock()
		if held || now.Sub(last) < s.containers.IdleTimeout {
			continue
		}
		s.logger.Info("stopping idle workspace", "workspace", w.ID, "idle_for", now.Sub(last).Round(time.Second).String())
		if _, err := s.stop(ctx, w); err != nil {
			s.logger.Warn("stopping idle workspace failed", "workspace", w.ID, "error", err.Error())
			continue
		}
		stopped = append(stopped, w.ID)
	}
	return stopped, nil
}

// Run does the service's background work until ctx ends: it follows
// container events, measures disk usage every diskEvery, and stops idle
// workspaces.
func (s *Service) Run(ctx context.Context, diskEvery time.Duration) {
	go s.Watch(ctx)
	idleEvery := time.Minute
	if t := s.containers.IdleTimeout / 4; t > 0 && t < idleEvery {
		idleEvery = t
	}
	disk := time.NewTicker(diskEvery)
	idle := time.NewTicker(idleEvery)
	defer disk.Stop()
	defer idle.Stop()
	if err := s.MeasureDisk(ctx); err != nil && ctx.Err() == nil {
		s.logger.Warn("measuring disk usage failed", "error", err.Error())
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-disk.C:
			if err := s.MeasureDisk(ctx); err != nil && ctx.Err() == nil {
				s.logger.Warn("measuring disk usage failed", "error", err.Error())
			}
		case <-idle.C:
			if _, err := s.StopIdle(ctx); err != nil && ctx.Err() == nil {
				s.logger.Warn("stopping idle workspaces failed", "error", err.Error())
			}
		}
	}
}

// EnsureRunning starts a workspace for a task if it is not running (the
// task's creator was already checked), and returns it running.
func (s *Service) EnsureRunning(ctx context.Context, id string) (*store.Workspace, error) {
	s.Touch(id)
	deadline := s.now().Add(startWait)
	for {
		w, err := s.store.FindWorkspace(ctx, id, store.Viewer{Admin: true})
		if err != nil {
			return nil, err
		}
		switch w.Status {
		case store.WorkspaceRunning:
			if _, err := s.runtime.Inspect(ctx, w.ContainerID); err == nil {
				return w, nil
			}
		case store.WorkspaceStarting, store.WorkspaceStopping:
			// Another call — here or on another instance — is starting or
			// stopping it: wait for that to finish, then look again.
			if !s.now().Before(deadline) {
				return nil, fault.New(fault.ErrUnavailable, "the workspace is still %s after %s; if it stays so, stop it and start it again", w.Status, startWait)
			}
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(startPoll):
			}
			continue
		}
		if err := transition(w.Status, store.WorkspaceStarting); err != nil {
			return nil, err
		}
		started, err := s.start(ctx, w)
		if _, lost := errors.AsType[*lostClaim](err); lost {
			continue // another call claimed the start first
		}
		return started, err
	}
}

// startWait bounds how long EnsureRunning waits for another call's start
// (or stop) of the same workspace; startPoll is how often it looks.
const (
	startWait = 2 * time.Minute
	startPoll = 100 * time.Millisecond
)

// Follow sends a workspace the caller may see: its current state, then
// every event published on its topic (its status changes and its tasks'
// lifecycle events) until ctx ends.
func (s *Service) Follow(ctx context.Context, p access.Principal, id string, send func(any) error) error {
	if _, err := s.store.FindWorkspace(ctx, id, p.Viewer()); err != nil {
		return err
	}
	current := func(ctx context.Context) (any, error) {
		w, err := s.store.FindWorkspace(ctx, id, p.Viewer())
		if err != nil {
			return nil, err
		}
		return event.WorkspaceChanged{Workspace: w, Time: s.now().UTC()}, nil
	}
	return stream.Watcher{Bus: s.bus, Metrics: s.streams}.Watch(ctx, event.WorkspaceTopic(id), current, send)
}
