package store

import (
	"context"
	"fmt"
	"io/fs"
	"regexp"
	"sort"
	"strconv"
	"time"
)

// A migration is one versioned file of DDL, applied once, in order, in its
// own transaction. Files are named NNNN_what.sql and never edited once
// released: a change to the schema is a new file.
//
// SQLite cannot switch foreign keys off inside a transaction, so a later
// migration that rebuilds a table (create the new one, copy, drop, rename)
// runs with PRAGMA defer_foreign_keys = ON at its top instead.
type migration struct {
	version int
	name    string
	sql     string
}

var migrationName = regexp.MustCompile(`^([0-9]{4})_[a-z0-9_]+\.sql$`)

// loadMigrations reads the migration files of fsys in version order. The
// versions must run 1, 2, 3 … with no gap, so a missing file is noticed.
func loadMigrations(fsys fs.FS) ([]migration, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	var ms []migration
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		m := migrationName.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("read migrations: %q is not named NNNN_name.sql", e.Name())
		}
		v, _ := strconv.Atoi(m[1])
		b, err := fs.ReadFile(fsys, e.Name())
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", e.Name(), err)
		}
		ms = append(ms, migration{version: v, name: e.Name(), sql: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("read migrations: expected version %d, found %s", i+1, m.name)
		}
	}
	return ms, nil
}

// Migrate applies the migrations the database has not had yet and returns
// how many it applied; a database that is up to date gets none. Each runs in
// its own transaction together with its schema_migrations row, so a failed
// one leaves no trace and several servers starting at once apply each
// migration exactly once. A database whose schema is newer than this binary
// knows is refused rather than written to.
func (s *Store) Migrate(ctx context.Context) (applied int, err error) {
	fsys, err := s.d.migrations()
	if err != nil {
		return 0, fmt.Errorf("migrate: %w", err)
	}
	ms, err := loadMigrations(fsys)
	if err != nil {
		return 0, fmt.Errorf("migrate: %w", err)
	}
	err = s.inTx(ctx, func(c conn) error {
		// Under the lock: two Postgres servers creating the table at once
		// would otherwise collide in the catalog.
		if err := c.lock(ctx, lockMigrations); err != nil {
			return err
		}
		_, err := c.exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    INTEGER NOT NULL PRIMARY KEY,
			applied_at BIGINT  NOT NULL
		)`)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("migrate: create schema_migrations: %w", err)
	}
	current, err := s.SchemaVersion(ctx)
	if err != nil {
		return 0, fmt.Errorf("migrate: %w", err)
	}
	if current > len(ms) {
		return 0, fmt.Errorf("migrate: the %s database is at schema version %d, newer than the %d this binary knows; upgrade berth", s.d.name(), current, len(ms))
	}
	for _, m := range ms {
		if m.version <= current {
			continue
		}
		did := false
		err := s.inTx(ctx, func(c conn) error {
			// Another process may have applied it since SchemaVersion ran:
			// the lock this transaction holds (the write lock on SQLite, an
			// advisory lock on Postgres) settles who does, and the count
			// below, read after it is taken, sees the other's commit.
			if err := c.lock(ctx, lockMigrations); err != nil {
				return err
			}
			var n int
			if err := c.queryRow(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE version = ?`, m.version).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			if _, err := c.exec(ctx, m.sql); err != nil {
				return err
			}
			// applied_at is bookkeeping for operators, so it reads the wall
			// clock rather than an injected one.
			if _, err := c.exec(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`,
				m.version, micros(time.Now())); err != nil {
				return err
			}
			did = true
			return nil
		})
		if err != nil {
			return applied, fmt.Errorf("migrate: apply %s: %w", m.name, err)
		}
		if did {
			applied++
		}
	}
	return applied, nil
}

// SchemaVersion returns the version of the newest migration applied, 0 for a
// database that has none.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	if err := s.conn().queryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&v); err != nil {
		return 0, fmt.Errorf("schema version: %w", err)
	}
	return v, nil
}
