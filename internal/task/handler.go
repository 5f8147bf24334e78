package task

import (
	"context"
	"maps"
	"slices"
	"strings"

	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berthhq/berth/internal/access"
	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
	"github.com/berthhq/berth/internal/gen/berth/v1/berthv1connect"
	"github.com/berthhq/berth/internal/page"
	"github.com/berthhq/berth/internal/store"
	"github.com/berthhq/berth/internal/stream"
)

// handler.go is the one place that translates between the API's messages
// and the task domain: requests become a Spec or a Query, records become
// Tasks.

// Handler serves berth.v1.TaskService by translating to the Service.
type Handler struct {
	svc *Service
}

var _ berthv1connect.TaskServiceHandler = (*Handler)(nil)

// NewHandler returns the TaskService handler for svc.
func NewHandler(svc *Service) *Handler { return &Handler{svc: svc} }

// principal is the caller the authentication interceptor put in ctx. A
// call without one is a public procedure's, and TaskService has none: the
// zero Principal it gets then sees no workspace.
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
	t, err := h.svc.Create(ctx, principal(ctx), SpecFromProto(req))
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
//
// It is Service.Follow taken apart: the follower is opened in a call that
// returns, and the stream then waits in the follower's Run, so that the
// goroutine parked under it while the task is quiet holds few frames.
//
// What it sends is flushed once per batch: the stored log when it has
// been sent, then each wake-up's lines (stream.Batch).
func (h *Handler) StreamTaskLogs(ctx context.Context, req *berthv1.StreamTaskLogsRequest, out berthv1connect.TaskServiceStreamTaskLogsServerStream) error {
	loop := stream.Loop{Flush: stream.TakeBatch(ctx).Commit}
	f, done, err := h.openLogs(ctx, req, out)
	if err != nil || done {
		return err
	}
	defer f.Close()
	return f.Run(ctx, loop)
}

// openLogs opens StreamTaskLogs's follower and sends what is stored;
// done is true, and the follower closed, when the task's end was sent.
func (h *Handler) openLogs(ctx context.Context, req *berthv1.StreamTaskLogsRequest, out berthv1connect.TaskServiceStreamTaskLogsServerStream) (*stream.TaskFollower, bool, error) {
	f, done, err := h.svc.OpenFollow(ctx, principal(ctx), req.GetTaskId(), req.GetFromSeq(), func(ev stream.TaskEvent) error {
		if ev.Line != nil {
			// A line from the bus: every subscriber of the task sends the
			// same message, which the server's codecs encode once.
			return out.Send(ev.Line.Shared(lineResponse).(*berthv1.StreamTaskLogsResponse))
		}
		return out.Send(StreamResponse(ev))
	}, nil)
	if err == nil && done {
		f.Close()
	}
	return f, done, err
}

// lineResponse is a log line's StreamTaskLogs message, as StreamResponse
// makes it.
func lineResponse(e store.LogEntry) any {
	return StreamResponse(stream.TaskEvent{Kind: stream.KindLog, Log: e})
}

// SpecFromProto translates a CreateTaskRequest into the Spec that
// Service.Create takes. Every front that creates tasks from the API's
// message (CreateTask, the WebSocket task.create command) goes through it.
func SpecFromProto(req *berthv1.CreateTaskRequest) Spec {
	spec := Spec{
		WorkspaceID:    req.GetWorkspaceId(),
		Type:           typeFromProto[req.GetType()],
		Prompt:         req.GetPrompt(),
		Priority:       priorityFromProto[req.GetPriority()],
		Tags:           slices.Clone(req.GetTags()),
		Metadata:       maps.Clone(req.GetMetadata()),
		ContinueTaskID: req.GetContinueTaskId(),
	}
	if c := req.GetConfig(); c != nil {
		spec.Config = Config{
			SystemPrompt: c.GetSystemPrompt(),
			MaxTurns:     int(c.GetMaxTurns()),
			AllowedTools: slices.Clone(c.GetAllowedTools()),
			WorkingDir:   c.GetWorkingDir(),
			Environment:  maps.Clone(c.GetEnvironment()),
			Timeout:      int(c.GetTimeout()),
			Model:        c.GetModel(),
			MaxBudgetUSD: c.GetMaxBudgetUsd(),
		}
	}
	if g := req.GetGit(); g != nil {
		spec.Git = &GitOp{
			Operation: gitOperationFromProto(g.GetOperation()),
			URL:       g.GetUrl(), Ref: g.GetRef(), Message: g.GetMessage(), Paths: slices.Clone(g.GetPaths()),
		}
	}
	if b := req.GetDockerBuild(); b != nil {
		spec.DockerBuild = &DockerBuild{ContextDir: b.GetContextDir(), Dockerfile: b.GetDockerfile(), Tag: b.GetTag()}
	}
	return spec
}

// gitOperationFromProto is the domain name of a git operation enum
// (GIT_OPERATION_TYPE_CLONE is "clone"); an unknown number gives a name
// internal/gitop refuses.
func gitOperationFromProto(op berthv1.GitOperationType) GitOperation {
	if op == berthv1.GitOperationType_GIT_OPERATION_TYPE_UNSPECIFIED {
		return ""
	}
	return GitOperation(strings.ToLower(strings.TrimPrefix(op.String(), "GIT_OPERATION_TYPE_")))
}

var typeToProto = map[store.TaskType]berthv1.TaskType{
	store.TaskClaudeChat:   berthv1.TaskType_TASK_TYPE_CLAUDE_CHAT,
	store.TaskGitOperation: berthv1.TaskType_TASK_TYPE_GIT_OPERATION,
	store.TaskDockerBuild:  berthv1.TaskType_TASK_TYPE_DOCKER_BUILD,
}

var statusToProto = map[store.TaskStatus]berthv1.TaskStatus{
	store.TaskQueued:    berthv1.TaskStatus_TASK_STATUS_QUEUED,
	store.TaskRunning:   berthv1.TaskStatus_TASK_STATUS_RUNNING,
	store.TaskSucceeded: berthv1.TaskStatus_TASK_STATUS_SUCCEEDED,
	store.TaskFailed:    berthv1.TaskStatus_TASK_STATUS_FAILED,
	store.TaskCancelled: berthv1.TaskStatus_TASK_STATUS_CANCELLED,
	store.TaskTimedOut:  berthv1.TaskStatus_TASK_STATUS_TIMED_OUT,
}

var priorityToProto = map[store.TaskPriority]berthv1.TaskPriority{
	store.TaskPriorityLow:    berthv1.TaskPriority_TASK_PRIORITY_LOW,
	store.TaskPriorityMedium: berthv1.TaskPriority_TASK_PRIORITY_MEDIUM,
	store.TaskPriorityHigh:   berthv1.TaskPriority_TASK_PRIORITY_HIGH,
}

func reverse[K, V comparable](m map[K]V) map[V]K {
	out := make(map[V]K, len(m))
	for k, v := range m {
		out[v] = k
	}
	return out
}

var (
	typeFromProto     = reverse(typeToProto)
	statusFromProto   = reverse(statusToProto)
	priorityFromProto = reverse(priorityToProto)
)

// ToProto converts a task record to its API message. The record's
// documents were decoded when it was read; nothing here decodes again.
func ToProto(t *store.TaskRecord) *berthv1.Task {
	out := &berthv1.Task{
		Id:             t.ID,
		WorkspaceId:    t.WorkspaceID,
		Type:           typeToProto[t.Type],
		Status:         statusToProto[t.Status],
		Progress:       ProgressToProto(t.Progress),
		Result:         resultToProto(t.Result),
		Error:          failureToProto(t.Error),
		Config:         configToProto(t.Config),
		Priority:       priorityToProto[t.Priority],
		Tags:           t.Tags,
		Metadata:       t.Metadata,
		Prompt:         t.Prompt,
		Git:            gitToProto(t.Git),
		DockerBuild:    dockerBuildToProto(t.DockerBuild),
		CreatedBy:      t.CreatedBy,
		SessionId:      t.SessionID,
		ContinueTaskId: t.ContinueTaskID,
		CreatedAt:      timestamppb.New(t.CreatedAt),
		StartedAt:      access.OptionalTime(t.StartedAt),
		CompletedAt:    access.OptionalTime(t.CompletedAt),
	}
	if out.Progress == nil {
		out.Progress = &berthv1.TaskProgress{}
	}
	return out
}

// ProgressToProto converts a task's progress; nil stays nil.
func ProgressToProto(p *Progress) *berthv1.TaskProgress {
	if p == nil {
		return nil
	}
	return &berthv1.TaskProgress{Current: clamp32(p.Current), Total: clamp32(p.Total), Percentage: clamp32(p.Percentage), Message: p.Message}
}

func configToProto(c *Config) *berthv1.TaskConfig {
	if c == nil {
		return nil
	}
	return &berthv1.TaskConfig{
		SystemPrompt: c.SystemPrompt, MaxTurns: clamp32(c.MaxTurns), AllowedTools: c.AllowedTools,
		WorkingDir: c.WorkingDir, Environment: c.Environment, Timeout: clamp32(c.Timeout),
		Model: c.Model, MaxBudgetUsd: c.MaxBudgetUSD,
	}
}

func gitToProto(g *GitOp) *berthv1.GitOperation {
	if g == nil {
		return nil
	}
	return &berthv1.GitOperation{
		Operation: berthv1.GitOperationType(berthv1.GitOperationType_value[g.Operation.EnumName()]),
		Url:       g.URL, Ref: g.Ref, Message: g.Message, Paths: g.Paths,
	}
}

func dockerBuildToProto(b *DockerBuild) *berthv1.DockerBuild {
	if b == nil {
		return nil
	}
	return &berthv1.DockerBuild{ContextDir: b.ContextDir, Dockerfile: b.Dockerfile, Tag: b.Tag}
}

func failureToProto(f *Failure) *berthv1.TaskError {
	if f == nil {
		return nil
	}
	return &berthv1.TaskError{Code: f.Code, Message: f.Message, Details: f.Details}
}

func resultToProto(r *Result) *berthv1.TaskResult {
	if r == nil {
		return nil
	}
	out := &berthv1.TaskResult{Success: r.Success, Summary: r.Summary}
	if r.Details != nil {
		details, err := structpb.NewStruct(r.Details)
		if err != nil {
			// Details hold JSON values only (taskdoc.Result): they were
			// decoded from the stored JSON, or made by taskdoc.Details,
			// so this does not happen. Should it, the reader is told
			// rather than shown an empty result.
			details = &structpb.Struct{Fields: map[string]*structpb.Value{
				"error": structpb.NewStringValue("the details could not be shown: " + err.Error()),
			}}
		}
		out.Details = details
	}
	return out
}

// LogToProto converts a stored log line to its API message.
func LogToProto(e store.LogEntry) *berthv1.LogEntry {
	out := &berthv1.LogEntry{
		TaskId:  e.TaskID,
		Seq:     e.Seq,
		Time:    timestamppb.New(e.Time),
		Level:   levelToProto[e.Level],
		Source:  sourceToProto[e.Source],
		Message: e.Message,
	}
	if len(e.Fields) > 0 {
		var fields structpb.Struct
		if err := fields.UnmarshalJSON(e.Fields); err == nil {
			out.Fields = &fields
		} else {
			// The runner writes fields as a JSON object, and the store
			// refuses what is not JSON; a line whose fields are JSON but
			// not an object still shows them, as text.
			out.Fields = &structpb.Struct{Fields: map[string]*structpb.Value{"raw": structpb.NewStringValue(string(e.Fields))}}
		}
	}
	return out
}

var levelToProto = map[string]berthv1.LogLevel{
	"debug": berthv1.LogLevel_LOG_LEVEL_DEBUG, "info": berthv1.LogLevel_LOG_LEVEL_INFO,
	"warn": berthv1.LogLevel_LOG_LEVEL_WARN, "error": berthv1.LogLevel_LOG_LEVEL_ERROR,
}

var sourceToProto = map[string]berthv1.LogSource{
	"stdout": berthv1.LogSource_LOG_SOURCE_STDOUT, "stderr": berthv1.LogSource_LOG_SOURCE_STDERR,
	"system": berthv1.LogSource_LOG_SOURCE_SYSTEM, "assistant": berthv1.LogSource_LOG_SOURCE_ASSISTANT,
	"tool": berthv1.LogSource_LOG_SOURCE_TOOL,
}
