package workspace

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/berthhq/berth/internal/fault"
	"github.com/berthhq/berth/internal/sandbox"
	"github.com/berthhq/berth/internal/store"
)

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
				if ctx.Err() != nil {
					return // both were ready: the end wins
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
