package store_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/berthhq/berth/internal/store"
)

// engines are the stores the benchmarks compare.
var engines = []struct {
	name string
	open func(testing.TB) *store.Store
}{
	{"sqlite", openSQLiteTB},
	{"postgres", openPostgresTB},
}

// BenchmarkAppendTaskLogs measures log ingest: lines of a running task
// stored in batches the task log writer's group commit makes (a few lines
// for a live log, hundreds to thousands for a flood; Postgres writes the
// first with one INSERT, the others with COPY), reported as lines per
// second.
func BenchmarkAppendTaskLogs(b *testing.B) {
	for _, engine := range engines {
		for _, batch := range []int{16, 256, 1024} {
			b.Run(fmt.Sprintf("%s/batch=%d", engine.name, batch), func(b *testing.B) {
				s := engine.open(b)
				tr := benchTask(b, s)
				entries := make([]store.LogEntry, batch)
				seq := int64(0)
				now := time.Now()
				b.ReportAllocs()
				start := time.Now()
				for b.Loop() {
					for i := range entries {
						seq++
						entries[i] = store.LogEntry{
							TaskID: tr.ID, Seq: seq, Time: now, Level: store.LogInfo, Source: store.LogStdout,
							Message: "2026-03-01T12:00:00Z INFO compiling package github.com/berthhq/berth/internal/store",
						}
					}
					if err := s.AppendTaskLogs(b.Context(), entries); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(seq)/time.Since(start).Seconds(), "lines/s")
			})
		}
	}
}

// benchTask stores a running task, with its owner and workspace.
func benchTask(b *testing.B, s *store.Store) *store.TaskRecord {
	b.Helper()
	ctx := b.Context()
	now := time.Now()
	u := &store.User{ID: uuid.NewString(), Email: "bench@example.com", CreatedAt: now, UpdatedAt: now}
	w := &store.Workspace{ID: uuid.NewString(), OwnerID: u.ID, Name: "bench", Path: "/srv/bench",
		Status: store.WorkspaceRunning, CreatedAt: now, UpdatedAt: now}
	tr := &store.TaskRecord{ID: uuid.NewString(), WorkspaceID: w.ID, CreatedBy: u.ID, Type: store.TaskClaudeChat,
		Status: store.TaskRunning, Priority: store.TaskPriorityMedium, CreatedAt: now, StartedAt: &now}
	for _, err := range []error{s.CreateUser(ctx, u), s.CreateWorkspace(ctx, w), s.CreateTaskRecord(ctx, tr)} {
		if err != nil {
			b.Fatal(err)
		}
	}
	return tr
}
