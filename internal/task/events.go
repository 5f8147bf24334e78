package task

import (
	"context"

	"google.golang.org/protobuf/proto"

	"github.com/berthhq/berth/internal/event"
	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
	"github.com/berthhq/berth/internal/store"
	"github.com/berthhq/berth/internal/stream"
	"github.com/berthhq/berth/internal/taskdoc"
)

// Changed is the event.TaskChanged that announces t's state as stored.
// It is a value: the runner goes on updating its own record while
// followers hold the event.
func Changed(t *store.TaskRecord) event.TaskChanged {
	ev := event.TaskChanged{TaskID: t.ID, WorkspaceID: t.WorkspaceID, Status: t.Status, Progress: eventProgress(t.Progress)}
	if t.Status == store.TaskQueued {
		ev.Created = new(*t)
	}
	return ev
}

// eventProgress is a stored progress as an event's (none: the zero one).
func eventProgress(p *taskdoc.Progress) event.Progress {
	if p == nil {
		return event.Progress{}
	}
	return event.Progress{Current: clamp32(p.Current), Total: clamp32(p.Total), Percentage: clamp32(p.Percentage), Message: p.Message} // clamp32: see claude.go
}

// StatusToProto is a task status as the API's enum.
func StatusToProto(s store.TaskStatus) berthv1.TaskStatus { return statusToProto[s] }

// EventProgressToProto is an event's progress as the API's message.
func EventProgressToProto(p event.Progress) *berthv1.TaskProgress {
	return &berthv1.TaskProgress{Current: p.Current, Total: p.Total, Percentage: p.Percentage, Message: p.Message}
}

// state reads task id's state from the store, for stream.Task: its
// status and progress alone, which is all a follower needs (never
// Created, the whole record a workspace's watchers announce).
func (s *Service) state(ctx context.Context, id string) (event.TaskChanged, error) {
	st, err := s.store.FindTaskState(ctx, id)
	if err != nil {
		return event.TaskChanged{}, err
	}
	return event.TaskChanged{TaskID: id, WorkspaceID: st.WorkspaceID, Status: st.Status, Progress: eventProgress(st.Progress)}, nil
}

// StreamResponse is a followed task's event as the API's message: the one
// conversion of task events to the wire. The Connect stream
// (StreamTaskLogs) sends it as it is; SSE and the WebSocket send its
// Payload under the payload's kind.
func StreamResponse(ev stream.TaskEvent) *berthv1.StreamTaskLogsResponse {
	res := &berthv1.StreamTaskLogsResponse{}
	switch ev.Kind {
	case stream.KindLog:
		res.Event = &berthv1.StreamTaskLogsResponse_Log{Log: LogToProto(ev.Log)}
	case stream.KindStatus:
		res.Event = &berthv1.StreamTaskLogsResponse_Status{Status: StatusToProto(ev.Status)}
	case stream.KindProgress:
		res.Event = &berthv1.StreamTaskLogsResponse_Progress{Progress: EventProgressToProto(ev.Progress)}
	case stream.KindEnd:
		res.Event = &berthv1.StreamTaskLogsResponse_End{End: &berthv1.TaskEnd{Status: StatusToProto(ev.Status), LastSeq: ev.LastSeq}}
	}
	return res
}

// Payload is what the event-per-message transports (SSE, WebSocket) send of
// a StreamResponse: its kind ("log", "status", "progress" or "end", the SSE
// event type and the WebSocket action) and its data — the LogEntry, the
// whole response for a status, the TaskProgress, the TaskEnd. ok is false
// for a response with no event.
func Payload(res *berthv1.StreamTaskLogsResponse) (kind string, data proto.Message, ok bool) {
	switch ev := res.GetEvent().(type) {
	case *berthv1.StreamTaskLogsResponse_Log:
		return "log", ev.Log, true
	case *berthv1.StreamTaskLogsResponse_Status:
		return "status", res, true
	case *berthv1.StreamTaskLogsResponse_Progress:
		return "progress", ev.Progress, true
	case *berthv1.StreamTaskLogsResponse_End:
		return "end", ev.End, true
	}
	return "", nil, false
}
