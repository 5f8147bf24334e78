package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/berthhq/berth/internal/fault"
)

// AddMember shares a workspace with a user in the given role. The caller
// fills WorkspaceID, UserID, Role and CreatedAt; the user's Email (as
// User.Email gives it) and Name are filled in from the account. A workspace
// or user that does not exist is fault.NotFound; sharing with the owner, or
// with someone who is already a member, is a fault.ErrConflict.
func (s *Store) AddMember(ctx context.Context, m *Member) error {
	err := s.inTx(ctx, func(c conn) error {
		var owner string
		err := c.queryRow(ctx, `SELECT owner_id FROM workspaces WHERE id = ?`, m.WorkspaceID).Scan(&owner)
		if errors.Is(err, sql.ErrNoRows) {
			return fault.NotFound("workspace")
		}
		if err != nil {
			return err
		}
		var email, name string
		err = c.queryRow(ctx, `SELECT `+userEmail+`, u.name FROM users u WHERE u.id = ?`, m.UserID).Scan(&email, &name)
		if errors.Is(err, sql.ErrNoRows) {
			return fault.NotFound("user")
		}
		if err != nil {
			return err
		}
		if owner == m.UserID {
			return fault.New(fault.ErrConflict, "the user owns this workspace")
		}
		if _, err := c.exec(ctx, `INSERT INTO workspace_members (workspace_id, user_id, role, created_at) VALUES (?, ?, ?, ?)`,
			m.WorkspaceID, m.UserID, string(m.Role), micros(m.CreatedAt)); err != nil {
			return err
		}
		m.Email, m.Name = email, name
		return nil
	})
	switch {
	case err == nil:
		m.CreatedAt = storedTime(m.CreatedAt)
		return nil
	case errors.Is(err, fault.ErrNotFound), errors.Is(err, fault.ErrConflict):
		return err
	case s.d.isUniqueViolation(err):
		return fault.New(fault.ErrConflict, "the user is already a member of this workspace")
	default:
		return fmt.Errorf("add member: %w", err)
	}
}

// RemoveMember stops sharing a workspace with a user. A user who is not a
// member is fault.NotFound("member").
func (s *Store) RemoveMember(ctx context.Context, workspaceID, userID string) error {
	res, err := s.conn().exec(ctx, `DELETE FROM workspace_members WHERE workspace_id = ? AND user_id = ?`, workspaceID, userID)
	if err != nil {
		return fmt.Errorf("remove member: %w", err)
	}
	n, err := rowsAffected(res)
	if err != nil {
		return fmt.Errorf("remove member: %w", err)
	}
	if n == 0 {
		return fault.NotFound("member")
	}
	return nil
}

// ListMembers returns the members of a workspace, the earliest added first,
// with their emails and names. It does not check access: callers read the
// workspace through FindWorkspace first. A workspace without members, or
// one that does not exist, has an empty list.
func (s *Store) ListMembers(ctx context.Context, workspaceID string) ([]*Member, error) {
	rows, err := s.conn().query(ctx, `
		SELECT m.workspace_id, m.user_id, `+userEmail+`, u.name, m.role, m.created_at
		FROM workspace_members m JOIN users u ON u.id = m.user_id
		WHERE m.workspace_id = ?
		ORDER BY m.created_at, m.user_id`, workspaceID)
	if err != nil {
		return nil, fmt.Errorf("list members: %w", err)
	}
	defer rows.Close()
	members := []*Member{}
	for rows.Next() {
		var (
			m       Member
			role    string
			created int64
		)
		if err := rows.Scan(&m.WorkspaceID, &m.UserID, &m.Email, &m.Name, &role, &created); err != nil {
			return nil, fmt.Errorf("list members: %w", err)
		}
		m.Role = WorkspaceRole(role)
		m.CreatedAt = fromMicros(created)
		members = append(members, &m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list members: %w", err)
	}
	return members, nil
}
