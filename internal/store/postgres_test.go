package store_test

import (
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/berthhq/berth/internal/store"
	"github.com/berthhq/berth/internal/store/storetest"
	"github.com/berthhq/berth/internal/testsvc"
)

// openPostgres opens a store on a fresh Postgres database of the test's own.
func openPostgres(t *testing.T) *store.Store { return openPostgresTB(t) }

func openPostgresTB(tb testing.TB) *store.Store {
	tb.Helper()
	s, err := store.OpenPostgres(tb.Context(), testsvc.Postgres(tb), 4)
	if err != nil {
		tb.Fatalf("open: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("close: %v", err)
		}
	})
	return s
}

func TestPostgres(t *testing.T) {
	t.Parallel()
	storetest.Run(t, openPostgres)
}

// Servers started at once on an empty database migrate it once between
// them, and every one of them opens.
func TestPostgresConcurrentOpen(t *testing.T) {
	t.Parallel()
	url := testsvc.Postgres(t)
	const servers = 6
	var (
		wg     sync.WaitGroup
		stores = make([]*store.Store, servers)
		errs   = make([]error, servers)
	)
	for i := range servers {
		wg.Go(func() { stores[i], errs[i] = store.OpenPostgres(t.Context(), url, 2) })
	}
	wg.Wait()
	for i, s := range stores {
		if errs[i] != nil {
			t.Errorf("server %d: %v", i, errs[i])
			continue
		}
		t.Cleanup(func() { _ = s.Close() })
		if v, err := s.SchemaVersion(t.Context()); err != nil || v != latestMigration(t, "postgres") {
			t.Errorf("server %d: schema version %d, %v; want %d", i, v, err, latestMigration(t, "postgres"))
		}
	}
}

func TestPostgresReopenKeepsDataAndRefusesNewerSchema(t *testing.T) {
	t.Parallel()
	url := testsvc.Postgres(t)
	s, err := store.OpenPostgres(t.Context(), url, 2)
	if err != nil {
		t.Fatal(err)
	}
	if s.Engine() != "postgres" {
		t.Errorf("engine = %q", s.Engine())
	}
	if err := s.CreateUser(t.Context(), &store.User{ID: "u1", Email: "ada@example.com", Name: "Ada"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = store.OpenURL(t.Context(), url, "", 2)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := s.Migrate(t.Context()); err != nil || n != 0 {
		t.Fatalf("Migrate after reopening = %d, %v; want 0, nil", n, err)
	}
	got, err := s.FindUserByEmail(t.Context(), "ada@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if got.Role != store.RoleAdmin {
		t.Errorf("role = %q, want admin", got.Role)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// A later berth left a migration this one does not know.
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	_, err = conn.Exec(t.Context(), `INSERT INTO schema_migrations (version, applied_at) VALUES (99, 0)`)
	_ = conn.Close(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if s, err := store.OpenPostgres(t.Context(), url, 2); err == nil {
		_ = s.Close()
		t.Fatal("OpenPostgres accepted a database with a newer schema")
	}
}

func TestOpenURL(t *testing.T) {
	t.Parallel()
	s, err := store.OpenURL(t.Context(), "", filepath.Join(t.TempDir(), "berth.db"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if s.Engine() != "sqlite" {
		t.Errorf("no URL opened %q, want sqlite", s.Engine())
	}
	_ = s.Close()

	const password = "s3cret-Pa55"
	for _, url := range []string{
		"mysql://root:" + password + "@127.0.0.1/berth",
		"root:" + password + "@127.0.0.1/berth",
		"postgres://berth:" + password + "@127.0.0.1:1/berth?connect_timeout=5",
		"postgres://berth:" + password + "@127.0.0.1:notaport/berth",
		"postgresql://berth:" + password + "@127.0.0.1:1/berth?sslmode=nonsense",
	} {
		s, err := store.OpenURL(t.Context(), url, "", 1)
		if err == nil {
			_ = s.Close()
			t.Errorf("OpenURL opened %s", url)
			continue
		}
		if strings.Contains(err.Error(), password) {
			t.Errorf("the error for %s shows the password: %v", url, err)
		}
	}
}
