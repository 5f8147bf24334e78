package store

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// smallLogBatch is the largest batch appendLogsPostgres writes with one
// INSERT (insertLogArrays) rather than COPY (copyLogs). COPY writes rows
// about twice as fast, but takes four round trips (BEGIN, lock, COPY,
// COMMIT) to the INSERT's one, and a live log's batches, which group
// commit keeps to the few lines that came during the previous write, are
// small: at 2,000 lines/s one task's writer spent 150–200 µs of CPU a
// line with COPY alone.
const smallLogBatch = 128

// appendLogsPostgres writes entries on Postgres, all or none: a small
// batch in one INSERT, a large one with COPY. Either way a missing task is
// errNoTask and the batch's tasks are locked as a foreign key's check
// would lock them (see copyLogs).
func (s *Store) appendLogsPostgres(ctx context.Context, entries []LogEntry) error {
	if len(entries) <= smallLogBatch {
		return insertLogArrays(ctx, s.conn(), entries)
	}
	return s.copyLogs(ctx, entries)
}

// logArraysInsert inserts the rows of seven parallel arrays, one per
// column, in one statement of constant text whatever the batch's size,
// provided every task of the eighth array exists: the subquery takes the
// KEY SHARE lock of their rows for the statement's own transaction, as
// copyLogs does, and counts them; one missing, and no row is inserted.
const logArraysInsert = `INSERT INTO task_logs (task_id, seq, time, level, source, message, fields)
	SELECT * FROM unnest(?::text[], ?::bigint[], ?::bigint[], ?::text[], ?::text[], ?::bytea[], ?::text[])
	WHERE (SELECT count(*) FROM (SELECT 1 FROM tasks WHERE id = ANY(?::text[]) FOR KEY SHARE) AS locked) = ?`

// insertLogArrays writes entries in one statement that passes each column
// as an array; a single statement needs no transaction to be all or
// nothing. It returns errNoTask when a task of the batch does not exist.
func insertLogArrays(ctx context.Context, c conn, entries []LogEntry) error {
	n := len(entries)
	var (
		taskIDs, levels, sources = make([]string, n), make([]string, n), make([]string, n)
		seqs, times              = make([]int64, n), make([]int64, n)
		messages                 = make([][]byte, n)
		fields                   = make([]*string, n) // nil is NULL
	)
	for i, e := range entries {
		taskIDs[i], seqs[i], times[i], levels[i], sources[i] = e.TaskID, e.Seq, micros(e.Time), e.Level, e.Source
		messages[i] = []byte(e.Message)
		if len(e.Fields) > 0 {
			fields[i] = ptrTo(string(e.Fields))
		}
	}
	tasks := logTaskIDs(entries)
	res, err := c.exec(ctx, logArraysInsert, taskIDs, seqs, times, levels, sources, messages, fields, tasks, int64(len(tasks)))
	if err != nil {
		return err
	}
	inserted, err := rowsAffected(res)
	if err != nil {
		return err
	}
	if inserted == 0 {
		return errNoTask
	}
	return nil
}

// logTaskIDs returns the ids of the tasks entries belong to, each once.
func logTaskIDs(entries []LogEntry) []string {
	ids := []string{entries[0].TaskID}
	for _, e := range entries[1:] {
		if e.TaskID != ids[len(ids)-1] && !slices.Contains(ids, e.TaskID) {
			ids = append(ids, e.TaskID)
		}
	}
	return ids
}

// logCopyColumns are the task_logs columns a COPY fills, in the order
// logRows gives their values.
var logCopyColumns = []string{"task_id", "seq", "time", "level", "source", "message", "fields"}

// logCopyText is the statement copyLogs runs, as tracing names it.
const logCopyText = `COPY task_logs (task_id, seq, time, level, source, message, fields) FROM STDIN BINARY`

// errNoTask is what appendLogsPostgres fails with when a task of the batch does not
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
	ids := logTaskIDs(entries)
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
