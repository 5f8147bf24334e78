package store

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// logCopyColumns are the task_logs columns a COPY fills, in the order
// logRows gives their values.
var logCopyColumns = []string{"task_id", "seq", "time", "level", "source", "message", "fields"}

// logCopyText is the statement copyLogs runs, as tracing names it.
const logCopyText = `COPY task_logs (task_id, seq, time, level, source, message, fields) FROM STDIN BINARY`

// errNoTask is what copyLogs fails with when a task of the batch does not
// exist.
var errNoTask = errors.New("task not found")

// copyLogs writes entries with Postgres's COPY in binary format, on a
// connection of the pool reached through database/sql's Conn.Raw: rows go
// to the server as one stream of typed values, with no SQL to parse, no
// parameters to bind and no arrays to build and unpack.
//
// task_logs has no foreign key on Postgres (migration 0004: its per-row
// check cost three times what the rows did), so the transaction first takes
// the KEY SHARE lock of each task the batch names, as that check did: a
// missing task fails the batch with errNoTask, and a task being deleted
// waits for the commit, after which its trigger deletes these lines too. A
// duplicate (task_id, seq) fails the COPY, and so the whole batch, with the
// same SQLSTATE as an INSERT's.
func (s *Store) copyLogs(ctx context.Context, entries []LogEntry) (err error) {
	c, err := s.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, c.Close()) }()
	ctx, end := s.traced(ctx, logCopyText)
	err = c.Raw(func(driverConn any) error {
		pc, ok := driverConn.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("a %T is not a pgx connection", driverConn)
		}
		return pgx.BeginFunc(ctx, pc.Conn(), func(tx pgx.Tx) error {
			if err := lockLogTasks(ctx, tx, entries); err != nil {
				return err
			}
			_, err := tx.CopyFrom(ctx, pgx.Identifier{"task_logs"}, logCopyColumns, newLogRows(entries))
			return err
		})
	})
	end(err)
	return err
}

// lockLogTasks takes, in tx, the KEY SHARE lock of the row of every task
// entries belong to: the rows cannot be deleted before tx ends. It returns
// errNoTask when one of them does not exist.
func lockLogTasks(ctx context.Context, tx pgx.Tx, entries []LogEntry) error {
	ids := []string{entries[0].TaskID}
	for _, e := range entries[1:] {
		if e.TaskID != ids[len(ids)-1] && !slices.Contains(ids, e.TaskID) {
			ids = append(ids, e.TaskID)
		}
	}
	rows, err := tx.Query(ctx, `SELECT id FROM tasks WHERE id = ANY($1) FOR KEY SHARE`, ids)
	if err != nil {
		return err
	}
	found := 0
	for rows.Next() {
		found++
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if found < len(ids) {
		return errNoTask
	}
	return nil
}

// logRows gives COPY the rows of entries, one reused slice of values at a
// time: pgx encodes each row before it asks for the next.
type logRows struct {
	entries []LogEntry
	i       int
	row     []any
}

func newLogRows(entries []LogEntry) *logRows {
	return &logRows{entries: entries, i: -1, row: make([]any, len(logCopyColumns))}
}

func (r *logRows) Next() bool {
	r.i++
	return r.i < len(r.entries)
}

// Values returns the current row. Message goes as bytes (the column is
// BYTEA: see postgresDialect.anyText) and absent Fields as NULL.
func (r *logRows) Values() ([]any, error) {
	e := &r.entries[r.i]
	var fields any
	if len(e.Fields) > 0 {
		fields = string(e.Fields)
	}
	r.row[0], r.row[1], r.row[2], r.row[3] = e.TaskID, e.Seq, micros(e.Time), e.Level
	r.row[4], r.row[5], r.row[6] = e.Source, []byte(e.Message), fields
	return r.row, nil
}

func (*logRows) Err() error { return nil }
