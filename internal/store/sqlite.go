package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

//go:embed migrations/sqlite/*.sql
var sqliteMigrations embed.FS

// sqliteMaxConns bounds the pool. WAL lets readers run beside the one
// writer; writers queue on the lock for up to busy_timeout.
const sqliteMaxConns = 8

// Open opens the SQLite database file at path, creating it (mode 0600) and
// its directory (mode 0700) when missing, and brings its schema up to date.
//
// Every connection runs in WAL mode with busy_timeout 5000 ms, foreign keys
// enforced and synchronous NORMAL; write transactions begin IMMEDIATE, taking
// the write lock up front so that a read followed by a write in one
// transaction cannot be overtaken. An in-memory database is not supported:
// each pooled connection would see a different one.
func Open(ctx context.Context, path string) (*Store, error) {
	if path == "" || path == ":memory:" {
		return nil, errors.New("open sqlite store: a database file path is required")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open sqlite store: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		return nil, fmt.Errorf("open sqlite store: create directory: %w", err)
	}
	if err := createPrivateFile(abs); err != nil {
		return nil, fmt.Errorf("open sqlite store: %w", err)
	}
	db, err := sql.Open("sqlite", sqliteDSN(abs))
	if err != nil {
		return nil, fmt.Errorf("open sqlite store: %w", err)
	}
	db.SetMaxOpenConns(sqliteMaxConns)
	db.SetMaxIdleConns(sqliteMaxConns)
	s := &Store{db: db, d: sqliteDialect{}}
	if err := s.Ping(ctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open sqlite store %s: %w", abs, err)
	}
	if _, err := s.Migrate(ctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open sqlite store %s: %w", abs, err)
	}
	return s, nil
}

// createPrivateFile makes sure the database file exists and only its owner
// can read it: it holds password hashes. SQLite gives the -wal and -shm files
// the database file's mode.
func createPrivateFile(path string) error {
	// #nosec G304 -- the database file the operator configured
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("create database file: %w", err)
	}
	info, err := f.Stat()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("create database file: %w", err)
	}
	if info.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(path, 0o600); err != nil {
			return fmt.Errorf("restrict database file mode: %w", err)
		}
	}
	return nil
}

// sqliteDSN returns the modernc.org/sqlite data source name for the file at
// the absolute path abs. It is a file: URI, so that a path holding ? or #
// stays a path (the driver splits a plain name at its first ?).
func sqliteDSN(abs string) string {
	q := url.Values{}
	// busy_timeout first, so the pragmas after it wait for a lock rather than fail.
	q.Add("_pragma", "busy_timeout(5000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Set("_txlock", "immediate")
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(abs), RawQuery: q.Encode()}
	return u.String()
}

// sqliteDialect is SQLite as modernc.org/sqlite drives it.
type sqliteDialect struct{}

func (sqliteDialect) name() string { return "sqlite" }

// rebind keeps ? placeholders: SQLite takes them as they are.
func (sqliteDialect) rebind(query string) string { return query }

func (sqliteDialect) isUniqueViolation(err error) bool {
	code := sqliteCode(err)
	return code == sqlite3.SQLITE_CONSTRAINT_UNIQUE || code == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
}

func (sqliteDialect) isForeignKeyViolation(err error) bool {
	return sqliteCode(err) == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY
}

// forUpdate is empty: SQLite has no row locks, and none are needed, since a
// write transaction holds the database's write lock from its BEGIN.
func (sqliteDialect) forUpdate() string { return "" }

// skipLocked is empty: the write transaction already holds the database.
func (sqliteDialect) skipLocked() string { return "" }

// lockXact takes nothing: a write transaction already holds the database's
// write lock from its BEGIN.
func (sqliteDialect) lockXact(lockKey) string { return "" }

// lockXactFor takes nothing, as lockXact.
func (sqliteDialect) lockXactFor(lockFamily) string { return "" }

// readTx is a plain read-only transaction: in WAL mode a SQLite read
// transaction sees one snapshot already.
func (sqliteDialect) readTx() *sql.TxOptions { return &sql.TxOptions{ReadOnly: true} }

// anyText keeps the string: SQLite's TEXT holds any bytes.
func (sqliteDialect) anyText(s string) any { return s }

// logCopy is false: SQLite has no COPY; multi-row INSERTs it is.
func (sqliteDialect) logCopy() bool { return false }

func (sqliteDialect) migrations() (fs.FS, error) {
	return fs.Sub(sqliteMigrations, "migrations/sqlite")
}

// sqliteCode returns the extended result code of a SQLite error, or 0.
func sqliteCode(err error) int {
	var e *sqlite.Error
	if errors.As(err, &e) {
		return e.Code()
	}
	return 0
}
