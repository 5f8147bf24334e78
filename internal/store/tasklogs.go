package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/berthhq/berth/internal/fault"
)

// logRowsPerInsert bounds the rows of one multi-row INSERT into task_logs
// (insertLogRows): 200 rows of 7 parameters stay well under SQLite's limit
// of 32766 bound parameters while amortising each statement.
const logRowsPerInsert = 200

// logLevels and logSources are the values a LogEntry may hold.
var (
	logLevels  = map[string]bool{LogDebug: true, LogInfo: true, LogWarn: true, LogError: true}
	logSources = map[string]bool{LogStdout: true, LogStderr: true, LogSystem: true, LogAssistant: true, LogTool: true}
)

// AppendTaskLogs stores entries, which may belong to several tasks, in one
// transaction: all of them or none. The caller numbers them (Seq); an entry
// whose (TaskID, Seq) is already stored is a fault.ErrConflict, an entry of
// a task that does not exist is fault.NotFound("task"), and an unknown
// Level or Source or malformed Fields is a fault.ErrInvalid.
func (s *Store) AppendTaskLogs(ctx context.Context, entries []LogEntry) error {
	if len(entries) == 0 {
		return nil
	}
	for _, e := range entries {
		if !logLevels[e.Level] {
			return fault.Invalid("level", "must be debug, info, warn or error")
		}
		if !logSources[e.Source] {
			return fault.Invalid("source", "must be stdout, stderr, system, assistant or tool")
		}
		if len(e.Fields) > 0 {
			if _, err := nullJSON(e.Fields); err != nil {
				return fault.Invalid("fields", "must be a JSON document")
			}
		}
	}
	var err error
	if s.d.logCopy() {
		err = s.appendLogsPostgres(ctx, entries)
	} else {
		err = s.inTx(ctx, func(c conn) error { return insertLogRows(ctx, c, entries) })
	}
	switch {
	case err == nil:
		return nil
	case s.d.isUniqueViolation(err):
		return fault.New(fault.ErrConflict, "a log entry with this sequence number is already stored")
	case s.d.isForeignKeyViolation(err), errors.Is(err, errNoTask):
		return fault.NotFound("task")
	default:
		return fmt.Errorf("append task logs: %w", err)
	}
}

// insertLogRows writes entries with multi-row INSERTs of up to
// logRowsPerInsert rows each, on c, a transaction.
func insertLogRows(ctx context.Context, c conn, entries []LogEntry) error {
	args := make([]any, 0, 7*min(len(entries), logRowsPerInsert))
	for start := 0; start < len(entries); start += logRowsPerInsert {
		chunk := entries[start:min(start+logRowsPerInsert, len(entries))]
		args = args[:0]
		for _, e := range chunk {
			fields, _ := nullJSON(e.Fields) // checked by the caller
			args = append(args, e.TaskID, e.Seq, micros(e.Time), e.Level, e.Source, c.d.anyText(e.Message), fields)
		}
		var err error
		if len(chunk) == logRowsPerInsert {
			err = c.execPrepared(ctx, logInsert(logRowsPerInsert), args...)
		} else {
			_, err = c.exec(ctx, logInsert(len(chunk)), args...)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// execPrepared runs a statement through the cache of prepared statements,
// like c.query does: for the full-size log INSERT, whose parsing otherwise
// costs as much as the rows it writes.
func (c conn) execPrepared(ctx context.Context, query string, args ...any) error {
	query = c.d.rebind(query)
	ctx, end := c.s.traced(ctx, query)
	if st, ok := c.stmt(ctx, query); ok {
		_, err := st.ExecContext(ctx, args...)
		end(err)
		return err
	}
	_, err := c.q.ExecContext(ctx, query, args...)
	end(err)
	return err
}

// logInsert is the INSERT of n task_logs rows.
func logInsert(n int) string {
	var b strings.Builder
	b.Grow(80 + n*24)
	b.WriteString(`INSERT INTO task_logs (task_id, seq, time, level, source, message, fields) VALUES `)
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(?, ?, ?, ?, ?, ?, ?)")
	}
	return b.String()
}

// LastLogSeq returns the highest Seq stored for the task, 0 when it has no
// log (or does not exist): where a writer that resumes the log goes on.
func (s *Store) LastLogSeq(ctx context.Context, taskID string) (int64, error) {
	var seq int64
	err := s.conn().queryRow(ctx, `SELECT COALESCE(MAX(seq), 0) FROM task_logs WHERE task_id = ?`, taskID).Scan(&seq)
	if err != nil {
		return 0, fmt.Errorf("last log seq: %w", err)
	}
	return seq, nil
}

// ListTaskLogs returns up to limit entries of the task's log after afterSeq,
// in Seq order; a limit of zero or less means no cap. Access to the task is
// the caller's to check first. The result is never nil.
func (s *Store) ListTaskLogs(ctx context.Context, taskID string, afterSeq int64, limit int) ([]LogEntry, error) {
	n := int64(limit)
	if n <= 0 {
		n = math.MaxInt64
	}
	rows, err := s.conn().query(ctx, `SELECT task_id, seq, time, level, source, message, fields FROM task_logs
		WHERE task_id = ? AND seq > ? ORDER BY seq LIMIT ?`, taskID, afterSeq, n)
	if err != nil {
		return nil, fmt.Errorf("list task logs: %w", err)
	}
	defer rows.Close()
	list := []LogEntry{}
	for rows.Next() {
		var (
			e      LogEntry
			t      int64
			fields sql.NullString
		)
		if err := rows.Scan(&e.TaskID, &e.Seq, &t, &e.Level, &e.Source, &e.Message, &fields); err != nil {
			return nil, fmt.Errorf("list task logs: %w", err)
		}
		e.Time = fromMicros(t)
		e.Fields = rawJSON(fields)
		list = append(list, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list task logs: %w", err)
	}
	return list, nil
}

// DeleteTaskLogsBefore deletes the logs of the tasks that completed before
// the given time, for retention, and returns how many entries it deleted.
// The tasks themselves stay.
func (s *Store) DeleteTaskLogsBefore(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.conn().exec(ctx, `DELETE FROM task_logs WHERE task_id IN
		(SELECT id FROM tasks WHERE completed_at IS NOT NULL AND completed_at < ?)`, micros(before))
	if err != nil {
		return 0, fmt.Errorf("delete task logs: %w", err)
	}
	n, err := rowsAffected(res)
	if err != nil {
		return 0, fmt.Errorf("delete task logs: %w", err)
	}
	return n, nil
}
