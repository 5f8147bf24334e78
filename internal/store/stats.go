package store

import (
	"cmp"
	"context"
	"fmt"
	"slices"
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

// TaskSeries buckets tasks by the time they were created, between f.Start
// (rounded down to its bucket) and f.End: per bucket, and per group when
// f.Group splits, the tasks in each status now and the sum of their cost.
// Buckets without tasks are left out; points come ordered by bucket, then
// group id. It counts the tasks of the workspaces f.Viewer may see, or every
// task when f.Global is true.
func (s *Store) TaskSeries(ctx context.Context, f SeriesFilter) ([]SeriesPoint, error) {
	width := f.Bucket.Microseconds()
	if width <= 0 {
		return nil, fmt.Errorf("task series: bucket %v is not a positive number of microseconds", f.Bucket)
	}
	// The bucket is counted from the range's rounded-down start, so the
	// division is of a number never negative and truncates down on every
	// engine.
	start := micros(f.Start)
	start -= ((start % width) + width) % width
	end := micros(f.End)

	group, name, join := "", "'', ''", ""
	switch f.Group {
	case SeriesUngrouped:
	case SeriesByUser:
		// Names are looked up after counting, once per group, and a
		// deleted account's tasks (created_by NULL) are one group.
		group = ", t.created_by AS g"
		name = "COALESCE(s.g, ''), COALESCE(NULLIF(u.name, ''), " + userEmail + ")"
		join = " LEFT JOIN users u ON u.id = s.g"
	case SeriesByWorkspace:
		group = ", t.workspace_id AS g"
		name = "s.g, ws.name"
		join = " JOIN workspaces ws ON ws.id = s.g"
	default:
		return nil, fmt.Errorf("task series: unknown group %d", f.Group)
	}
	where := ` WHERE t.created_at >= ? AND t.created_at < ?`
	args := []any{start, width, start, end}
	if !f.Global && !f.Viewer.Admin {
		where += ` AND ` + visibleWorkspace
		args = append(args, f.Viewer.UserID, f.Viewer.UserID)
	}
	groupBy := "1, 2"
	if group != "" {
		groupBy = "1, 2, 3"
	}
	q := `SELECT s.b, ` + name + `, s.status, s.n, s.cost FROM (
		SELECT (t.created_at - ?) / ? AS b, t.status AS status` + group + `,
			COUNT(*) AS n, COALESCE(SUM(t.cost_usd), 0) AS cost
		FROM tasks t JOIN workspaces w ON w.id = t.workspace_id` + where + `
		GROUP BY ` + groupBy + `) s` + join

	type key struct {
		bucket int64
		group  string
	}
	points := map[key]*SeriesPoint{}
	err := s.inReadTx(ctx, func(c conn) error {
		rows, err := c.query(ctx, q, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				b                int64
				g, gName, status string
				n                int64
				cost             float64
			)
			if err := rows.Scan(&b, &g, &gName, &status, &n, &cost); err != nil {
				return err
			}
			k := key{b, g}
			p := points[k]
			if p == nil {
				p = &SeriesPoint{
					BucketStart:   fromMicros(start + b*width),
					Group:         g,
					GroupName:     gName,
					TasksByStatus: map[string]int64{},
				}
				points[k] = p
			}
			p.TasksByStatus[status] += n
			p.CostUSD += cost
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("task series: %w", err)
	}
	out := make([]SeriesPoint, 0, len(points))
	for _, p := range points {
		out = append(out, *p)
	}
	slices.SortFunc(out, func(a, b SeriesPoint) int {
		return cmp.Or(a.BucketStart.Compare(b.BucketStart), cmp.Compare(a.Group, b.Group))
	})
	return out, nil
}
