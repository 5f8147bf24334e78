package task_test

import (
	"testing"

	"github.com/berthhq/berth/internal/event"
	"github.com/berthhq/berth/internal/store"
	"github.com/berthhq/berth/internal/task"
)

// TestCreatedAnnouncedFirst: a watcher of the workspace hears of a new
// task as queued before it hears the task run, even when the runner
// claims and starts the task while Create is still between storing it and
// announcing it (held there by the test until the task is stored RUNNING).
func TestCreatedAnnouncedFirst(t *testing.T) {
	t.Parallel()
	var rig *serviceRig
	rig = newHookedServiceRig(t, task.RunnerConfig{}, func(where, id string) {
		if where != "task-stored" {
			return
		}
		eventually(t, "the runner starts task "+id+" before Create announces it", func() bool {
			tr, _, err := rig.st.FindTask(t.Context(), id, store.Viewer{Admin: true})
			must(t, err)
			return tr.Status != store.TaskQueued
		})
	})
	sub := rig.bus.Subscribe(event.WorkspaceTopic(rig.ws.ID), 1024)
	defer sub.Close()
	tr := rig.create(t, task.Spec{Type: store.TaskClaudeChat, Prompt: "announce me"})
	rig.ended(t, tr.ID)
	var order []store.TaskStatus
	for len(order) == 0 || !order[len(order)-1].Terminal() {
		v, err := sub.Recv(t.Context())
		must(t, err)
		ev := v.(event.TaskChanged)
		if ev.TaskID == tr.ID {
			order = append(order, ev.Status)
		}
	}
	if order[0] != store.TaskQueued {
		t.Fatalf("the workspace's watchers heard %v: the task ran before it was announced", order)
	}
	for _, s := range order[1:] {
		if s == store.TaskQueued {
			t.Fatalf("the workspace's watchers heard %v", order)
		}
	}
}
