package task

import (
	"github.com/berthhq/berth/internal/store"
	"github.com/berthhq/berth/internal/taskdoc"
)

// The structured parts of a task. They are defined in internal/taskdoc, a
// leaf package, so that the store can decode a row into them once as it
// reads it (task imports store, so store cannot import task); task is
// where the rest of berth names them.
type (
	// Config is how a task runs (system prompt, max turns, allowed tools,
	// working directory, environment, timeout in seconds, model, budget).
	Config = taskdoc.Config
	// GitOp is a git_operation task's operation.
	GitOp = taskdoc.GitOp
	// GitOperation names a git operation ("clone", "commit" …).
	GitOperation = taskdoc.GitOperation
	// DockerBuild is a docker_build task's build.
	DockerBuild = taskdoc.DockerBuild
	// Progress is how far a running task got.
	Progress = taskdoc.Progress
	// Result is what a task that succeeded produced.
	Result = taskdoc.Result
	// Failure is why a task did not succeed (the API's TaskError).
	Failure = taskdoc.Failure
)

// Spec is what a caller asks for when it creates a task: Service.Create
// checks it, fills in the server's defaults and stores the task.
type Spec struct {
	WorkspaceID string             `json:"workspace_id"`
	Type        store.TaskType     `json:"type"`
	Prompt      string             `json:"prompt,omitempty"`   // claude_chat: required
	Priority    store.TaskPriority `json:"priority,omitempty"` // 0: medium
	Tags        []string           `json:"tags,omitempty"`
	Metadata    map[string]string  `json:"metadata,omitempty"`
	Config      Config             `json:"config"`
	// ContinueTaskID names an earlier claude_chat task of the same
	// workspace whose agent session this one continues.
	ContinueTaskID string       `json:"continue_task_id,omitempty"`
	Git            *GitOp       `json:"git,omitempty"`          // git_operation: required
	DockerBuild    *DockerBuild `json:"docker_build,omitempty"` // docker_build: required
}
