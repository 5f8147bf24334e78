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

// statsBatch bounds the ids in one IN list, well under every engine's limit
// on bound parameters.
const statsBatch = 500

// loadWorkspaceStats fills the Stats of ws from the tasks table, with one
// grouped query per batch rather than one per workspace.
func loadWorkspaceStats(ctx context.Context, c conn, ws []*Workspace) error {
	byID := make(map[string]*Workspace, len(ws))
	for _, w := range ws {
		w.Stats = WorkspaceStats{}
		byID[w.ID] = w
	}
	for start := 0; start < len(ws); start += statsBatch {
		batch := ws[start:min(start+statsBatch, len(ws))]
		ids := make([]any, len(batch))
		for i, w := range batch {
			ids[i] = w.ID
		}
		rows, err := c.query(ctx, `SELECT workspace_id, status, COUNT(*) FROM tasks
			WHERE workspace_id IN (`+placeholders(len(ids))+`)
			GROUP BY workspace_id, status`, ids...)
		if err != nil {
			return fmt.Errorf("count tasks: %w", err)
		}
		for rows.Next() {
			var (
				id, status string
				n          int64
			)
			if err := rows.Scan(&id, &status, &n); err != nil {
				_ = rows.Close() // the scan error is the one to report
				return fmt.Errorf("count tasks: %w", err)
			}
			if w := byID[id]; w != nil {
				w.Stats.add(TaskStatus(status), n)
			}
		}
		err = rows.Err()
		if cerr := rows.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("count tasks: %w", err)
		}
	}
	return nil
}

// add counts n tasks in the given state.
func (st *WorkspaceStats) add(status TaskStatus, n int64) {
	st.TotalTasks += n
	switch status {
	case TaskRunning:
		st.RunningTasks += n
	case TaskSucceeded:
		st.CompletedTasks += n
	case TaskFailed:
		st.FailedTasks += n
	case TaskCancelled:
		st.CancelledTasks += n
	case TaskTimedOut:
		st.TimedOutTasks += n
	}
}
