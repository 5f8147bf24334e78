package store

import (
	"context"
	"fmt"
)

// visibleWorkspace limits a query over workspaces w to those a viewer who is
// not an admin may see: owned or shared. Its arguments are the viewer's user
// id, twice.
const visibleWorkspace = `(w.owner_id = ? OR EXISTS (
	SELECT 1 FROM workspace_members m WHERE m.workspace_id = w.id AND m.user_id = ?))`

// CountStats counts workspaces and tasks. When global is true it counts
// every workspace, every task and the accounts; otherwise it counts the
// workspaces v may see and their tasks, and leaves Users at 0. An admin sees
// every workspace, so to count an admin's own workspaces pass a Viewer with
// Admin false. The maps are never nil.
func (s *Store) CountStats(ctx context.Context, v Viewer, global bool) (*Stats, error) {
	st := &Stats{
		WorkspacesByStatus: map[WorkspaceStatus]int64{},
		TasksByStatus:      map[string]int64{},
	}
	where, args := "", []any(nil)
	if !global && !v.Admin {
		where, args = ` WHERE `+visibleWorkspace, []any{v.UserID, v.UserID}
	}
	err := s.inReadTx(ctx, func(c conn) error {
		if global {
			if err := c.queryRow(ctx, `SELECT COUNT(*) FROM users`).Scan(&st.Users); err != nil {
				return err
			}
		}
		rows, err := c.query(ctx, `SELECT w.status, COUNT(*) FROM workspaces w`+where+` GROUP BY w.status`, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				status string
				n      int64
			)
			if err := rows.Scan(&status, &n); err != nil {
				return err
			}
			st.WorkspacesByStatus[WorkspaceStatus(status)] = n
			st.Workspaces += n
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if err := rows.Close(); err != nil {
			return err
		}

		rows, err = c.query(ctx, `SELECT t.status, COUNT(*), COALESCE(SUM(t.cost_usd), 0)
			FROM tasks t JOIN workspaces w ON w.id = t.workspace_id`+where+`
			GROUP BY t.status`, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				status string
				n      int64
				cost   float64
			)
			if err := rows.Scan(&status, &n, &cost); err != nil {
				return err
			}
			st.TasksByStatus[status] = n
			st.Tasks += n
			st.TotalCostUSD += cost
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("count stats: %w", err)
	}
	return st, nil
}
