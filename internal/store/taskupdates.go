package store

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/berthhq/berth/internal/fault"
	"github.com/berthhq/berth/internal/taskdoc"
)

// Writes to a task a runner holds: its end, and its progress as it runs.

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
