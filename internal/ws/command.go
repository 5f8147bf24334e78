package ws

import (
	"context"
	"encoding/json"

	"buf.build/go/protovalidate"
	"connectrpc.com/connect/v2"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/berthhq/berth/internal/access"
	"github.com/berthhq/berth/internal/fault"
	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
	"github.com/berthhq/berth/internal/stream"
	"github.com/berthhq/berth/internal/task"
)

// command is one action a client may run: the permission of the RPC it
// stands for, its request message, and the service call.
type command struct {
	permission string
	request    func() proto.Message
	run        func(ctx context.Context, h *Handler, p access.Principal, req proto.Message) (proto.Message, error)
}

// commands are the actions of command frames, each the twin of an RPC.
var commands = map[string]command{
	"task.create": {"task.create", func() proto.Message { return &berthv1.CreateTaskRequest{} }, createTask},
	"task.continue": {"task.create", func() proto.Message { return &berthv1.CreateTaskRequest{} },
		func(ctx context.Context, h *Handler, p access.Principal, req proto.Message) (proto.Message, error) {
			if req.(*berthv1.CreateTaskRequest).GetContinueTaskId() == "" {
				return nil, fault.Invalid("continue_task_id", "task.continue needs the task whose session to continue")
			}
			return createTask(ctx, h, p, req)
		}},
	"task.cancel": {"task.cancel", func() proto.Message { return &berthv1.CancelTaskRequest{} },
		func(ctx context.Context, h *Handler, p access.Principal, req proto.Message) (proto.Message, error) {
			t, err := h.cfg.Tasks.Cancel(ctx, p, req.(*berthv1.CancelTaskRequest).GetId())
			if err != nil {
				return nil, err
			}
			return &berthv1.CancelTaskResponse{Task: task.ToProto(t)}, nil
		}},
	"workspace.start": {"workspace.operate", func() proto.Message { return &berthv1.StartWorkspaceRequest{} },
		func(ctx context.Context, h *Handler, p access.Principal, req proto.Message) (proto.Message, error) {
			w, err := h.cfg.Workspaces.Start(ctx, p, req.(*berthv1.StartWorkspaceRequest).GetId())
			if err != nil {
				return nil, err
			}
			return &berthv1.StartWorkspaceResponse{Workspace: h.cfg.Workspaces.Proto(w)}, nil
		}},
	"workspace.stop": {"workspace.operate", func() proto.Message { return &berthv1.StopWorkspaceRequest{} },
		func(ctx context.Context, h *Handler, p access.Principal, req proto.Message) (proto.Message, error) {
			w, err := h.cfg.Workspaces.Stop(ctx, p, req.(*berthv1.StopWorkspaceRequest).GetId())
			if err != nil {
				return nil, err
			}
			return &berthv1.StopWorkspaceResponse{Workspace: h.cfg.Workspaces.Proto(w)}, nil
		}},
	"workspace.get": {"workspace.read", func() proto.Message { return &berthv1.GetWorkspaceRequest{} },
		func(ctx context.Context, h *Handler, p access.Principal, req proto.Message) (proto.Message, error) {
			w, err := h.cfg.Workspaces.Get(ctx, p, req.(*berthv1.GetWorkspaceRequest).GetId())
			if err != nil {
				return nil, err
			}
			return &berthv1.GetWorkspaceResponse{Workspace: h.cfg.Workspaces.Proto(w)}, nil
		}},
}

func createTask(ctx context.Context, h *Handler, p access.Principal, req proto.Message) (proto.Message, error) {
	t, err := h.cfg.Tasks.Create(ctx, p, task.SpecFromProto(req.(*berthv1.CreateTaskRequest)))
	if err != nil {
		return nil, err
	}
	return &berthv1.CreateTaskResponse{Task: task.ToProto(t)}, nil
}

// command runs a command frame in the order of the RPC chain: access,
// decoding, validation, the service; then it sends the result or the
// error, with the frame's id.
func (s *session) command(m Message) {
	res, err := s.runCommand(m)
	if err != nil {
		s.commandFailed(m, err)
		return
	}
	b, err := stream.JSON.Marshal(res)
	if err != nil {
		s.commandFailed(m, err)
		return
	}
	s.h.cfg.Metrics.Command(actionLabel(m.Action), "ok")
	s.send(Message{Type: "result", ID: m.ID, Action: m.Action, Data: b})
}

// commandFailed counts the command, then sends its error frame: a client
// that reads the frame finds the command counted.
func (s *session) commandFailed(m Message, err error) {
	body := s.h.cfg.Errors(s.ctx, m.Action, err)
	s.h.cfg.Metrics.Command(actionLabel(m.Action), body.Code)
	s.sendError(m.ID, m.Action, body)
}

// actionLabel is a command's action as a metric label: the names clients
// may choose are bounded to the known actions and "unknown".
func actionLabel(action string) string {
	if _, ok := commands[action]; ok {
		return action
	}
	return "unknown"
}

func (s *session) runCommand(m Message) (proto.Message, error) {
	c, ok := commands[m.Action]
	if !ok {
		return nil, fault.New(fault.ErrInvalid, "unknown action %q (task.create, task.continue, task.cancel, workspace.start, workspace.stop, workspace.get)", m.Action)
	}
	p, err := s.principal()
	if err != nil {
		return nil, err
	}
	if !access.Allows(p.Role, c.permission) {
		return nil, fault.New(fault.ErrPermissionDenied, "your role (%s) does not grant %s", p.Role, c.permission)
	}
	req, err := c.decode(m.Data)
	if err != nil {
		return nil, err
	}
	return c.run(s.ctx, s.h, p, req)
}

// decode reads a command frame's data as the command's request (absent
// data is an empty request) and validates it with the request's rules, as
// the RPC would.
func (c command) decode(data json.RawMessage) (proto.Message, error) {
	req := c.request()
	if len(data) == 0 {
		data = []byte("{}")
	}
	if err := protojson.Unmarshal(data, req); err != nil {
		return nil, fault.New(fault.ErrInvalid, "data is not a valid %s: %v", req.ProtoReflect().Descriptor().Name(), err)
	}
	if err := protovalidate.Validate(req); err != nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, err.Error()).WithCause(err)
	}
	return req, nil
}
