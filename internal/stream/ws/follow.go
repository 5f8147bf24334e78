package ws

import (
	"context"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/berthhq/berth/internal/access"
	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
	"github.com/berthhq/berth/internal/stream"
	"github.com/berthhq/berth/internal/task"
)

// marshal writes API messages as the JSON codec of the RPCs does: proto
// field names, zero values present.
var marshal = protojson.MarshalOptions{UseProtoNames: true, EmitDefaultValues: true}

// followTask sends task id's log after seq since, its status and progress,
// and its end, as the Connect stream StreamTaskLogs does.
func (s *session) followTask(ctx context.Context, p access.Principal, id string, since int64, emit func(string, []byte) error) error {
	return s.h.cfg.Tasks.Follow(ctx, p, id, stream.After(since), func(ev stream.TaskEvent) error {
		var action string
		var data proto.Message
		switch ev.Kind {
		case stream.KindLog:
			action, data = "log", task.LogToProto(ev.Log)
		case stream.KindStatus:
			action, data = "status", &berthv1.StreamTaskLogsResponse{Event: &berthv1.StreamTaskLogsResponse_Status{Status: task.ToProto(ev.Task).GetStatus()}}
		case stream.KindProgress:
			action, data = "progress", task.ToProto(ev.Task).GetProgress()
		case stream.KindEnd:
			action, data = "end", &berthv1.TaskEnd{Status: task.ToProto(ev.Task).GetStatus(), LastSeq: ev.LastSeq}
		default:
			return nil
		}
		b, err := marshal.Marshal(data)
		if err != nil {
			return err
		}
		return emit(action, b)
	})
}

// followWorkspace sends workspace id's state, then its status changes and
// its tasks' lifecycle events, as the Connect stream WatchWorkspace does.
func (s *session) followWorkspace(ctx context.Context, p access.Principal, id string, emit func(string, []byte) error) error {
	return s.h.cfg.Workspaces.FollowEvents(ctx, p, id, func(ev *berthv1.WorkspaceEvent) error {
		b, err := marshal.Marshal(ev)
		if err != nil {
			return err
		}
		return emit(ev.GetKind(), b)
	})
}
