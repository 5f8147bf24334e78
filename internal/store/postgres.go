package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

//go:embed migrations/postgres/*.sql
var postgresMigrations embed.FS

// DefaultPostgresConns is the size of a Postgres store's connection pool
// when OpenPostgres is given none.
const DefaultPostgresConns = 10

// OpenURL opens the store a server is configured with: Postgres when
// databaseURL is a postgres:// or postgresql:// URL, with a pool of
// maxConns connections (see OpenPostgres); the SQLite file at sqlitePath
// when databaseURL is empty (see Open). Any other URL is refused. Errors
// never contain the URL's password.
func OpenURL(ctx context.Context, databaseURL, sqlitePath string, maxConns int) (*Store, error) {
	if databaseURL == "" {
		return Open(ctx, sqlitePath)
	}
	scheme, _, ok := strings.Cut(databaseURL, "://")
	switch {
	case ok && (scheme == "postgres" || scheme == "postgresql"):
		return OpenPostgres(ctx, databaseURL, maxConns)
	case ok && !strings.ContainsAny(scheme, "@/:"):
		return nil, fmt.Errorf("open store: unsupported database URL scheme %q: want postgres:// or postgresql://, or none for SQLite", scheme)
	default:
		return nil, errors.New("open store: the database URL must start with postgres:// or postgresql://")
	}
}

// OpenPostgres opens the Postgres database at databaseURL (a postgres://
// URL or a key=value connection string, as pgx reads them) through a pool of
// at most maxConns connections — DefaultPostgresConns when maxConns is 0 or
// less — and brings its schema up to date. Several servers may open one
// database at once: they apply each migration once, one after the other.
// Errors never contain the URL's password.
func OpenPostgres(ctx context.Context, databaseURL string, maxConns int) (*Store, error) {
	if maxConns <= 0 {
		maxConns = DefaultPostgresConns
	}
	cfg, err := pgx.ParseConfig(databaseURL)
	if err != nil {
		// The parser's message quotes the URL, password and all when it is
		// too malformed to redact, so it is left out.
		return nil, errors.New("open postgres store: the database URL cannot be parsed")
	}
	where := fmt.Sprintf("%s:%d/%s", cfg.Host, cfg.Port, cfg.Database)
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(maxConns)
	db.SetMaxIdleConns(maxConns)
	// Idle connections go after a while, so that a quiet server does not
	// hold a busy database's connection slots.
	db.SetConnMaxIdleTime(5 * time.Minute)
	s := &Store{db: db, d: postgresDialect{}}
	if err := s.Ping(ctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open postgres store %s: %w", where, redactPassword(err, cfg.Password))
	}
	if _, err := s.Migrate(ctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open postgres store %s: %w", where, redactPassword(err, cfg.Password))
	}
	return s, nil
}

// redactPassword returns err with every occurrence of password in its
// message masked, keeping err in the chain for errors.Is and errors.As.
func redactPassword(err error, password string) error {
	if password == "" || !strings.Contains(err.Error(), password) {
		return err
	}
	return &redactedError{msg: strings.ReplaceAll(err.Error(), password, "xxxxx"), err: err}
}

// redactedError is an error whose message had a password masked.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// postgresDialect is Postgres as pgx drives it through database/sql.
type postgresDialect struct{}

func (postgresDialect) name() string { return "postgres" }

func (postgresDialect) rebind(query string) string { return rebindDollar(query) }

func (postgresDialect) isUniqueViolation(err error) bool { return pgCode(err) == "23505" }

func (postgresDialect) isForeignKeyViolation(err error) bool { return pgCode(err) == "23503" }

func (postgresDialect) forUpdate() string { return " FOR UPDATE" }

// skipLocked lets concurrent claimers each take a different queued task
// rather than queue up behind the one they all saw first.
func (postgresDialect) skipLocked() string { return " FOR UPDATE SKIP LOCKED" }

// lockXact takes an advisory lock held until the transaction ends.
func (postgresDialect) lockXact(key lockKey) string {
	return fmt.Sprintf("SELECT pg_advisory_xact_lock(%d)", int64(key))
}

// lockXactFor takes the advisory lock (family, hashtext(name)) until the
// transaction ends.
func (postgresDialect) lockXactFor(family lockFamily) string {
	return fmt.Sprintf("SELECT pg_advisory_xact_lock(%d, hashtext(?))", int32(family))
}

// readTx is REPEATABLE READ: under Postgres's default, READ COMMITTED,
// each statement sees the database anew, and a page could disagree with the
// count read just before it.
func (postgresDialect) readTx() *sql.TxOptions {
	return &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true}
}

// anyText passes text that may hold any bytes, NUL included, as bytes: the
// column is BYTEA, since Postgres's TEXT refuses NUL.
func (postgresDialect) anyText(s string) any { return []byte(s) }

// logCopy is true: COPY, or an INSERT of arrays, takes any batch in one
// statement, with no limit on bound parameters to chunk under.
func (postgresDialect) logCopy() bool { return true }

func (postgresDialect) migrations() (fs.FS, error) {
	return fs.Sub(postgresMigrations, "migrations/postgres")
}

// pgCode returns the SQLSTATE of a Postgres error, or "".
func pgCode(err error) string {
	var e *pgconn.PgError
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}
