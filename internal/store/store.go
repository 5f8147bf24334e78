// Package store keeps berth's records — accounts, sessions, workspaces, their
// members and tasks — in a SQL database, and is the only package that speaks
// SQL.
//
// One Store serves SQLite (the embedded default, see Open) and, later,
// Postgres: queries are written once in portable SQL with ? placeholders and
// pass through a dialect that adapts them to the engine. Times are stored as
// BIGINT microseconds since the Unix epoch in UTC, booleans as INTEGER 0/1 and
// JSON documents as TEXT, so the same statements read and write both engines.
//
// Access control lives inside the queries: a read through a Viewer sees only
// what that viewer may see, and anything else is simply not found. Errors the
// caller can act on are faults (fault.ErrNotFound, fault.ErrConflict,
// fault.ErrInvalid) whose messages never contain SQL; anything else is wrapped
// with the operation that failed.
//
// store imports only internal/fault from berth.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// Store is berth's record store. It is safe for concurrent use.
type Store struct {
	db *sql.DB
	d  dialect
}

// Close closes the database. Calls in flight may fail.
func (s *Store) Close() error {
	return s.db.Close()
}

// Ping checks that the database answers, for readiness probes.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.db.PingContext(ctx); err != nil {
		return fmt.Errorf("ping store: %w", err)
	}
	return nil
}

// querier is what a database and a transaction have in common.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// conn runs portable queries, rebinding their placeholders on the way, on
// either the database or one transaction.
type conn struct {
	q querier
	d dialect
}

func (c conn) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return c.q.ExecContext(ctx, c.d.rebind(query), args...)
}

func (c conn) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return c.q.QueryContext(ctx, c.d.rebind(query), args...)
}

func (c conn) queryRow(ctx context.Context, query string, args ...any) *sql.Row {
	return c.q.QueryRowContext(ctx, c.d.rebind(query), args...)
}

// scanner is a *sql.Row or *sql.Rows.
type scanner interface {
	Scan(dest ...any) error
}

// conn returns a conn on the database itself, outside any transaction.
func (s *Store) conn() conn {
	return conn{q: s.db, d: s.d}
}

// inTx runs fn in a write transaction and commits it if fn returns nil. On
// SQLite the transaction takes the write lock when it begins (_txlock=
// immediate), so what fn reads cannot change before it writes.
//
// fn must use only the conn it is given: taking another connection from the
// pool while holding this one can deadlock a small pool.
func (s *Store) inTx(ctx context.Context, fn func(c conn) error) error {
	return s.runTx(ctx, nil, fn)
}

// inReadTx runs fn in a read-only transaction, so that the several queries of
// one read see one snapshot of the database.
func (s *Store) inReadTx(ctx context.Context, fn func(c conn) error) error {
	return s.runTx(ctx, &sql.TxOptions{ReadOnly: true}, fn)
}

func (s *Store) runTx(ctx context.Context, opts *sql.TxOptions, fn func(c conn) error) (err error) {
	tx, err := s.db.BeginTx(ctx, opts)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	defer func() {
		if err != nil {
			if rerr := tx.Rollback(); rerr != nil && !errors.Is(rerr, sql.ErrTxDone) {
				err = errors.Join(err, fmt.Errorf("roll back: %w", rerr))
			}
		}
	}()
	if err := fn(conn{q: tx, d: s.d}); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// rowsAffected returns how many rows res changed.
func rowsAffected(res sql.Result) (int64, error) {
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("rows affected: %w", err)
	}
	return n, nil
}
