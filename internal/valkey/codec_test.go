package valkey_test

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/berthhq/berth/internal/event"
	"github.com/berthhq/berth/internal/store"
	"github.com/berthhq/berth/internal/valkey"
)

// TestEventCodec: every bus event crosses to another instance whole — a
// task's change with the status and progress its followers send on, so
// that they need not read the task there either — except a created task's
// record, which stays on its own instance.
func TestEventCodec(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 2, 20, 0, 0, 123, time.UTC)
	events := []any{
		event.NewLine(store.LogEntry{TaskID: "t", Seq: 41, Time: at, Level: store.LogInfo, Source: store.LogStdout, Message: "hello", Fields: json.RawMessage(`{"k":"v"}`)}),
		event.TaskChanged{TaskID: "t", WorkspaceID: "w", Status: store.TaskRunning, Progress: event.Progress{Current: 3, Total: 10, Percentage: 30, Message: "turn 3"}},
		event.WorkspaceChanged{Workspace: &store.Workspace{ID: "w", Name: "n", Status: store.WorkspaceRunning, CreatedAt: at, UpdatedAt: at}, Time: at},
	}
	var codec valkey.EventCodec
	for _, v := range events {
		data, err := codec.Encode(v)
		if err != nil {
			t.Fatalf("Encode(%T): %v", v, err)
		}
		got, err := codec.Decode(data)
		if err != nil {
			t.Fatalf("Decode(%s): %v", data, err)
		}
		if !reflect.DeepEqual(got, v) {
			t.Errorf("%T: got back %+v, want %+v", v, got, v)
		}
	}
	created := event.TaskChanged{TaskID: "t", WorkspaceID: "w", Status: store.TaskQueued, Created: &store.TaskRecord{ID: "t", Prompt: "secret prompt"}}
	data, err := codec.Encode(created)
	if err != nil {
		t.Fatal(err)
	}
	got, err := codec.Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	if ch := got.(event.TaskChanged); ch.Created != nil || ch.TaskID != "t" || ch.Status != store.TaskQueued {
		t.Errorf("created: got back %+v", ch)
	}
	for _, bad := range []any{42, event.WorkspaceChanged{}} {
		if _, err := codec.Encode(bad); err == nil {
			t.Errorf("Encode(%#v) succeeded", bad)
		}
	}
	if _, err := codec.Decode([]byte(`{}`)); err == nil {
		t.Error("Decode({}) succeeded")
	}
}
