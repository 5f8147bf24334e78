package task

import (
	"context"

	"github.com/berthhq/berth/internal/access"
	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
	"github.com/berthhq/berth/internal/gen/berth/v1/berthv1connect"
	"github.com/berthhq/berth/internal/page"
	"github.com/berthhq/berth/internal/stream"
)

// Handler serves berth.v1.TaskService by translating to the Service.
type Handler struct {
	svc *Service
}

var _ berthv1connect.TaskServiceHandler = (*Handler)(nil)

// NewHandler returns the TaskService handler for svc.
func NewHandler(svc *Service) *Handler { return &Handler{svc: svc} }

func principal(ctx context.Context) access.Principal {
	p, _ := access.PrincipalFrom(ctx)
	return p
}

// ListTasks implements berthv1connect.TaskServiceHandler.
func (h *Handler) ListTasks(ctx context.Context, req *berthv1.ListTasksRequest) (*berthv1.ListTasksResponse, error) {
	pg := page.New(req.GetPage(), req.GetPageSize())
	tasks, total, err := h.svc.List(ctx, principal(ctx), Query{
		Page: pg, WorkspaceID: req.GetWorkspaceId(), Status: statusFromProto[req.GetStatus()], Type: typeFromProto[req.GetType()],
	})
	if err != nil {
		return nil, err
	}
	out := &berthv1.ListTasksResponse{Tasks: make([]*berthv1.Task, 0, len(tasks)), Pagination: pg.Of(total).Proto()}
	for _, t := range tasks {
		out.Tasks = append(out.Tasks, ToProto(t))
	}
	return out, nil
}

// CreateTask implements berthv1connect.TaskServiceHandler.
func (h *Handler) CreateTask(ctx context.Context, req *berthv1.CreateTaskRequest) (*berthv1.CreateTaskResponse, error) {
	t, err := h.svc.Create(ctx, principal(ctx), req)
	if err != nil {
		return nil, err
	}
	return &berthv1.CreateTaskResponse{Task: ToProto(t)}, nil
}

// GetTask implements berthv1connect.TaskServiceHandler.
func (h *Handler) GetTask(ctx context.Context, req *berthv1.GetTaskRequest) (*berthv1.GetTaskResponse, error) {
	t, err := h.svc.Get(ctx, principal(ctx), req.GetId())
	if err != nil {
		return nil, err
	}
	return &berthv1.GetTaskResponse{Task: ToProto(t)}, nil
}

// CancelTask implements berthv1connect.TaskServiceHandler.
func (h *Handler) CancelTask(ctx context.Context, req *berthv1.CancelTaskRequest) (*berthv1.CancelTaskResponse, error) {
	t, err := h.svc.Cancel(ctx, principal(ctx), req.GetId())
	if err != nil {
		return nil, err
	}
	return &berthv1.CancelTaskResponse{Task: ToProto(t)}, nil
}

// GetTaskLogs implements berthv1connect.TaskServiceHandler.
func (h *Handler) GetTaskLogs(ctx context.Context, req *berthv1.GetTaskLogsRequest) (*berthv1.GetTaskLogsResponse, error) {
	entries, more, err := h.svc.Logs(ctx, principal(ctx), req.GetTaskId(), req.GetAfterSeq(), int(req.GetLimit()))
	if err != nil {
		return nil, err
	}
	out := &berthv1.GetTaskLogsResponse{Entries: make([]*berthv1.LogEntry, 0, len(entries)), HasMore: more, NextAfterSeq: req.GetAfterSeq()}
	for _, e := range entries {
		out.Entries = append(out.Entries, LogToProto(e))
		out.NextAfterSeq = e.Seq
	}
	return out, nil
}

// StreamTaskLogs implements berthv1connect.TaskServiceHandler: the log
// from req.FromSeq on, then live lines, status and progress, then an end
// event once the task is finished and every line was sent. Closing the
// stream does nothing to the task.
func (h *Handler) StreamTaskLogs(ctx context.Context, req *berthv1.StreamTaskLogsRequest, out berthv1connect.TaskServiceStreamTaskLogsServerStream) error {
	return h.svc.Follow(ctx, principal(ctx), req.GetTaskId(), req.GetFromSeq(), func(ev stream.TaskEvent) error {
		return out.Send(StreamResponse(ev))
	})
}
