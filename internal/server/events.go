package server

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/berthhq/berth/internal/store"
	"github.com/berthhq/berth/internal/task"
	"github.com/berthhq/berth/internal/workspace"
)

// eventCodec encodes the bus's events for the Valkey bridge, which carries
// them to the other instances: log lines whole; a task's change as its id,
// workspace, status and progress only (followers read the task itself from
// the store; workspace watchers need no more, but on "task.created", when
// they read it); a workspace's status event with its record.
type eventCodec struct{}

// wireEvent is one event on the wire; exactly one field is set.
type wireEvent struct {
	Log       *wireLog       `json:"log,omitempty"`
	Task      *wireTask      `json:"task,omitempty"`
	Workspace *wireWorkspace `json:"ws,omitempty"`
}

type wireLog struct {
	TaskID  string          `json:"t"`
	Seq     int64           `json:"s"`
	Time    time.Time       `json:"at"`
	Level   string          `json:"l"`
	Source  string          `json:"src"`
	Message string          `json:"m"`
	Fields  json.RawMessage `json:"f,omitempty"`
}

type wireTask struct {
	ID          string           `json:"id"`
	WorkspaceID string           `json:"ws"`
	Status      store.TaskStatus `json:"st"`
	Progress    *task.Progress   `json:"p,omitempty"`
}

type wireWorkspace struct {
	Kind      string           `json:"k"`
	Workspace *store.Workspace `json:"w"`
	Time      time.Time        `json:"at"`
}

func (eventCodec) Encode(v any) ([]byte, error) {
	var e wireEvent
	switch v := v.(type) {
	case store.LogEntry:
		e.Log = &wireLog{TaskID: v.TaskID, Seq: v.Seq, Time: v.Time, Level: v.Level, Source: v.Source, Message: v.Message, Fields: v.Fields}
	case task.StatusEvent:
		e.Task = &wireTask{ID: v.Task.ID, WorkspaceID: v.Task.WorkspaceID, Status: v.Task.Status, Progress: v.Task.Progress}
	case workspace.Event:
		e.Workspace = &wireWorkspace{Kind: v.Kind, Workspace: v.Workspace, Time: v.Time}
	default:
		return nil, fmt.Errorf("encode bus event: unknown type %T", v)
	}
	return json.Marshal(e)
}

func (eventCodec) Decode(data []byte) (any, error) {
	var e wireEvent
	if err := json.Unmarshal(data, &e); err != nil {
		return nil, fmt.Errorf("decode bus event: %w", err)
	}
	switch {
	case e.Log != nil:
		l := e.Log
		return store.LogEntry{TaskID: l.TaskID, Seq: l.Seq, Time: l.Time, Level: l.Level, Source: l.Source, Message: l.Message, Fields: l.Fields}, nil
	case e.Task != nil:
		return task.StatusEvent{Task: &store.TaskRecord{ID: e.Task.ID, WorkspaceID: e.Task.WorkspaceID, Status: e.Task.Status, Progress: e.Task.Progress}}, nil
	case e.Workspace != nil && e.Workspace.Workspace != nil:
		return workspace.Event{Kind: e.Workspace.Kind, Workspace: e.Workspace.Workspace, Time: e.Workspace.Time}, nil
	}
	return nil, fmt.Errorf("decode bus event: no event in %d bytes", len(data))
}
