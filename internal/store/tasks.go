package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/berthhq/berth/internal/fault"
	"github.com/berthhq/berth/internal/taskdoc"
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
	return s.CreateTaskRecordWithin(ctx, t, 0)
}

// CreateTaskRecordWithin is CreateTaskRecord under the creator's quota of
// queued tasks: when maxQueued > 0 and t.CreatedBy already has maxQueued
// tasks QUEUED, nothing is stored and the call is a
// fault.ErrResourceExhausted naming the quota. The count and the insert are
// one transaction, serialised per creator (on Postgres by an advisory lock;
// on SQLite the write transaction excludes every other writer), so calls at
// once never queue more than the quota.
func (s *Store) CreateTaskRecordWithin(ctx context.Context, t *TaskRecord, maxQueued int64) error {
	tags, err := encodeTags(t.Tags)
	if err != nil {
		return fmt.Errorf("create task: %w", err)
	}
	meta, err := encodeMetadata(t.Metadata)
	if err != nil {
		return fmt.Errorf("create task: %w", err)
	}
	docs, err := encodeTaskDocs(t)
	if err != nil {
		return fmt.Errorf("create task: %w", err)
	}
	insert := func(c conn) error {
		_, err := c.exec(ctx, `
		INSERT INTO tasks (id, workspace_id, created_by, type, status, priority, prompt,
			config, git, docker_build, tags, metadata, progress, result, error,
			session_id, continue_task_id, cost_usd, lease_owner, lease_expires_at,
			created_at, started_at, completed_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			t.ID, t.WorkspaceID, nullString(t.CreatedBy), string(t.Type), string(t.Status), int64(t.Priority), t.Prompt,
			docs[0], docs[1], docs[2], tags, meta, docs[3], docs[4], docs[5],
			nullString(t.SessionID), nullString(t.ContinueTaskID), t.CostUSD, nullString(t.LeaseOwner), nullMicros(t.LeaseExpiresAt),
			micros(t.CreatedAt), nullMicros(t.StartedAt), nullMicros(t.CompletedAt))
		return err
	}
	if maxQueued > 0 && t.CreatedBy != "" && t.Status == TaskQueued {
		err = s.inTx(ctx, func(c conn) error {
			if err := c.lockFor(ctx, lockUserQueued, t.CreatedBy); err != nil {
				return err
			}
			var n int64
			if err := c.queryRow(ctx, `SELECT COUNT(*) FROM tasks WHERE created_by = ? AND status = ?`,
				t.CreatedBy, string(TaskQueued)).Scan(&n); err != nil {
				return fmt.Errorf("count queued tasks: %w", err)
			}
			if n >= maxQueued {
				return fault.New(fault.ErrResourceExhausted,
					"quota max-queued-per-user (%d) reached: you have %d tasks waiting in the queue; wait for some to start, or cancel some", maxQueued, n)
			}
			return insert(c)
		})
	} else {
		err = insert(s.conn())
	}
	switch {
	case isFault(err):
		return err
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

// taskColumns are read with the table aliased as t, in scanTask's order.
const taskColumns = `t.id, t.workspace_id, t.created_by, t.type, t.status, t.priority, t.prompt,
	t.config, t.git, t.docker_build, t.tags, t.metadata, t.progress, t.result, t.error,
	t.session_id, t.continue_task_id, t.cost_usd, t.lease_owner, t.lease_expires_at,
	t.created_at, t.started_at, t.completed_at`

// taskViewerFrom joins each task t to its workspace w and the reading
// viewer's membership m; its one argument is the viewer's user id.
const taskViewerFrom = ` FROM tasks t JOIN workspaces w ON w.id = t.workspace_id` + viewerJoin

// taskStatuses and taskTypes are the stored values, for checking filters.
var (
	taskStatuses = map[TaskStatus]bool{
		TaskQueued: true, TaskRunning: true, TaskSucceeded: true,
		TaskFailed: true, TaskCancelled: true, TaskTimedOut: true,
	}
	taskTypes = map[TaskType]bool{TaskClaudeChat: true, TaskGitOperation: true, TaskDockerBuild: true}
)

// FindTask returns the task with the given id and v's role in its
// workspace. A task v may not see — v may not see its workspace, by the rule
// of FindWorkspace — is fault.NotFound("task"), exactly like one that does
// not exist.
func (s *Store) FindTask(ctx context.Context, id string, v Viewer) (*TaskRecord, WorkspaceRole, error) {
	q := `SELECT ` + taskColumns + `, w.owner_id, m.role` + taskViewerFrom + ` WHERE t.id = ?`
	args := []any{v.UserID, id}
	if !v.Admin {
		q += ` AND ` + viewerCanSee
		args = append(args, v.UserID)
	}
	var (
		owner      string
		memberRole sql.NullString
	)
	t, err := scanTask(s.conn().queryRow(ctx, q, args...), &owner, &memberRole)
	if errors.Is(err, fault.ErrNotFound) {
		return nil, "", err
	}
	if err != nil {
		return nil, "", fmt.Errorf("find task: %w", err)
	}
	return t, accessRole(&Workspace{OwnerID: owner}, memberRole, v), nil
}

// TaskState is what a task's followers need of it: where it belongs, its
// status and its progress.
type TaskState struct {
	WorkspaceID string
	Status      TaskStatus
	Progress    *taskdoc.Progress
}

// FindTaskState reads task id's state, as an admin would, without the
// rest of its record: a stream reads it when it starts and when it
// lagged, and the whole record (prompt, configuration, result, tags) is
// most of what reading a task costs. No such task is a
// fault.ErrNotFound.
func (s *Store) FindTaskState(ctx context.Context, id string) (TaskState, error) {
	var (
		st     TaskState
		status string
		prog   sql.NullString
	)
	err := s.conn().queryRow(ctx, `SELECT workspace_id, status, progress FROM tasks WHERE id = ?`, id).Scan(&st.WorkspaceID, &status, &prog)
	if errors.Is(err, sql.ErrNoRows) {
		return TaskState{}, fault.NotFound("task")
	}
	if err != nil {
		return TaskState{}, fmt.Errorf("find task state: %w", err)
	}
	st.Status = TaskStatus(status)
	if err := decodeDoc("progress", prog, &st.Progress); err != nil {
		return TaskState{}, fmt.Errorf("task %s: %w", id, err)
	}
	return st, nil
}

// ListTasks returns one page of the tasks f.Viewer may see that match f,
// newest first (ties by id, so pages are stable), and the number of matching
// tasks on all pages. An unknown Status or Type is a fault.ErrInvalid.
func (s *Store) ListTasks(ctx context.Context, f TaskFilter) ([]*TaskRecord, int64, error) {
	from := taskViewerFrom
	args := []any{f.Viewer.UserID}
	var where []string
	if !f.Viewer.Admin {
		where = append(where, viewerCanSee)
		args = append(args, f.Viewer.UserID)
	}
	if f.WorkspaceID != "" {
		where = append(where, `t.workspace_id = ?`)
		args = append(args, f.WorkspaceID)
	}
	if f.Status != "" {
		if !taskStatuses[f.Status] {
			return nil, 0, fault.Invalid("status", "must be empty or a task status")
		}
		where = append(where, `t.status = ?`)
		args = append(args, string(f.Status))
	}
	if f.Type != "" {
		if !taskTypes[f.Type] {
			return nil, 0, fault.Invalid("type", "must be empty or a task type")
		}
		where = append(where, `t.type = ?`)
		args = append(args, string(f.Type))
	}
	if len(where) > 0 {
		from += ` WHERE ` + strings.Join(where, ` AND `)
	}
	list, total, err := readPage(ctx, s, taskColumns, from, args, `t.created_at DESC, t.id DESC`, f.Limit, f.Offset,
		func(row scanner) (*TaskRecord, error) { return scanTask(row) }, nil)
	if err != nil {
		return nil, 0, fmt.Errorf("list tasks: %w", err)
	}
	return list, total, nil
}

// SumTaskCost returns what the claude_chat tasks userID created at or after
// since have cost, in US dollars: the spending a per-user budget limits.
func (s *Store) SumTaskCost(ctx context.Context, userID string, since time.Time) (float64, error) {
	var sum float64
	err := s.conn().queryRow(ctx, `SELECT COALESCE(SUM(cost_usd), 0) FROM tasks
		WHERE created_by = ? AND type = ? AND created_at >= ?`,
		userID, string(TaskClaudeChat), micros(since)).Scan(&sum)
	if err != nil {
		return 0, fmt.Errorf("sum task cost: %w", err)
	}
	return sum, nil
}

// taskStatus reads a task's state; a missing task is fault.NotFound("task").
// In a write transaction the row stays locked until it ends.
func taskStatus(ctx context.Context, c conn, id string) (TaskStatus, error) {
	var status string
	err := c.queryRow(ctx, `SELECT status FROM tasks WHERE id = ?`+c.d.forUpdate(), id).Scan(&status)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fault.NotFound("task")
	}
	return TaskStatus(status), err
}

// scanTask reads taskColumns, then into extra any further columns; no row
// is fault.NotFound("task").
func scanTask(row scanner, extra ...any) (*TaskRecord, error) {
	var (
		t                                 TaskRecord
		createdBy, sessionID, continueID  sql.NullString
		leaseOwner                        sql.NullString
		typ, status, tags, meta           string
		priority                          int64
		config, git, build, prog, res, er sql.NullString
		leaseUntil, started, completed    sql.NullInt64
		created                           int64
	)
	dest := []any{&t.ID, &t.WorkspaceID, &createdBy, &typ, &status, &priority, &t.Prompt,
		&config, &git, &build, &tags, &meta, &prog, &res, &er,
		&sessionID, &continueID, &t.CostUSD, &leaseOwner, &leaseUntil,
		&created, &started, &completed}
	err := row.Scan(append(dest, extra...)...)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fault.NotFound("task")
	}
	if err != nil {
		return nil, err
	}
	t.CreatedBy, t.SessionID, t.ContinueTaskID, t.LeaseOwner = createdBy.String, sessionID.String, continueID.String, leaseOwner.String
	t.Type, t.Status, t.Priority = TaskType(typ), TaskStatus(status), TaskPriority(priority)
	if err := decodeTaskDocs(&t, config, git, build, prog, res, er); err != nil {
		return nil, fmt.Errorf("task %s: %w", t.ID, err)
	}
	if t.Tags, err = decodeTags(tags); err != nil {
		return nil, fmt.Errorf("task %s: %w", t.ID, err)
	}
	if t.Metadata, err = decodeMetadata(meta); err != nil {
		return nil, fmt.Errorf("task %s: %w", t.ID, err)
	}
	t.LeaseExpiresAt, t.StartedAt, t.CompletedAt = timePtr(leaseUntil), timePtr(started), timePtr(completed)
	t.CreatedAt = fromMicros(created)
	return &t, nil
}

// isFault reports whether err is one of the faults a caller acts on, which
// are returned as they are rather than wrapped.
func isFault(err error) bool {
	_, ok := fault.Message(err)
	return ok
}

// ptrTo returns a pointer to v.
func ptrTo[T any](v T) *T { return &v }
