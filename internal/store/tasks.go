package store

import (
	"context"
	"fmt"

	"github.com/berthhq/berth/internal/fault"
)

// CreateTaskRecord stores a new task. It is the one way tasks enter the
// store: the task service calls it when a task is submitted, and the runner
// later picks the task up from the queue. The caller fills every field; nil
// JSON documents are stored as NULL and nil Tags and Metadata as empty.
//
// A workspace, creator or continued task that does not exist is
// fault.NotFound; a task id that is taken is a fault.ErrConflict. t's times
// are set to their stored precision.
func (s *Store) CreateTaskRecord(ctx context.Context, t *TaskRecord) error {
	tags, err := encodeTags(t.Tags)
	if err != nil {
		return fmt.Errorf("create task: %w", err)
	}
	meta, err := encodeMetadata(t.Metadata)
	if err != nil {
		return fmt.Errorf("create task: %w", err)
	}
	var docs [6]any
	for i, doc := range [...][]byte{t.Config, t.Git, t.DockerBuild, t.Progress, t.Result, t.Error} {
		v, err := nullJSON(doc)
		if err != nil {
			return fmt.Errorf("create task: %w", err)
		}
		docs[i] = v
	}
	_, err = s.conn().exec(ctx, `
		INSERT INTO tasks (id, workspace_id, created_by, type, status, priority, prompt,
			config, git, docker_build, tags, metadata, progress, result, error,
			session_id, continue_task_id, cost_usd, lease_owner, lease_expires_at,
			created_at, started_at, completed_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		t.ID, t.WorkspaceID, nullString(t.CreatedBy), string(t.Type), string(t.Status), int64(t.Priority), t.Prompt,
		docs[0], docs[1], docs[2], tags, meta, docs[3], docs[4], docs[5],
		nullString(t.SessionID), nullString(t.ContinueTaskID), t.CostUSD, nullString(t.LeaseOwner), nullMicros(t.LeaseExpiresAt),
		micros(t.CreatedAt), nullMicros(t.StartedAt), nullMicros(t.CompletedAt))
	switch {
	case s.d.isUniqueViolation(err):
		return fault.New(fault.ErrConflict, "a task with this id already exists")
	case s.d.isForeignKeyViolation(err):
		return s.missingTaskParent(ctx, t)
	case err != nil:
		return fmt.Errorf("create task: %w", err)
	}
	if t.Tags == nil {
		t.Tags = []string{}
	}
	if t.Metadata == nil {
		t.Metadata = map[string]string{}
	}
	t.CreatedAt = storedTime(t.CreatedAt)
	t.StartedAt = storedTimePtr(t.StartedAt)
	t.CompletedAt = storedTimePtr(t.CompletedAt)
	t.LeaseExpiresAt = storedTimePtr(t.LeaseExpiresAt)
	return nil
}

// missingTaskParent names which row a task pointed at that does not exist,
// after its insert failed a foreign key. It asks outside the failed
// statement's transaction, which some engines abort.
func (s *Store) missingTaskParent(ctx context.Context, t *TaskRecord) error {
	checks := []struct {
		what, query, id string
	}{
		{"workspace", `SELECT COUNT(*) FROM workspaces WHERE id = ?`, t.WorkspaceID},
		{"user", `SELECT COUNT(*) FROM users WHERE id = ?`, t.CreatedBy},
		{"task", `SELECT COUNT(*) FROM tasks WHERE id = ?`, t.ContinueTaskID},
	}
	for _, c := range checks {
		if c.id == "" {
			continue
		}
		var n int
		if err := s.conn().queryRow(ctx, c.query, c.id).Scan(&n); err != nil {
			return fmt.Errorf("create task: %w", err)
		}
		if n == 0 {
			return fault.NotFound(c.what)
		}
	}
	return fault.NotFound("workspace")
}
