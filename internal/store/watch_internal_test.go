package store

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

func TestWriteWatchTouches(t *testing.T) {
	t.Parallel()
	w := &writeWatch{tables: []string{"tasks", "workspaces"}}
	for _, c := range []struct {
		query string
		want  bool
	}{
		{"UPDATE tasks SET status = ? WHERE id = ?", true},
		{"INSERT INTO\n\t\ttasks (id, status)", true},
		{"delete from workspaces where id = ?", true},
		{"INSERT INTO task_logs (task_id, seq) VALUES (?, ?)", false},
		{"DELETE FROM workspace_members WHERE workspace_id = ?", false},
		{"SELECT status FROM tasks WHERE id = ?", false},
		{"UPDATE task_logs SET x = 1; UPDATE tasks SET y = 2", true},
		{"UPDATE tasks", true},
	} {
		if got := w.touches(c.query); got != c.want {
			t.Errorf("touches(%q) = %v, want %v", c.query, got, c.want)
		}
	}
}

// TestOnWrite: a committed write to a watched table is reported once per
// transaction; reads and writes of other tables are not.
func TestOnWrite(t *testing.T) {
	t.Parallel()
	s, err := Open(t.Context(), filepath.Join(t.TempDir(), "berth.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var n atomic.Int64
	s.OnWrite([]string{"users"}, func(context.Context) { n.Add(1) })
	now := time.Now()
	u := &User{ID: "u1", Email: "w@example.com", Name: "w", Role: RoleMember, CreatedAt: now, UpdatedAt: now}
	if err := s.CreateUser(t.Context(), u); err != nil {
		t.Fatal(err)
	}
	if got := n.Load(); got != 1 {
		t.Fatalf("after CreateUser: %d reports, want 1", got)
	}
	if _, err := s.FindUserByID(t.Context(), "u1"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.ListUsers(t.Context(), UserFilter{Limit: 10}); err != nil {
		t.Fatal(err)
	}
	if got := n.Load(); got != 1 {
		t.Fatalf("after reads: %d reports, want 1", got)
	}
	if err := s.AppendAudit(t.Context(), &AuditEvent{ID: "a1", Action: "x", Outcome: "success", Time: now, Details: map[string]string{}}); err != nil {
		t.Fatal(err)
	}
	if got := n.Load(); got != 1 {
		t.Fatalf("after a write to another table: %d reports, want 1", got)
	}
}
