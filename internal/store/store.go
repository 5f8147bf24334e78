// Package store keeps berth's records — accounts and their OIDC identities,
// sessions, API keys, stream tickets, workspaces, their members, tasks and the
// audit log — in a SQL database, and is the only package that speaks SQL.
//
// One Store serves SQLite (the embedded default, see Open) and Postgres
// (several servers sharing one database, see OpenPostgres; OpenURL picks
// either from the server's configuration): queries are written once in portable SQL with ? placeholders and
// pass through a dialect that adapts them to the engine. Times are stored as
// BIGINT microseconds since the Unix epoch in UTC, booleans as INTEGER 0/1 and
// JSON documents as TEXT, so the same statements read and write both engines.
//
// Access control lives inside the queries: a read through a Viewer sees only
// what that viewer may see, and anything else is simply not found. Errors the
// caller can act on are faults (fault.ErrNotFound, fault.ErrConflict,
// fault.ErrInvalid, fault.ErrFailedPrecondition) whose messages never contain
// SQL; anything else is wrapped with the operation that failed.
//
// A task's structured parts are the task domain's own types
// (internal/taskdoc), encoded as a row is written and decoded once as it is
// read; a document that does not decode fails the read (taskdocs.go).
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"

	"go.opentelemetry.io/otel/trace"
)

// Store is berth's record store. It is safe for concurrent use.
type Store struct {
	db *sql.DB
	d  dialect

	// stmts caches prepared read statements by their rebound text, so hot
	// reads skip SQL parsing and planning (a third of a GetWorkspace call's
	// CPU before it). Queries are built from fixed fragments, so the set of
	// texts is small and bounded.
	stmts sync.Map // string → *sql.Stmt

	// bg counts the statements being prepared in the background (see
	// conn.stmt), which Close waits for: one still running after Close could
	// open a connection, and SQLite files with it, after the caller has
	// moved on or removed the database. closing, guarded by mu, stops new
	// ones once Close has begun.
	mu      sync.Mutex
	closing bool
	bg      sync.WaitGroup

	watch *writeWatch // nil: no one to tell about writes (see OnWrite)

	tracer trace.Tracer // nil: no spans (see UseTracing)
}

// Close closes the database, after any statement still being prepared in
// the background. Calls in flight may fail.
func (s *Store) Close() error {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	s.bg.Wait()
	var errs []error
	s.stmts.Range(func(_, v any) bool {
		errs = append(errs, v.(*sql.Stmt).Close())
		return true
	})
	return errors.Join(append(errs, s.db.Close())...)
}

// prepareLater prepares query in the background, off any transaction, so
// that the next call finds it cached. Nothing is started once Close has
// begun.
func (s *Store) prepareLater(query string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return
	}
	s.bg.Go(func() { _, _ = s.prepared(context.Background(), query) })
}

// prepared returns the cached prepared statement for a rebound query,
// preparing it on first use.
func (s *Store) prepared(ctx context.Context, query string) (*sql.Stmt, error) {
	if st, ok := s.stmts.Load(query); ok {
		return st.(*sql.Stmt), nil
	}
	st, err := s.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if prev, loaded := s.stmts.LoadOrStore(query, st); loaded {
		_ = st.Close() // a duplicate prepared meanwhile; the cached one is used
		return prev.(*sql.Stmt), nil
	}
	return st, nil
}

// Engine names the SQL engine behind the store: "sqlite" or "postgres".
func (s *Store) Engine() string { return s.d.name() }

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
	q       querier
	d       dialect
	s       *Store
	tx      *sql.Tx // nil outside a transaction
	touched *bool   // in a write transaction: set when it wrote a watched table
}

// stmt returns the cached statement for query, bound to the transaction
// when there is one; ok is false when the query runs unprepared instead.
// Inside a transaction a statement is only taken from the cache: preparing
// needs a second connection from the bounded pool while the transaction
// holds one, which could deadlock when every connection is in a
// transaction. A miss runs unprepared and prepares the statement in the
// background, off the transaction, for the next call.
func (c conn) stmt(ctx context.Context, query string) (*sql.Stmt, bool) {
	if c.tx != nil {
		st, ok := c.s.stmts.Load(query)
		if !ok {
			c.s.prepareLater(query)
			return nil, false
		}
		return c.tx.StmtContext(ctx, st.(*sql.Stmt)), true
	}
	st, err := c.s.prepared(ctx, query)
	if err != nil {
		return nil, false
	}
	return st, true
}

func (c conn) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	rebound := c.d.rebind(query)
	qctx, end := c.s.traced(ctx, rebound)
	res, err := c.q.ExecContext(qctx, rebound, args...)
	end(err)
	if err == nil {
		c.wrote(ctx, query)
	}
	return res, err
}

func (c conn) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	c.wrote(ctx, query) // a write with RETURNING (reported early outside a transaction)
	query = c.d.rebind(query)
	ctx, end := c.s.traced(ctx, query) // the query, not the reading of its rows
	if st, ok := c.stmt(ctx, query); ok {
		rows, err := st.QueryContext(ctx, args...)
		end(err)
		return rows, err
	}
	rows, err := c.q.QueryContext(ctx, query, args...)
	end(err)
	return rows, err
}

func (c conn) queryRow(ctx context.Context, query string, args ...any) *sql.Row {
	defer c.wrote(ctx, query) // a write with RETURNING (reported early outside a transaction)
	query = c.d.rebind(query)
	ctx, end := c.s.traced(ctx, query)
	if st, ok := c.stmt(ctx, query); ok {
		row := st.QueryRowContext(ctx, args...)
		end(row.Err())
		return row
	}
	row := c.q.QueryRowContext(ctx, query, args...)
	end(row.Err())
	return row
}

// lock takes the dialect's transaction-scoped lock key, if it has one:
// only inside a transaction, which holds it until it ends.
func (c conn) lock(ctx context.Context, key lockKey) error {
	q := c.d.lockXact(key)
	if q == "" {
		return nil
	}
	if _, err := c.exec(ctx, q); err != nil {
		return fmt.Errorf("take lock %d: %w", int64(key), err)
	}
	return nil
}

// lockFor takes the dialect's transaction-scoped lock of family for name,
// if it has one, as lock does.
func (c conn) lockFor(ctx context.Context, family lockFamily, name string) error {
	q := c.d.lockXactFor(family)
	if q == "" {
		return nil
	}
	if _, err := c.exec(ctx, q, name); err != nil {
		return fmt.Errorf("take lock %d for %s: %w", int32(family), name, err)
	}
	return nil
}

// scanner is a *sql.Row or *sql.Rows.
type scanner interface {
	Scan(dest ...any) error
}

// conn returns a conn on the database itself, outside any transaction.
func (s *Store) conn() conn {
	return conn{q: s.db, d: s.d, s: s}
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
	return s.runTx(ctx, s.d.readTx(), fn)
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
	touched := false
	if err := fn(conn{q: tx, d: s.d, s: s, tx: tx, touched: &touched}); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	if touched {
		s.watch.fn(context.WithoutCancel(ctx))
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
