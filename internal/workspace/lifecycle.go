package workspace

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/berthhq/berth/internal/access"
	"github.com/berthhq/berth/internal/event"
	"github.com/berthhq/berth/internal/fault"
	"github.com/berthhq/berth/internal/sandbox"
	"github.com/berthhq/berth/internal/store"
)

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
	stopped, err := s.setStatus(ctx, w, store.WorkspaceStopped, "", nil)
	if err == nil {
		s.forgetActivity(w.ID)
	}
	return stopped, err
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
