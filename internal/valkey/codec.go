package valkey

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/berthhq/berth/internal/event"
	"github.com/berthhq/berth/internal/store"
)

// EventCodec is the Codec of berth's bus events (package event), which the
// Bridge carries to the other instances: log lines whole, a task's change
// with the status and progress its followers send on (so that they need no
// store read on the receiving instance either), a workspace's change with
// its record.
type EventCodec struct{}

var _ Codec = EventCodec{}

// wireEvent is one event on the wire; exactly one field is set.
type wireEvent struct {
	Log       *wireLog                `json:"log,omitempty"`
	Task      *event.TaskChanged      `json:"task,omitempty"`
	Workspace *event.WorkspaceChanged `json:"ws,omitempty"`
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

// Encode implements Codec.
func (EventCodec) Encode(v any) ([]byte, error) {
	var e wireEvent
	switch v := v.(type) {
	case event.Log:
		e.Log = &wireLog{TaskID: v.TaskID, Seq: v.Seq, Time: v.Time, Level: v.Level, Source: v.Source, Message: v.Message, Fields: v.Fields}
	case *event.Line:
		e.Log = &wireLog{TaskID: v.TaskID, Seq: v.Seq, Time: v.Time, Level: v.Level, Source: v.Source, Message: v.Message, Fields: v.Fields}
	case event.TaskChanged:
		e.Task = &v
	case event.WorkspaceChanged:
		if v.Workspace == nil {
			return nil, fmt.Errorf("encode bus event: a workspace change without its workspace")
		}
		e.Workspace = &v
	default:
		return nil, fmt.Errorf("encode bus event: unknown type %T", v)
	}
	return json.Marshal(e)
}

// Decode implements Codec.
func (EventCodec) Decode(data []byte) (any, error) {
	var e wireEvent
	if err := json.Unmarshal(data, &e); err != nil {
		return nil, fmt.Errorf("decode bus event: %w", err)
	}
	switch {
	case e.Log != nil:
		l := e.Log
		// A Line, as local lines are published: this instance's
		// subscribers share its encodings too.
		return event.NewLine(store.LogEntry{TaskID: l.TaskID, Seq: l.Seq, Time: l.Time, Level: l.Level, Source: l.Source, Message: l.Message, Fields: l.Fields}), nil
	case e.Task != nil:
		return *e.Task, nil
	case e.Workspace != nil && e.Workspace.Workspace != nil:
		return *e.Workspace, nil
	}
	return nil, fmt.Errorf("decode bus event: no event in %d bytes", len(data))
}
