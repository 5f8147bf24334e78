package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/berthhq/berth/internal/taskdoc"

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

// ClaimTask takes the next task off the queue for the runner owner: the
// QUEUED task with the highest priority, then the oldest (ties by id), whose
// workspace runs fewer than maxPerWorkspace tasks and whose creator runs
// fewer than maxPerUser (0: no limit), and whose id is not in skip. A task
// whose creator is at the quota is passed over, so another user's task
// starts instead: the fair share. In one write transaction it becomes RUNNING, started at
// now and leased to owner until leaseUntil, and is returned as it now is.
// An empty queue is fault.NotFound("queued task").
//
// Two runners never claim one task: on Postgres the candidate row is
// locked as it is read (skipLocked), so concurrent claimers each take a
// different task rather than wait for the first one's, and the update only
// takes a task that is still queued in any case. The per-workspace count is
// taken after locking the workspace's row (forUpdate), so on Postgres two
// runners cannot both start the last allowed task of one workspace; on
// SQLite the write transaction already excludes every other writer. The
// per-user count likewise is taken under a per-user advisory lock.
func (s *Store) ClaimTask(ctx context.Context, owner string, now, leaseUntil time.Time, maxPerWorkspace, maxPerUser int, skip []string) (*TaskRecord, error) {
	var claimed *TaskRecord
	err := s.inTx(ctx, func(c conn) error {
		skipIDs := append([]string(nil), skip...)
		var fullWorkspaces, fullUsers []string
		for {
			q := `SELECT ` + taskColumns + ` FROM tasks t WHERE t.status = ?`
			args := []any{string(TaskQueued)}
			if len(skipIDs) > 0 {
				q += ` AND t.id NOT IN (` + placeholders(len(skipIDs)) + `)`
				for _, id := range skipIDs {
					args = append(args, id)
				}
			}
			if len(fullWorkspaces) > 0 {
				q += ` AND t.workspace_id NOT IN (` + placeholders(len(fullWorkspaces)) + `)`
				for _, id := range fullWorkspaces {
					args = append(args, id)
				}
			}
			if len(fullUsers) > 0 {
				q += ` AND (t.created_by IS NULL OR t.created_by NOT IN (` + placeholders(len(fullUsers)) + `))`
				for _, id := range fullUsers {
					args = append(args, id)
				}
			}
			if maxPerWorkspace > 0 {
				q += ` AND (SELECT COUNT(*) FROM tasks r WHERE r.workspace_id = t.workspace_id AND r.status = ?) < ?`
				args = append(args, string(TaskRunning), maxPerWorkspace)
			}
			if maxPerUser > 0 {
				q += ` AND (t.created_by IS NULL OR (SELECT COUNT(*) FROM tasks r WHERE r.created_by = t.created_by AND r.status = ?) < ?)`
				args = append(args, string(TaskRunning), maxPerUser)
			}
			q += ` ORDER BY t.priority DESC, t.created_at ASC, t.id ASC LIMIT 1` + c.d.skipLocked()
			t, err := scanTask(c.queryRow(ctx, q, args...))
			if errors.Is(err, fault.ErrNotFound) {
				return fault.NotFound("queued task")
			}
			if err != nil {
				return err
			}
			if maxPerWorkspace > 0 {
				full, err := workspaceFull(ctx, c, t.WorkspaceID, maxPerWorkspace)
				if err != nil {
					return err
				}
				if full {
					fullWorkspaces = append(fullWorkspaces, t.WorkspaceID)
					continue
				}
			}
			if maxPerUser > 0 && t.CreatedBy != "" {
				full, err := userFull(ctx, c, t.CreatedBy, maxPerUser)
				if err != nil {
					return err
				}
				if full {
					fullUsers = append(fullUsers, t.CreatedBy)
					continue
				}
			}
			res, err := c.exec(ctx, `UPDATE tasks SET status = ?, started_at = ?, lease_owner = ?, lease_expires_at = ?
				WHERE id = ? AND status = ?`,
				string(TaskRunning), micros(now), owner, micros(leaseUntil), t.ID, string(TaskQueued))
			if err != nil {
				return err
			}
			n, err := rowsAffected(res)
			if err != nil {
				return err
			}
			if n == 0 { // taken by another runner meanwhile (Postgres)
				skipIDs = append(skipIDs, t.ID)
				continue
			}
			t.Status = TaskRunning
			t.StartedAt = ptrTo(storedTime(now))
			t.LeaseOwner = owner
			t.LeaseExpiresAt = ptrTo(storedTime(leaseUntil))
			claimed = t
			return nil
		}
	})
	if errors.Is(err, fault.ErrNotFound) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("claim task: %w", err)
	}
	return claimed, nil
}

// workspaceFull locks the workspace's row until the transaction ends and
// reports whether it already runs limit tasks or more.
func workspaceFull(ctx context.Context, c conn, workspaceID string, limit int) (bool, error) {
	var id string
	if err := c.queryRow(ctx, `SELECT id FROM workspaces WHERE id = ?`+c.d.forUpdate(), workspaceID).Scan(&id); err != nil {
		return false, fmt.Errorf("lock workspace: %w", err)
	}
	var n int
	if err := c.queryRow(ctx, `SELECT COUNT(*) FROM tasks WHERE workspace_id = ? AND status = ?`,
		workspaceID, string(TaskRunning)).Scan(&n); err != nil {
		return false, fmt.Errorf("count running tasks: %w", err)
	}
	return n >= limit, nil
}

// userFull takes the user's running-task lock until the transaction ends
// and reports whether the user already runs limit tasks or more.
func userFull(ctx context.Context, c conn, userID string, limit int) (bool, error) {
	if err := c.lockFor(ctx, lockUserRunning, userID); err != nil {
		return false, err
	}
	var n int
	if err := c.queryRow(ctx, `SELECT COUNT(*) FROM tasks WHERE created_by = ? AND status = ?`,
		userID, string(TaskRunning)).Scan(&n); err != nil {
		return false, fmt.Errorf("count running tasks: %w", err)
	}
	return n >= limit, nil
}

// RenewLease extends owner's lease on a running task until the given time:
// the runner's heartbeat. A task that does not exist is
// fault.NotFound("task"); one that is no longer running or is leased to
// another owner is a fault.ErrFailedPrecondition.
func (s *Store) RenewLease(ctx context.Context, id, owner string, until time.Time) error {
	err := s.inTx(ctx, func(c conn) error {
		res, err := c.exec(ctx, `UPDATE tasks SET lease_expires_at = ? WHERE id = ? AND lease_owner = ? AND status = ?`,
			micros(until), id, owner, string(TaskRunning))
		if err != nil {
			return err
		}
		n, err := rowsAffected(res)
		if err != nil || n > 0 {
			return err
		}
		status, err := taskStatus(ctx, c, id)
		if err != nil {
			return err
		}
		if status != TaskRunning {
			return fault.New(fault.ErrFailedPrecondition, "the task is %s", status)
		}
		return fault.New(fault.ErrFailedPrecondition, "the task is leased by another runner")
	})
	if err != nil && !isFault(err) {
		return fmt.Errorf("renew lease: %w", err)
	}
	return err
}

// FinishTask moves a task from one of the states in from to the state to,
// compare-and-set, and writes every non-nil field of fin with it. A task in
// another state is left alone and the call is a fault.ErrFailedPrecondition
// naming its state; a missing one is fault.NotFound("task"). A terminal to
// clears the lease. It returns the task as it now is.
func (s *Store) FinishTask(ctx context.Context, id string, from []TaskStatus, to TaskStatus, fin TaskFinish) (*TaskRecord, error) {
	sets := []string{`status = ?`}
	args := []any{string(to)}
	set := func(column string, value any) {
		sets = append(sets, column+` = ?`)
		args = append(args, value)
	}
	for _, doc := range []struct {
		column string
		encode func() (sql.NullString, error) // nil: not set
	}{
		{"progress", docEncoder(fin.Progress)},
		{"result", docEncoder(fin.Result)},
		{"error", docEncoder(fin.Error)},
	} {
		if doc.encode == nil {
			continue
		}
		v, err := doc.encode()
		if err != nil {
			return nil, fmt.Errorf("finish task: %s: %w", doc.column, err)
		}
		set(doc.column, v)
	}
	if fin.SessionID != nil {
		set("session_id", nullString(*fin.SessionID))
	}
	if fin.CostUSD != nil {
		if err := checkCost(*fin.CostUSD); err != nil {
			return nil, fmt.Errorf("finish task: %w", err)
		}
		set("cost_usd", *fin.CostUSD)
	}
	if fin.CompletedAt != nil {
		set("completed_at", micros(*fin.CompletedAt))
	}
	if to.Terminal() {
		sets = append(sets, `lease_owner = NULL`, `lease_expires_at = NULL`)
	}
	var t *TaskRecord
	err := s.inTx(ctx, func(c conn) error {
		status, err := taskStatus(ctx, c, id)
		if err != nil {
			return err
		}
		if !slices.Contains(from, status) {
			return fault.New(fault.ErrFailedPrecondition, "the task is %s", status)
		}
		if _, err := c.exec(ctx, `UPDATE tasks SET `+strings.Join(sets, `, `)+` WHERE id = ?`, append(args, id)...); err != nil {
			return err
		}
		t, err = scanTask(c.queryRow(ctx, `SELECT `+taskColumns+` FROM tasks t WHERE t.id = ?`, id))
		return err
	})
	if err != nil && !isFault(err) {
		return nil, fmt.Errorf("finish task: %w", err)
	}
	return t, err
}

// checkCost refuses a cost that is negative or not finite: one such row
// gives its user budget headroom, or makes every SUM over the tasks
// infinite (and GetStats with it). The runner checks the agent's numbers
// first; this keeps a bug from storing one anyway.
func checkCost(c float64) error {
	if c < 0 || math.IsNaN(c) || math.IsInf(c, 0) {
		return fmt.Errorf("cost %v: want a finite amount of 0 or more", c)
	}
	return nil
}

// SetTaskProgress records a running task's progress, and its agent session
// id and cost so far when they are not nil, whatever its state. A nil
// progress leaves the stored one as it is. A missing task is
// fault.NotFound("task").
func (s *Store) SetTaskProgress(ctx context.Context, id string, progress *taskdoc.Progress, sessionID *string, costUSD *float64) error {
	var (
		sets []string
		args []any
	)
	if progress != nil {
		doc, err := encodeDoc(progress)
		if err != nil {
			return fmt.Errorf("set task progress: %w", err)
		}
		sets, args = append(sets, `progress = ?`), append(args, doc)
	}
	if sessionID != nil {
		sets = append(sets, `session_id = ?`)
		args = append(args, nullString(*sessionID))
	}
	if costUSD != nil {
		if err := checkCost(*costUSD); err != nil {
			return fmt.Errorf("set task progress: %w", err)
		}
		sets = append(sets, `cost_usd = ?`)
		args = append(args, *costUSD)
	}
	if len(sets) == 0 {
		// Nothing to write: the task must still exist.
		_, err := taskStatus(ctx, s.conn(), id)
		if err != nil && !isFault(err) {
			return fmt.Errorf("set task progress: %w", err)
		}
		return err
	}
	res, err := s.conn().exec(ctx, `UPDATE tasks SET `+strings.Join(sets, `, `)+` WHERE id = ?`, append(args, id)...)
	if err != nil {
		return fmt.Errorf("set task progress: %w", err)
	}
	n, err := rowsAffected(res)
	if err != nil {
		return fmt.Errorf("set task progress: %w", err)
	}
	if n == 0 {
		return fault.NotFound("task")
	}
	return nil
}

// FailInterrupted ends every RUNNING task leased to owner — to any owner
// when owner is "" — as FAILED, completed at now with taskErr as its error
// and no lease, and returns their ids, oldest first. A runner that is alone
// on its store calls it with "" when it starts: every task still RUNNING
// was left behind by a process that is gone.
func (s *Store) FailInterrupted(ctx context.Context, owner string, now time.Time, taskErr *taskdoc.Failure) ([]string, error) {
	where, args := ``, []any(nil)
	if owner != "" {
		where, args = ` AND t.lease_owner = ?`, []any{owner}
	}
	ended, err := s.failRunning(ctx, where, args, now, taskErr)
	if err != nil {
		return nil, fmt.Errorf("fail interrupted tasks: %w", err)
	}
	ids := make([]string, len(ended))
	for i, t := range ended {
		ids[i] = t.ID
	}
	return ids, nil
}

// FailExpiredLeases ends every RUNNING task whose lease expired before now
// — the runner that holds it, on whichever instance, stopped renewing it
// and so is taken to be dead — as FAILED, completed at now with taskErr as
// its error and no lease, and returns them as they now are, oldest first. A
// RUNNING task without a lease has no runner that could renew one, and is
// ended too. Every instance sweeps with it; of several at once, each task
// is ended by one, and a task another transaction holds (being renewed or
// finished) is left for the next sweep.
//
// It compares lease times written by other instances with now from this
// one's clock: the instances' clocks must agree to well within a lease.
//
// The tasks leased to the owners listed in except (the sweeping runner's
// own, which it is alive to run) are left alone.
func (s *Store) FailExpiredLeases(ctx context.Context, now time.Time, taskErr *taskdoc.Failure, except ...string) ([]*TaskRecord, error) {
	where, args := ` AND (t.lease_expires_at IS NULL OR t.lease_expires_at < ?)`, []any{micros(now)}
	for _, owner := range except {
		where += ` AND (t.lease_owner IS NULL OR t.lease_owner <> ?)`
		args = append(args, owner)
	}
	ended, err := s.failRunning(ctx, where, args, now, taskErr)
	if err != nil {
		return nil, fmt.Errorf("fail expired leases: %w", err)
	}
	return ended, nil
}

// failRunning ends the RUNNING tasks that also match where (" AND …", on
// the tasks table aliased t, with its args) as FAILED, completed at now
// with taskErr as its error and no lease, in one write transaction, and
// returns them as they now are, oldest first. The rows are locked as they
// are read; rows another transaction holds are passed over (skipLocked).
func (s *Store) failRunning(ctx context.Context, where string, whereArgs []any, now time.Time, taskErr *taskdoc.Failure) ([]*TaskRecord, error) {
	doc, err := encodeDoc(taskErr)
	if err != nil {
		return nil, err
	}
	ended := []*TaskRecord{}
	err = s.inTx(ctx, func(c conn) error {
		rows, err := c.query(ctx, `SELECT `+taskColumns+` FROM tasks t WHERE t.status = ?`+where+
			` ORDER BY t.created_at, t.id`+c.d.skipLocked(), append([]any{string(TaskRunning)}, whereArgs...)...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			t, err := scanTask(rows)
			if err != nil {
				return err
			}
			ended = append(ended, t)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if err := rows.Close(); err != nil {
			return err
		}
		for start := 0; start < len(ended); start += statsBatch {
			batch := ended[start:min(start+statsBatch, len(ended))]
			args := []any{string(TaskFailed), micros(now), doc}
			for _, t := range batch {
				args = append(args, t.ID)
			}
			if _, err := c.exec(ctx, `UPDATE tasks SET status = ?, completed_at = ?, error = ?,
				lease_owner = NULL, lease_expires_at = NULL
				WHERE id IN (`+placeholders(len(batch))+`)`, args...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, t := range ended {
		t.Status = TaskFailed
		t.CompletedAt = ptrTo(storedTime(now))
		t.Error = taskErr
		t.LeaseOwner, t.LeaseExpiresAt = "", nil
	}
	return ended, nil
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
