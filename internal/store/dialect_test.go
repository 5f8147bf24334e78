package store

import (
	"testing"
	"testing/fstest"
)

func TestRebindDollar(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{`SELECT 1`, `SELECT 1`},
		{`SELECT * FROM t WHERE a = ? AND b = ?`, `SELECT * FROM t WHERE a = $1 AND b = $2`},
		{`VALUES (?, ?, ?)`, `VALUES ($1, $2, $3)`},
		{`SELECT '?' , ? FROM "a?b"`, `SELECT '?' , $1 FROM "a?b"`},
		{`SELECT 'it''s ?', ?`, `SELECT 'it''s ?', $1`},
		{"SELECT ? -- why?\n, ?", "SELECT $1 -- why?\n, $2"},
		{`SELECT ? /* ? */ , ?`, `SELECT $1 /* ? */ , $2`},
		{`LIKE ? ESCAPE '\'`, `LIKE $1 ESCAPE '\'`},
		{`SELECT 'unterminated ?`, `SELECT 'unterminated ?`},
	}
	for _, tt := range tests {
		if got := rebindDollar(tt.in); got != tt.want {
			t.Errorf("rebindDollar(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestSQLiteRebindKeepsPlaceholders(t *testing.T) {
	t.Parallel()
	q := `SELECT ? FROM t WHERE a = ?`
	if got := (sqliteDialect{}).rebind(q); got != q {
		t.Errorf("rebind(%q) = %q", q, got)
	}
}

func TestLikeContains(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{`abc`, `%abc%`},
		{`100%`, `%100\%%`},
		{`a_b`, `%a\_b%`},
		{`back\slash`, `%back\\slash%`},
		{``, `%%`},
	}
	for _, tt := range tests {
		if got := likeContains(tt.in); got != tt.want {
			t.Errorf("likeContains(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestLoadMigrations(t *testing.T) {
	t.Parallel()
	fsys, err := sqliteDialect{}.migrations()
	if err != nil {
		t.Fatal(err)
	}
	ms, err := loadMigrations(fsys)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 || ms[0].version != 1 {
		t.Fatalf("migrations = %d, first %+v", len(ms), ms)
	}
}

func TestLoadMigrationsRefusesGapsAndStrayFiles(t *testing.T) {
	t.Parallel()
	file := &fstest.MapFile{Data: []byte("CREATE TABLE t (id TEXT);")}
	tests := map[string]fstest.MapFS{
		"gap":       {"0001_a.sql": file, "0003_c.sql": file},
		"duplicate": {"0001_a.sql": file, "0001_b.sql": file},
		"not first": {"0002_b.sql": file},
		"bad name":  {"0001_a.sql": file, "2_b.sql": file},
		"not sql":   {"0001_a.sql": file, "README.md": file},
	}
	for name, fsys := range tests {
		if _, err := loadMigrations(fsys); err == nil {
			t.Errorf("%s: loadMigrations accepted %v", name, fsys)
		}
	}
	ms, err := loadMigrations(fstest.MapFS{"0002_b.sql": file, "0001_a.sql": file})
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 || ms[0].name != "0001_a.sql" || ms[1].version != 2 {
		t.Fatalf("migrations = %+v", ms)
	}
}
