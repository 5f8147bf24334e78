// Package task will hold the task runner: queue, executors and durable logs.
// Until the runner exists, its handler answers every TaskService RPC with
// Unimplemented and says why, so nothing pretends to work.
//
// task imports internal/fault.
package task

import (
	"context"

	"github.com/berthhq/berth/internal/fault"
	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
	"github.com/berthhq/berth/internal/gen/berth/v1/berthv1connect"
)

// Handler serves berth.v1.TaskService.
type Handler struct{}

var _ berthv1connect.TaskServiceHandler = Handler{}

// errNoRunner explains every TaskService RPC on a server without a runner.
var errNoRunner = fault.New(fault.ErrUnimplemented,
	"tasks are not available on this server yet: it has no task runner, so no task can be created, read or streamed")

// ListTasks implements berthv1connect.TaskServiceHandler; there is no runner yet.
func (Handler) ListTasks(context.Context, *berthv1.ListTasksRequest) (*berthv1.ListTasksResponse, error) {
	return nil, errNoRunner
}

// CreateTask implements berthv1connect.TaskServiceHandler; there is no runner yet.
func (Handler) CreateTask(context.Context, *berthv1.CreateTaskRequest) (*berthv1.CreateTaskResponse, error) {
	return nil, errNoRunner
}

// GetTask implements berthv1connect.TaskServiceHandler; there is no runner yet.
func (Handler) GetTask(context.Context, *berthv1.GetTaskRequest) (*berthv1.GetTaskResponse, error) {
	return nil, errNoRunner
}

// CancelTask implements berthv1connect.TaskServiceHandler; there is no runner yet.
func (Handler) CancelTask(context.Context, *berthv1.CancelTaskRequest) (*berthv1.CancelTaskResponse, error) {
	return nil, errNoRunner
}

// GetTaskLogs implements berthv1connect.TaskServiceHandler; there is no runner yet.
func (Handler) GetTaskLogs(context.Context, *berthv1.GetTaskLogsRequest) (*berthv1.GetTaskLogsResponse, error) {
	return nil, errNoRunner
}

// StreamTaskLogs implements berthv1connect.TaskServiceHandler; there is no runner yet.
func (Handler) StreamTaskLogs(context.Context, *berthv1.StreamTaskLogsRequest, berthv1connect.TaskServiceStreamTaskLogsServerStream) error {
	return errNoRunner
}
