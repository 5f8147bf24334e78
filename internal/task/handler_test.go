package task_test

import (
	"testing"

	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
	"github.com/berthhq/berth/internal/store"
	"github.com/berthhq/berth/internal/task"
	"github.com/berthhq/berth/internal/taskdoc"
)

// TestGitOperationsRoundTrip checks every git operation the API has
// survives the request, the store's encoding and the response: a new enum
// value that taskdoc does not know fails here, not in a user's task.
func TestGitOperationsRoundTrip(t *testing.T) {
	t.Parallel()
	for n, name := range berthv1.GitOperationType_name {
		op := berthv1.GitOperationType(n)
		spec := task.SpecFromProto(&berthv1.CreateTaskRequest{Type: berthv1.TaskType_TASK_TYPE_GIT_OPERATION,
			Git: &berthv1.GitOperation{Operation: op, Ref: "main"}})
		raw, err := taskdoc.Encode(spec.Git)
		if err != nil {
			t.Errorf("%s: encode: %v", name, err)
			continue
		}
		back, err := taskdoc.Decode[taskdoc.GitOp](raw)
		if err != nil {
			t.Errorf("%s: decode %s: %v", name, raw, err)
			continue
		}
		got := task.ToProto(&store.TaskRecord{Type: store.TaskGitOperation, Git: back}).GetGit()
		if got.GetOperation() != op || got.GetRef() != "main" {
			t.Errorf("%s came back as %v", name, got)
		}
	}
}

// TestSpecFromProto checks the translation of a whole request.
func TestSpecFromProto(t *testing.T) {
	t.Parallel()
	spec := task.SpecFromProto(&berthv1.CreateTaskRequest{
		WorkspaceId: "w", Type: berthv1.TaskType_TASK_TYPE_DOCKER_BUILD, Prompt: "p",
		Priority: berthv1.TaskPriority_TASK_PRIORITY_HIGH, Tags: []string{"t"}, Metadata: map[string]string{"k": "v"},
		ContinueTaskId: "c",
		Config: &berthv1.TaskConfig{SystemPrompt: "s", MaxTurns: 3, AllowedTools: []string{"Read"}, WorkingDir: "d",
			Environment: map[string]string{"A": "1"}, Timeout: 60, Model: "m", MaxBudgetUsd: 2.5},
		DockerBuild: &berthv1.DockerBuild{ContextDir: "ctx", Dockerfile: "Dockerfile", Tag: "v1"},
	})
	want := task.Config{SystemPrompt: "s", MaxTurns: 3, AllowedTools: []string{"Read"}, WorkingDir: "d",
		Environment: map[string]string{"A": "1"}, Timeout: 60, Model: "m", MaxBudgetUSD: 2.5}
	if spec.WorkspaceID != "w" || spec.Type != store.TaskDockerBuild || spec.Prompt != "p" || spec.Priority != store.TaskPriorityHigh ||
		spec.Tags[0] != "t" || spec.Metadata["k"] != "v" || spec.ContinueTaskID != "c" || spec.Git != nil ||
		*spec.DockerBuild != (task.DockerBuild{ContextDir: "ctx", Dockerfile: "Dockerfile", Tag: "v1"}) ||
		spec.Config.SystemPrompt != want.SystemPrompt || spec.Config.MaxTurns != 3 || spec.Config.Timeout != 60 ||
		spec.Config.Environment["A"] != "1" || spec.Config.AllowedTools[0] != "Read" || spec.Config.MaxBudgetUSD != 2.5 ||
		spec.Config.Model != "m" || spec.Config.WorkingDir != "d" {
		t.Errorf("spec %+v (config %+v)", spec, spec.Config)
	}
	if unset := task.SpecFromProto(&berthv1.CreateTaskRequest{}); unset.Type != "" || unset.Priority != 0 {
		t.Errorf("an empty request gives %+v", unset)
	}
}
