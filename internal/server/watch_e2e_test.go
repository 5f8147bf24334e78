package server_test

import (
	"context"
	"net/http"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"

	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
)

// TestWatchWorkspace: the watch starts with the workspace's state, then
// reports a task's lifecycle.
func TestWatchWorkspace(t *testing.T) {
	t.Parallel()
	e := newStreamEnv(t)
	ctx, cancel := context.WithTimeout(e.ctx, within(t))
	defer cancel()
	w, err := e.c.Workspace.WatchWorkspace(ctx, &berthv1.WatchWorkspaceRequest{WorkspaceId: e.ws})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	res, err := w.Receive()
	if err != nil {
		t.Fatal(err)
	}
	if ev := res.GetEvent(); ev.GetKind() != "workspace.status" || ev.GetWorkspace().GetId() != e.ws {
		t.Fatalf("first event %v", ev)
	}
	events, code := openSSE(t, ctx, e.srv.URL+"/api/v1/workspaces/"+e.ws+"/events", bearer(e.token))
	if code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	// The SSE stream is subscribed once its first event (the workspace's
	// state) arrives; the headers come before that.
	if ev, err, ok := events.next(); !ok || err != nil || ev.Type != "workspace.status" {
		t.Fatalf("first sse event %v %v", ev, err)
	}
	id := e.task(t, "watched")
	for _, next := range []func() *berthv1.WorkspaceEvent{
		func() *berthv1.WorkspaceEvent {
			res, err := w.Receive()
			if err != nil {
				t.Fatal(err)
			}
			return res.GetEvent()
		},
		func() *berthv1.WorkspaceEvent {
			ev, err, ok := events.next()
			if !ok || err != nil {
				t.Fatalf("sse: %v", err)
			}
			var out berthv1.WorkspaceEvent
			if err := protojson.Unmarshal([]byte(ev.Data), &out); err != nil {
				t.Fatal(err)
			}
			if out.GetKind() != ev.Type {
				t.Fatalf("event %q carries kind %q", ev.Type, out.GetKind())
			}
			return &out
		},
	} {
		// Every kind of event a workspace stream carries is really sent
		// (workspace.status came first), each with what it promises.
		seen := map[string]bool{}
		for {
			ev := next()
			if ev.GetTaskId() != id {
				continue
			}
			seen[ev.GetKind()] = true
			switch ev.GetKind() {
			case "task.created":
				if ev.GetTask().GetId() != id || ev.GetTask().GetStatus() != berthv1.TaskStatus_TASK_STATUS_QUEUED || ev.GetTask().GetPrompt() != "watched" {
					t.Errorf("task.created carries %v", ev.GetTask())
				}
			case "task.progress":
				if ev.GetTaskProgress() == nil || ev.GetTaskProgress().GetCurrent() == 0 {
					t.Errorf("task.progress carries no progress: %v", ev)
				}
			case "task.status":
			default:
				t.Errorf("unknown event kind %q", ev.GetKind())
			}
			if ev.GetTaskStatus() == berthv1.TaskStatus_TASK_STATUS_SUCCEEDED {
				if ev.GetKind() != "task.status" {
					t.Errorf("kind %q", ev.GetKind())
				}
				break
			}
		}
		for _, kind := range []string{"task.created", "task.status", "task.progress"} {
			if !seen[kind] {
				t.Errorf("no %s event (saw %v)", kind, seen)
			}
		}
	}
}
