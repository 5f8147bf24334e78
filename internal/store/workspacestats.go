package store

import (
	"context"
	"fmt"
)

// WorkspaceTaskStats counts one workspace's tasks by status, as
// FindWorkspace fills Workspace.Stats. A workspace without tasks (or
// unknown) has zero counts.
func (s *Store) WorkspaceTaskStats(ctx context.Context, id string) (WorkspaceStats, error) {
	w := &Workspace{ID: id}
	if err := loadWorkspaceStats(ctx, s.conn(), []*Workspace{w}); err != nil {
		return WorkspaceStats{}, fmt.Errorf("workspace stats: %w", err)
	}
	return w.Stats, nil
}
