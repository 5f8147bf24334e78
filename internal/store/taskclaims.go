package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/berthhq/berth/internal/fault"
	"github.com/berthhq/berth/internal/taskdoc"
)

// The task queue as runners see it: claiming the next task, renewing a
// lease, and ending the tasks whose runner died.

// ClaimTask takes the next task off the queue for the runner owner: the
// QUEUED task with the highest priority, then the oldest (ties by id), whose
// workspace runs fewer than maxPerWorkspace tasks and whose creator runs
// fewer than maxPerUser (0: no limit), and whose id is not in skip. A task
// whose creator is at the quota is passed over, so another user's task
// starts instead: the fair share. In one write transaction it becomes RUNNING, started at
// now() and leased to owner for lease from then, and is returned as it now is. now
// is read inside the transaction, once it holds the locks: a claim that waited
// for another task's end to commit starts after that end, never before it.
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
func (s *Store) ClaimTask(ctx context.Context, owner string, now func() time.Time, lease time.Duration, maxPerWorkspace, maxPerUser int, skip []string) (*TaskRecord, error) {
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
			at := now()
			leaseUntil := at.Add(lease)
			res, err := c.exec(ctx, `UPDATE tasks SET status = ?, started_at = ?, lease_owner = ?, lease_expires_at = ?
				WHERE id = ? AND status = ?`,
				string(TaskRunning), micros(at), owner, micros(leaseUntil), t.ID, string(TaskQueued))
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
			t.StartedAt = ptrTo(storedTime(at))
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
