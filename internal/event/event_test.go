package event_test

import (
	"testing"

	"github.com/berthhq/berth/internal/event"
)

// TestTopics: the topic helpers and ParseTopic agree, and ParseTopic
// refuses anything else.
func TestTopics(t *testing.T) {
	t.Parallel()
	if got := event.TaskTopic("abc"); got != "task:abc" {
		t.Errorf("TaskTopic = %q", got)
	}
	if got := event.WorkspaceTopic("abc"); got != "workspace:abc" {
		t.Errorf("WorkspaceTopic = %q", got)
	}
	for topic, want := range map[string][2]string{
		event.TaskTopic("t1"):      {"task", "t1"},
		event.WorkspaceTopic("w1"): {"workspace", "w1"},
	} {
		kind, id, ok := event.ParseTopic(topic)
		if !ok || kind != want[0] || id != want[1] {
			t.Errorf("ParseTopic(%q) = %q, %q, %v", topic, kind, id, ok)
		}
	}
	for _, bad := range []string{"", "task:", "workspace:", "ws", "tasks:x", "Task:x"} {
		if kind, id, ok := event.ParseTopic(bad); ok {
			t.Errorf("ParseTopic(%q) = %q, %q, true", bad, kind, id)
		}
	}
}
