package task

import (
	"math"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/berthhq/berth/internal/fault"
	"github.com/berthhq/berth/internal/store"
)

// The bounds of a Spec, the same as CreateTaskRequest's rules in the proto
// (which the RPC edge checks first): a Spec that does not come through the
// API is held to them too.
const (
	maxPrompt        = 100000
	maxTags          = 50
	maxTagLen        = 50
	maxMetadata      = 50
	maxMetadataKey   = 100
	maxMetadataValue = 1000
	maxTurnsAsked    = 50
	maxTimeout       = 3600 // seconds
	maxBudgetUSD     = 10000
)

// validate checks what a Spec says on its own, before anything is looked
// up: the shape CreateTaskRequest's proto rules give a request. Every
// problem is an InvalidArgument naming the request field.
func (s Spec) validate() error {
	if err := uuid.Validate(s.WorkspaceID); err != nil {
		return fault.Invalid("workspace_id", "must be a UUID")
	}
	switch s.Type {
	case store.TaskClaudeChat:
		if s.Prompt == "" {
			return fault.Invalid("prompt", "prompt is required for claude_chat tasks")
		}
	case store.TaskGitOperation:
		if s.Git == nil {
			return fault.Invalid("git", "git is required for git_operation tasks")
		}
	case store.TaskDockerBuild:
		if s.DockerBuild == nil {
			return fault.Invalid("docker_build", "docker_build is required for docker_build tasks")
		}
	default:
		return fault.Invalid("type", "must be claude_chat, git_operation or docker_build")
	}
	if utf8.RuneCountInString(s.Prompt) > maxPrompt {
		return fault.Invalid("prompt", "must be at most 100000 characters")
	}
	if s.Priority < 0 || s.Priority > store.TaskPriorityHigh {
		return fault.Invalid("priority", "must be low, medium or high")
	}
	if len(s.Tags) > maxTags {
		return fault.Invalid("tags", "at most 50 tags")
	}
	for _, tag := range s.Tags {
		if n := utf8.RuneCountInString(tag); n < 1 || n > maxTagLen {
			return fault.Invalid("tags", "each tag must be 1 to 50 characters")
		}
	}
	if len(s.Metadata) > maxMetadata {
		return fault.Invalid("metadata", "at most 50 entries")
	}
	for k, v := range s.Metadata {
		if n := utf8.RuneCountInString(k); n < 1 || n > maxMetadataKey {
			return fault.Invalid("metadata", "each key must be 1 to 100 characters")
		}
		if utf8.RuneCountInString(v) > maxMetadataValue {
			return fault.Invalid("metadata", "each value must be at most 1000 characters")
		}
	}
	if s.ContinueTaskID != "" && uuid.Validate(s.ContinueTaskID) != nil {
		return fault.Invalid("continue_task_id", "must be a UUID")
	}
	c := s.Config
	if c.MaxTurns < 0 || c.MaxTurns > maxTurnsAsked {
		return fault.Invalid("config.max_turns", "must be 0 (the server's default) to 50")
	}
	if c.Timeout < 0 || c.Timeout > maxTimeout {
		return fault.Invalid("config.timeout", "must be 0 (the server's default) to 3600 seconds")
	}
	if math.IsNaN(c.MaxBudgetUSD) || c.MaxBudgetUSD < 0 || c.MaxBudgetUSD > maxBudgetUSD {
		return fault.Invalid("config.max_budget_usd", "must be 0 to 10000")
	}
	return nil
}
