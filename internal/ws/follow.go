package ws

import (
	"context"
	"encoding/json"
	"time"

	"github.com/berthhq/berth/internal/access"
	"github.com/berthhq/berth/internal/event"
	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
	"github.com/berthhq/berth/internal/store"
	"github.com/berthhq/berth/internal/stream"
	"github.com/berthhq/berth/internal/task"
)

// openTask opens the follow of task id's log after seq since, its status
// and progress, and its end, as the Connect stream StreamTaskLogs sends
// them, each the StreamTaskLogs message's payload (task.Payload) as JSON:
// the catch-up is sent when it returns, the rest as the follower is
// stepped (see subscription). A line from the bus goes to emitFrame as
// its whole event frame, encoded once for every subscriber of the task
// (logFrame); emit frames everything else.
func (s *session) openTask(ctx context.Context, p access.Principal, id string, since int64, emit func(string, []byte) error, emitFrame func([]byte) error, wake func()) (*stream.TaskFollower, bool, error) {
	return s.h.cfg.Tasks.OpenFollow(ctx, p, id, stream.After(since), func(ev stream.TaskEvent) error {
		if ev.Line != nil {
			// A line from the bus, which delivers task id's lines (the
			// task's own id, as the channel names it) to the follower.
			b, err := ev.Line.Encoded(event.FormatWebSocket, logFrame)
			if err != nil {
				return err
			}
			return emitFrame(b)
		}
		action, data, ok := task.Payload(task.StreamResponse(ev))
		if !ok {
			return nil
		}
		b, err := stream.JSON.Marshal(data)
		if err != nil {
			return err
		}
		return emit(action, b)
	}, wake)
}

// logData is a log line's event data, as followTask sends any line.
func logData(e store.LogEntry) ([]byte, error) {
	_, data, _ := task.Payload(task.StreamResponse(stream.TaskEvent{Kind: stream.KindLog, Log: e}))
	return stream.JSON.Marshal(data)
}

// logFrame is a log line's whole event frame on the channel of its task,
// stamped with the time it is encoded: the frame every subscriber of the
// task sends, the same bytes.
func logFrame(e store.LogEntry) ([]byte, error) {
	data, err := logData(e)
	if err != nil {
		return nil, err
	}
	return json.Marshal(Message{Type: "event", Channel: "task:" + e.TaskID, Action: "log", Data: data, Timestamp: time.Now().UTC()})
}

// openWorkspace opens the follow of workspace id: its state is sent when
// it returns, then its status changes and its tasks' lifecycle events as
// the watch is stepped, as the Connect stream WatchWorkspace sends them.
func (s *session) openWorkspace(ctx context.Context, p access.Principal, id string, emit func(string, []byte) error, wake func()) (*stream.Watch, error) {
	return s.h.cfg.Workspaces.OpenEvents(ctx, p, id, func(ev *berthv1.WorkspaceEvent) error {
		b, err := stream.JSON.Marshal(ev)
		if err != nil {
			return err
		}
		return emit(ev.GetKind(), b)
	}, wake)
}
