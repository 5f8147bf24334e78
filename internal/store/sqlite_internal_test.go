package store

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"
)

// TestSQLiteConnectionSettings checks the DSN's settings on pooled
// connections, several at once so that more than one is opened.
func TestSQLiteConnectionSettings(t *testing.T) {
	t.Parallel()
	s, err := Open(t.Context(), filepath.Join(t.TempDir(), "berth.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	conns := make([]interface{ Close() error }, 0, 3)
	for range 3 {
		c, err := s.db.Conn(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		want := map[string]string{
			"journal_mode": "wal",
			"busy_timeout": "5000",
			"foreign_keys": "1",
			"synchronous":  "1", // NORMAL
		}
		for pragma, value := range want {
			var got string
			if err := c.QueryRowContext(t.Context(), "PRAGMA "+pragma).Scan(&got); err != nil {
				t.Fatalf("PRAGMA %s: %v", pragma, err)
			}
			if got != value {
				t.Errorf("PRAGMA %s = %s, want %s", pragma, got, value)
			}
		}
	}
	for _, c := range conns {
		_ = c.Close()
	}
}

// TestSQLiteWriteTransactionsLockUpFront checks _txlock=immediate: a write
// transaction holds the write lock from BEGIN, so a second one waits at its
// own BEGIN, while a read-only transaction does not wait.
func TestSQLiteWriteTransactionsLockUpFront(t *testing.T) {
	t.Parallel()
	s, err := Open(t.Context(), filepath.Join(t.TempDir(), "berth.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	first, err := s.db.BeginTx(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = first.Rollback() }()

	read, err := s.db.BeginTx(t.Context(), &sql.TxOptions{ReadOnly: true})
	if err != nil {
		t.Fatalf("a read-only transaction waited for the writer: %v", err)
	}
	_ = read.Rollback()

	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	second, err := s.db.BeginTx(ctx, nil)
	if err == nil {
		_ = second.Rollback()
		t.Fatal("a second write transaction began while the first held the lock")
	}
}
