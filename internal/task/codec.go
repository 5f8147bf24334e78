package task

import (
	"encoding/json"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berthhq/berth/internal/access"
	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
	"github.com/berthhq/berth/internal/store"
)

// The JSON documents of a task record (config, git, docker_build,
// progress, result, error) are the protojson of their API messages, so the
// stored shape and the API's are one.
var (
	marshal   = protojson.MarshalOptions{UseProtoNames: true}
	unmarshal = protojson.UnmarshalOptions{DiscardUnknown: true}
)

func encode(m proto.Message) json.RawMessage {
	if m == nil {
		return nil
	}
	b, err := marshal.Marshal(m)
	if err != nil {
		return nil
	}
	return b
}

func decode[T any, P interface {
	*T
	proto.Message
}](raw json.RawMessage) P {
	if len(raw) == 0 {
		return nil
	}
	m := P(new(T))
	if err := unmarshal.Unmarshal(raw, m); err != nil {
		return nil
	}
	return m
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

// ToProto converts a task record to its API message.
func ToProto(t *store.TaskRecord) *berthv1.Task {
	out := &berthv1.Task{
		Id:             t.ID,
		WorkspaceId:    t.WorkspaceID,
		Type:           typeToProto[t.Type],
		Status:         statusToProto[t.Status],
		Progress:       decode[berthv1.TaskProgress](t.Progress),
		Result:         decode[berthv1.TaskResult](t.Result),
		Error:          decode[berthv1.TaskError](t.Error),
		Config:         decode[berthv1.TaskConfig](t.Config),
		Priority:       priorityToProto[t.Priority],
		Tags:           t.Tags,
		Metadata:       t.Metadata,
		Prompt:         t.Prompt,
		Git:            decode[berthv1.GitOperation](t.Git),
		DockerBuild:    decode[berthv1.DockerBuild](t.DockerBuild),
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
