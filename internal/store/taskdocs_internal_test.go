package store

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/berthhq/berth/internal/fault"
	"github.com/berthhq/berth/internal/taskdoc"
)

// The documents of one task row as berth wrote them before the task
// documents had types of their own: protojson.MarshalOptions{UseProtoNames:
// true} of the API messages, captured from that code (proto names, zero
// values left out, the git operation by enum name, the details a JSON
// object). protojson also puts a space after a colon at random; one
// document here has it.
var (
	oldConfig   = `{"system_prompt":"be brief","max_turns":7,"allowed_tools":["Read","Bash(git:*)"],"working_dir":"src/app","environment":{"FOO":"bar","X_Y":"1"},"timeout":600,"model":"claude-sonnet","max_budget_usd":1.5}`
	oldGit      = `{"operation":"GIT_OPERATION_TYPE_COMMIT","url":"https://example.com/r.git","ref":"main","message":"msg \"quoted\"","paths":["a.txt","dir/b.txt"]}`
	oldBuild    = `{"context_dir":"img","dockerfile":"Dockerfile.dev","tag":"berth-ws-x:v1"}`
	oldProgress = `{"current":3,  "total":10,  "percentage":30,  "message":"turn 3 of 10"}`
	oldResult   = `{"success":true,"summary":"done","details":{"duration_ms":1234,"num_turns":4,"session_id":"sess-1","total_cost_usd":0.0123,"usage":{"input_tokens":100,"output_tokens":20}}}`
	oldError    = `{"code":"EXIT_CODE","message":"git exited with status 1","details":"git commit -m x"}`
)

// openTaskRow opens a SQLite store with one task in it, whose documents
// the test then overwrites in place, and returns the store and task id.
func openTaskRow(t *testing.T) (*Store, string) {
	t.Helper()
	s, err := Open(t.Context(), filepath.Join(t.TempDir(), "berth.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	now := time.Now().UTC()
	u := &User{ID: uuid.NewString(), Email: "old@example.com", Name: "Old", Role: RoleMember, CreatedAt: now, UpdatedAt: now}
	if err := s.CreateUser(t.Context(), u); err != nil {
		t.Fatal(err)
	}
	w := &Workspace{ID: uuid.NewString(), OwnerID: u.ID, Name: "old", Path: "/srv/old", Status: WorkspaceStopped,
		Tags: []string{}, Metadata: map[string]string{}, CreatedAt: now, UpdatedAt: now}
	if err := s.CreateWorkspace(t.Context(), w); err != nil {
		t.Fatal(err)
	}
	tr := &TaskRecord{ID: uuid.NewString(), WorkspaceID: w.ID, CreatedBy: u.ID, Type: TaskGitOperation,
		Status: TaskFailed, Priority: TaskPriorityMedium, CreatedAt: now}
	if err := s.CreateTaskRecord(t.Context(), tr); err != nil {
		t.Fatal(err)
	}
	return s, tr.ID
}

// setDocs writes a task's documents as given, bypassing the encoder.
func setDocs(t *testing.T, s *Store, id string, config, git, build, progress, result, failure string) {
	t.Helper()
	if _, err := s.conn().exec(t.Context(), `UPDATE tasks SET config = ?, git = ?, docker_build = ?, progress = ?, result = ?, error = ? WHERE id = ?`,
		config, git, build, progress, result, failure, id); err != nil {
		t.Fatal(err)
	}
}

// TestTaskDocumentsWrittenByOldCode reads a row in the exact format the
// protojson codec wrote and checks every value comes back as it was; then
// writes it again through the new encoder and reads the same values.
func TestTaskDocumentsWrittenByOldCode(t *testing.T) {
	t.Parallel()
	s, id := openTaskRow(t)
	setDocs(t, s, id, oldConfig, oldGit, oldBuild, oldProgress, oldResult, oldError)
	got, _, err := s.FindTask(t.Context(), id, Viewer{Admin: true})
	if err != nil {
		t.Fatal(err)
	}
	want := &TaskRecord{
		Config: &taskdoc.Config{SystemPrompt: "be brief", MaxTurns: 7, AllowedTools: []string{"Read", "Bash(git:*)"}, WorkingDir: "src/app",
			Environment: map[string]string{"FOO": "bar", "X_Y": "1"}, Timeout: 600, Model: "claude-sonnet", MaxBudgetUSD: 1.5},
		Git:         &taskdoc.GitOp{Operation: "commit", URL: "https://example.com/r.git", Ref: "main", Message: `msg "quoted"`, Paths: []string{"a.txt", "dir/b.txt"}},
		DockerBuild: &taskdoc.DockerBuild{ContextDir: "img", Dockerfile: "Dockerfile.dev", Tag: "berth-ws-x:v1"},
		Progress:    &taskdoc.Progress{Current: 3, Total: 10, Percentage: 30, Message: "turn 3 of 10"},
		Result: &taskdoc.Result{Success: true, Summary: "done", Details: map[string]any{
			"duration_ms": 1234.0, "num_turns": 4.0, "session_id": "sess-1", "total_cost_usd": 0.0123,
			"usage": map[string]any{"input_tokens": 100.0, "output_tokens": 20.0},
		}},
		Error: &taskdoc.Failure{Code: "EXIT_CODE", Message: "git exited with status 1", Details: "git commit -m x"},
	}
	check := func(when string, got *TaskRecord) {
		t.Helper()
		for _, c := range []struct {
			name      string
			got, want any
		}{
			{"config", got.Config, want.Config}, {"git", got.Git, want.Git}, {"docker_build", got.DockerBuild, want.DockerBuild},
			{"progress", got.Progress, want.Progress}, {"result", got.Result, want.Result}, {"error", got.Error, want.Error},
		} {
			if !reflect.DeepEqual(c.got, c.want) {
				t.Errorf("%s: %s = %+v, want %+v", when, c.name, c.got, c.want)
			}
		}
	}
	check("old row", got)

	// The new encoder writes the same shape: the same bytes for every
	// document whose fields come in proto order.
	again := *got
	again.ID = uuid.NewString()
	if err := s.CreateTaskRecord(t.Context(), &again); err != nil {
		t.Fatal(err)
	}
	var config, git, build, errDoc string
	if err := s.conn().queryRow(t.Context(), `SELECT config, git, docker_build, error FROM tasks WHERE id = ?`, again.ID).Scan(&config, &git, &build, &errDoc); err != nil {
		t.Fatal(err)
	}
	for _, c := range [][2]string{{config, oldConfig}, {git, oldGit}, {build, oldBuild}, {errDoc, oldError}} {
		if c[0] != c[1] {
			t.Errorf("written as %s, the old code wrote %s", c[0], c[1])
		}
	}
	reread, _, err := s.FindTask(t.Context(), again.ID, Viewer{Admin: true})
	if err != nil {
		t.Fatal(err)
	}
	check("rewritten row", reread)

	// An enum number, which protojson also accepts, is read too.
	setDocs(t, s, id, `{}`, `{"operation":1}`, `{}`, `{}`, `{}`, `{}`)
	got, _, err = s.FindTask(t.Context(), id, Viewer{Admin: true})
	if err != nil {
		t.Fatal(err)
	}
	if got.Git.Operation != "clone" || !reflect.DeepEqual(got.Config, &taskdoc.Config{}) {
		t.Errorf("git %+v, config %+v", got.Git, got.Config)
	}
}

// TestTaskDocumentCorrupt checks that a stored document that does not
// decode fails every read of its task, naming the column, instead of
// reading as a default.
func TestTaskDocumentCorrupt(t *testing.T) {
	t.Parallel()
	s, id := openTaskRow(t)
	for _, c := range []struct {
		column, doc, want string
	}{
		{"config", `{"max_turns":"many"}`, "column config"},
		{"config", `{"maxTurns":7}`, `unknown field "maxTurns"`}, // a renamed field
		{"git", `{"operation":"GIT_OPERATION_TYPE_REBASE"}`, "column git"},
		{"progress", `{"current":1} {}`, "column progress"},
		{"result", `{"details":[1,2]}`, "column result"},
		{"error", `{not json`, "column error"},
		{"docker_build", `[]`, "column docker_build"},
	} {
		docs := map[string]string{"config": "{}", "git": "{}", "docker_build": "{}", "progress": "{}", "result": "{}", "error": "{}"}
		docs[c.column] = c.doc
		setDocs(t, s, id, docs["config"], docs["git"], docs["docker_build"], docs["progress"], docs["result"], docs["error"])
		_, _, err := s.FindTask(t.Context(), id, Viewer{Admin: true})
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), id) {
			t.Errorf("%s %s: find = %v, want an error naming the task and %q", c.column, c.doc, err, c.want)
		}
		if _, ok := fault.Message(err); ok {
			t.Errorf("%s %s: a corrupt row is an internal error, not %v", c.column, c.doc, err)
		}
		if _, _, err := s.ListTasks(t.Context(), TaskFilter{Viewer: Viewer{Admin: true}}); err == nil {
			t.Errorf("%s %s: list read the corrupt row", c.column, c.doc)
		}
	}
}
