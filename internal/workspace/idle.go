package workspace

import (
	"context"
	"sync"
	"time"

	"github.com/berthhq/berth/internal/store"
)

// activity tracks, per workspace, when it was last used and how many
// holders (running tasks, open streams, command sessions) keep it alive.
//
// Only running workspaces need a last use: every sweep of StopIdle keeps
// the entries of the workspaces it found running and drops the others, and
// stopping or deleting a workspace drops its entry at once, so the map
// holds at most the running workspaces plus what was touched since the
// last sweep. A start touches the workspace again. A holder's count lives
// exactly as long as its holds.
type activity struct {
	mu    sync.Mutex
	last  map[string]time.Time
	holds map[string]int
}

// idleStops reports whether the service stops idle workspaces at all; when
// it does not, no activity is recorded.
func (s *Service) idleStops() bool { return s.containers.IdleTimeout > 0 }

// Touch records API activity on a workspace.
func (s *Service) Touch(id string) {
	if !s.idleStops() {
		return
	}
	s.activity.mu.Lock()
	s.activity.last[id] = s.now()
	s.activity.mu.Unlock()
}

// forgetActivity drops the last use of a workspace that stopped or is
// gone (its holds stay until their holders release them).
func (s *Service) forgetActivity(id string) {
	s.activity.mu.Lock()
	delete(s.activity.last, id)
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
			if s.idleStops() {
				s.activity.last[id] = s.now()
			}
		})
	}
}

// StopIdle stops every running workspace that nothing holds and nobody has
// used for the idle timeout, and returns the ids it stopped. It drops the
// last use of every workspace it did not find running.
func (s *Service) StopIdle(ctx context.Context) ([]string, error) {
	if !s.idleStops() {
		return nil, nil
	}
	running, _, err := s.store.ListWorkspaces(ctx, store.WorkspaceFilter{Viewer: store.Viewer{Admin: true}, Status: string(store.WorkspaceRunning)})
	if err != nil {
		return nil, err
	}
	now := s.now()
	s.pruneActivity(running)
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

// pruneActivity drops the last use of every workspace not in running. A
// workspace that started after running was read loses its entry too; the
// next sweep then counts its idleness from that sweep, which can only
// stop it later, never sooner.
func (s *Service) pruneActivity(running []*store.Workspace) {
	keep := make(map[string]bool, len(running))
	for _, w := range running {
		keep[w.ID] = true
	}
	s.activity.mu.Lock()
	defer s.activity.mu.Unlock()
	for id := range s.activity.last {
		if !keep[id] {
			delete(s.activity.last, id)
		}
	}
}
