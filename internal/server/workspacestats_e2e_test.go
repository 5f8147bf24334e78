package server_test

import (
	"context"
	"testing"

	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
	"github.com/berthhq/berth/internal/testsvc"
)

// TestGetWorkspaceCountsFollowTasks checks that GetWorkspace's task counts,
// cached with the record (in process, and in Valkey), change as soon as a
// task is created and as soon as it ends: a read never shows counts from
// before a task write that completed.
func TestGetWorkspaceCountsFollowTasks(t *testing.T) {
	t.Parallel()
	for name, flags := range map[string][]string{
		"uncached":      {"--cache-ttl", "0"},
		"cached-local":  nil,
		"cached-valkey": {"--valkey-url", testsvc.StartRedis(t).URL()},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv := startServer(t, flags...)
			c := srv.clients(protocols[1])
			ctx := as(t.Context(), register(t, c, "counts@example.com").GetTokens().GetAccessToken())
			ws, err := c.Workspace.CreateWorkspace(ctx, &berthv1.CreateWorkspaceRequest{Name: "counts", Path: srv.mkdir(t, "counts")})
			if err != nil {
				t.Fatal(err)
			}
			id := ws.GetWorkspace().GetId()
			stats := func() *berthv1.WorkspaceStats {
				t.Helper()
				res, err := c.Workspace.GetWorkspace(ctx, &berthv1.GetWorkspaceRequest{Id: id})
				if err != nil {
					t.Fatal(err)
				}
				return res.GetWorkspace().GetStats()
			}
			for range 3 { // fill the caches
				if got := stats().GetTotalTasks(); got != 0 {
					t.Fatalf("total_tasks = %d before any task", got)
				}
			}
			for n := int64(1); n <= 2; n++ {
				task := createCountedTask(t, c, ctx, id)
				if got := stats().GetTotalTasks(); got != n {
					t.Fatalf("total_tasks = %d right after task %d was created", got, n)
				}
				waitTask(t, c, ctx, task, nil)
				s := stats()
				ended := s.GetCompletedTasks() + s.GetFailedTasks() + s.GetCancelledTasks() + s.GetTimedOutTasks()
				if s.GetTotalTasks() != n || s.GetRunningTasks() != 0 || ended != n {
					t.Fatalf("after task %d ended: %v", n, s)
				}
			}
		})
	}
}

// createCountedTask queues a claude_chat task (on the process runtime with
// no claude installed it fails at once) and returns its id.
func createCountedTask(t *testing.T, c clients, ctx context.Context, workspaceID string) string {
	t.Helper()
	res, err := c.Task.CreateTask(ctx, &berthv1.CreateTaskRequest{WorkspaceId: workspaceID, Type: berthv1.TaskType_TASK_TYPE_CLAUDE_CHAT, Prompt: "count me"})
	if err != nil {
		t.Fatal(err)
	}
	return res.GetTask().GetId()
}
