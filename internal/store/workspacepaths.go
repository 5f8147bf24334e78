package store

import (
	"context"
	"fmt"

	"github.com/berthhq/berth/internal/fault"
)

// errOverlap refuses a workspace directory that another workspace's
// directory equals, contains or lies in. It names neither the other
// workspace nor its owner.
var errOverlap = &fault.Error{Kind: fault.ErrConflict, Message: "the directory is already used by another workspace, or lies inside or around one; workspaces never share or nest directories",
	Violations: []fault.Violation{{Field: "path", Reason: "overlaps another workspace's directory"}}}

// OverlappingWorkspaces returns the ids of the workspaces other than except
// whose directory is path, lies inside path, or contains it — compared as
// the cleaned, resolved paths the store keeps.
func (s *Store) OverlappingWorkspaces(ctx context.Context, path, except string) ([]string, error) {
	ids, err := overlapping(ctx, s.conn(), path, except)
	if err != nil {
		return nil, fmt.Errorf("overlapping workspaces: %w", err)
	}
	return ids, nil
}

// overlapping finds the workspaces whose path equals path, is an ancestor of
// it or a descendant of it. Prefixes are compared with substr, not LIKE, so
// that "%" and "_" in a path are plain characters.
func overlapping(ctx context.Context, c conn, path, except string) ([]string, error) {
	rows, err := c.query(ctx, `
		SELECT id FROM workspaces
		WHERE id <> ? AND (path = ?
			OR substr(?, 1, length(path) + 1) = path || '/'
			OR substr(path, 1, length(?) + 1) = ? || '/')`,
		except, path, path, path, path)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}
