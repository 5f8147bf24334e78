package store

import (
	"encoding/json"
	"time"

	"github.com/berthhq/berth/internal/taskdoc"
)

// TaskStatus is a task's life-cycle state, stored as this string.
type TaskStatus string

// The task states.
const (
	TaskQueued    TaskStatus = "queued"
	TaskRunning   TaskStatus = "running"
	TaskSucceeded TaskStatus = "succeeded"
	TaskFailed    TaskStatus = "failed"
	TaskCancelled TaskStatus = "cancelled"
	TaskTimedOut  TaskStatus = "timed_out"
)

// TaskType is what a task runs.
type TaskType string

// The task types.
const (
	TaskClaudeChat   TaskType = "claude_chat"
	TaskGitOperation TaskType = "git_operation"
	TaskDockerBuild  TaskType = "docker_build"
)

// TaskPriority orders the queue: a higher priority runs first. It is stored
// as its integer value; the zero value is not a priority, so a record whose
// priority was never set is easy to spot.
type TaskPriority int

// The task priorities.
const (
	TaskPriorityLow    TaskPriority = 1
	TaskPriorityMedium TaskPriority = 2
	TaskPriorityHigh   TaskPriority = 3
)

// TaskRecord is a task as the tasks table holds it. The structured parts
// (configuration, progress, result, error …) are the task domain's types
// (internal/taskdoc), stored as JSON documents: encoded as a record is
// written, decoded once as it is read (a document that does not decode
// fails the read); a nil one is stored as NULL.
type TaskRecord struct {
	ID          string
	WorkspaceID string
	CreatedBy   string // user id; empty once that account is deleted
	Type        TaskType
	Status      TaskStatus
	Priority    TaskPriority
	Prompt      string
	Config      *taskdoc.Config
	Git         *taskdoc.GitOp       // the git operation, for git_operation tasks
	DockerBuild *taskdoc.DockerBuild // the build, for docker_build tasks
	Tags        []string             // never nil when read from the store
	Metadata    map[string]string    // never nil when read from the store
	Progress    *taskdoc.Progress
	Result      *taskdoc.Result
	Error       *taskdoc.Failure
	// SessionID is the agent's conversation id, which a later task can continue.
	SessionID string
	// ContinueTaskID is the task whose agent session this one continues.
	ContinueTaskID string
	CostUSD        float64
	// LeaseOwner and LeaseExpiresAt say which server instance runs the task
	// and until when its lease holds without a heartbeat.
	LeaseOwner     string
	LeaseExpiresAt *time.Time
	CreatedAt      time.Time
	StartedAt      *time.Time
	CompletedAt    *time.Time
}

// Terminal reports whether a task in this state has ended: it never runs
// again and holds no lease.
func (s TaskStatus) Terminal() bool {
	switch s {
	case TaskSucceeded, TaskFailed, TaskCancelled, TaskTimedOut:
		return true
	}
	return false
}

// TaskFilter selects and pages tasks for ListTasks. An empty field does not
// filter; a set one matches exactly.
type TaskFilter struct {
	// Viewer sees the tasks of the workspaces it may see.
	Viewer      Viewer
	WorkspaceID string
	Status      TaskStatus
	Type        TaskType
	// Offset skips that many matching tasks; a negative one counts as 0.
	Offset int
	// Limit caps the page; zero or less means no cap.
	Limit int
}

// TaskFinish lists what FinishTask writes beside the new status; nil fields
// stay as they are.
type TaskFinish struct {
	Progress    *taskdoc.Progress
	Result      *taskdoc.Result
	Error       *taskdoc.Failure
	SessionID   *string
	CostUSD     *float64
	CompletedAt *time.Time
}

// The log levels of a LogEntry.
const (
	LogDebug = "debug"
	LogInfo  = "info"
	LogWarn  = "warn"
	LogError = "error"
)

// The sources of a LogEntry: where a line came from.
const (
	LogStdout    = "stdout"
	LogStderr    = "stderr"
	LogSystem    = "system" // berth itself: started, stopped, timed out …
	LogAssistant = "assistant"
	LogTool      = "tool"
)

// LogEntry is one line of a task's log. Seq numbers a task's entries 1, 2,
// 3 … with no gaps, so that a reader can resume after the last one it saw.
type LogEntry struct {
	TaskID  string
	Seq     int64
	Time    time.Time
	Level   string // LogDebug, LogInfo, LogWarn or LogError
	Source  string // LogStdout, LogStderr, LogSystem, LogAssistant or LogTool
	Message string
	// Fields is an optional JSON object of structured details; nil when absent.
	Fields json.RawMessage
}

// SeriesGroup says how TaskSeries splits its buckets.
type SeriesGroup int

// The splits of a series.
const (
	SeriesUngrouped   SeriesGroup = iota // one point per bucket
	SeriesByUser                         // per user who created the task
	SeriesByWorkspace                    // per workspace
)

// SeriesFilter chooses what TaskSeries counts.
type SeriesFilter struct {
	// Viewer is whose workspaces count: those Viewer may see. Like
	// CountStats, an admin sees every workspace, so to count an admin's
	// own workspaces pass a Viewer with Admin false.
	Viewer Viewer
	// Global counts every task, whoever the viewer.
	Global bool
	// Start is the start of the range (inclusive), rounded down to a
	// multiple of Bucket since the Unix epoch; End is its end (exclusive).
	Start, End time.Time
	// Bucket is the width of a bucket, a whole number of microseconds
	// greater than zero: an hour or a day (UTC).
	Bucket time.Duration
	// Group splits each bucket.
	Group SeriesGroup
}

// SeriesPoint is one bucket of a task series, of one group when split.
type SeriesPoint struct {
	BucketStart time.Time
	// Group is the user id or workspace id; "" when ungrouped, or for the
	// tasks of deleted accounts.
	Group string
	// GroupName is the user's name (or, when it has none, email) or the
	// workspace's name.
	GroupName     string
	TasksByStatus map[string]int64
	CostUSD       float64
}
