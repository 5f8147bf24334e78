package server_test

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/google/uuid"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
	"github.com/berthhq/berth/internal/gitop"
	"github.com/berthhq/berth/internal/store"
	"github.com/berthhq/berth/internal/taskdoc"
	"github.com/berthhq/berth/internal/testsvc"
)

// storeTask writes a task straight into the test server's SQLite store,
// past CreateTask and its checks, as a record stored before a rule existed
// would be, and returns its id; the runner picks it up within a second.
func storeTask(t *testing.T, srv *testServer, userID, wsID string, typ store.TaskType, prompt string, cfg *berthv1.TaskConfig, git *berthv1.GitOperation) string {
	t.Helper()
	st, err := store.Open(t.Context(), filepath.Join(srv.DataDir, "berth.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	js := func(m proto.Message) []byte {
		if m == nil {
			return nil
		}
		b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tr := &store.TaskRecord{
		ID: uuid.NewString(), WorkspaceID: wsID, CreatedBy: userID, Type: typ, Status: store.TaskQueued,
		Priority: store.TaskPriorityMedium, Prompt: prompt, Config: storedDoc[taskdoc.Config](t, js(cfg)), Git: storedDoc[taskdoc.GitOp](t, js(git)),
		Tags: []string{}, Metadata: map[string]string{}, CreatedAt: time.Now().UTC(),
	}
	if err := st.CreateTaskRecord(t.Context(), tr); err != nil {
		t.Fatal(err)
	}
	return tr.ID
}

// storedDoc decodes raw, the protojson of an API message as berth stored
// task documents before they had types of their own, as the store reads it.
func storedDoc[T any](t *testing.T, raw []byte) *T {
	t.Helper()
	v, err := taskdoc.Decode[T](raw)
	if err != nil {
		t.Fatalf("decoding the stored document %s: %v", raw, err)
	}
	return v
}

// gitAttacks are environments that ran commands on the host through a
// FETCH git task on the process runtime before the environment rule: each
// makes git run "touch <prefix><attack name in lower case>".
func gitAttacks(prefix string) map[string]map[string]string {
	marker := func(name string) string { return prefix + strings.ToLower(name) }
	return map[string]map[string]string{
		// The remote is ssh://; git runs the ssh command through a shell.
		"GIT_SSH_COMMAND": {"GIT_SSH_COMMAND": "touch " + marker("GIT_SSH_COMMAND") + " #"},
		// Config from the environment rewrites the remote's URL to ext::
		// and allows that transport.
		"GIT_CONFIG_COUNT": {
			"GIT_CONFIG_COUNT": "2",
			"GIT_CONFIG_KEY_0": "url.ext::sh -c touch% " + marker("GIT_CONFIG_COUNT") + ".insteadOf", "GIT_CONFIG_VALUE_0": "ssh://git@127.0.0.1:1/repo",
			"GIT_CONFIG_KEY_1": "protocol.ext.allow", "GIT_CONFIG_VALUE_1": "always",
		},
		// A remote the member set to ext:: (the repository is theirs),
		// allowed by the environment.
		"GIT_ALLOW_PROTOCOL": {"GIT_ALLOW_PROTOCOL": "ext:ssh"},
	}
}

// TestGitTaskEnvironmentAttacks: the environments that made a FETCH git
// task run commands on the host are refused at CreateTask with a field
// violation per variable; stored directly (as an old record), the runner
// fails the task with ENV_REFUSED; and no command ever ran. A control run
// of the same git command with the same environment, outside berth,
// shows each attack is real.
func TestGitTaskEnvironmentAttacks(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	c := srv.clients(protocols[0])
	reg := register(t, c, "gitenv@example.com")
	ctx := as(t.Context(), reg.GetTokens().GetAccessToken())
	dir := srv.mkdir(t, "repo")
	git(t, dir, "init", "-q", "-b", "main")
	git(t, dir, "commit", "-q", "--allow-empty", "-m", "first")
	ws, err := c.Workspace.CreateWorkspace(ctx, &berthv1.CreateWorkspaceRequest{Name: "repo", Path: dir})
	if err != nil {
		t.Fatal(err)
	}
	wsID := ws.GetWorkspace().GetId()
	markers := t.TempDir()

	for name, env := range gitAttacks(filepath.Join(markers, "control-")) {
		// The control: the FETCH's own argv, on a copy of the repository
		// set up for the attack, with the attack's environment.
		control := t.TempDir()
		git(t, control, "init", "-q")
		remote := "ssh://git@127.0.0.1:1/repo"
		if name == "GIT_ALLOW_PROTOCOL" {
			remote = "ext::sh -c touch% " + filepath.Join(markers, "control-"+strings.ToLower(name))
		}
		git(t, control, "remote", "add", "origin", remote)
		steps, err := gitop.Steps(gitop.Op{Operation: gitop.Fetch})
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(steps[0][0], steps[0][1:]...)
		cmd.Dir = control
		cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0")
		for k, v := range env {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		_ = cmd.Run() // git fails after the command ran: there is no repository behind it
		if _, err := os.Stat(filepath.Join(markers, "control-"+strings.ToLower(name))); err != nil {
			t.Fatalf("control: the %s attack did not run a command outside berth, so this test proves nothing: %v", name, err)
		}
	}

	git(t, dir, "remote", "add", "origin", "ssh://git@127.0.0.1:1/repo")
	attacks := gitAttacks(filepath.Join(markers, "berth-"))
	for _, name := range slices.Sorted(maps.Keys(attacks)) {
		env := attacks[name]
		// The workspace's origin, as the attack needs it.
		remote := "ssh://git@127.0.0.1:1/repo"
		if name == "GIT_ALLOW_PROTOCOL" {
			remote = "ext::sh -c touch% " + filepath.Join(markers, "berth-git_allow_protocol")
		}
		git(t, dir, "remote", "set-url", "origin", remote)
		op := &berthv1.GitOperation{Operation: berthv1.GitOperationType_GIT_OPERATION_TYPE_FETCH}
		_, err := c.Task.CreateTask(ctx, &berthv1.CreateTaskRequest{
			WorkspaceId: wsID, Type: berthv1.TaskType_TASK_TYPE_GIT_OPERATION, Git: op,
			Config: &berthv1.TaskConfig{Environment: env},
		})
		details := wantCode(t, err, connect.CodeInvalidArgument, "VALIDATION_ERROR")
		var want []string
		for k := range env {
			want = append(want, fmt.Sprintf("config.environment[%q]", k))
		}
		slices.Sort(want)
		if got := fieldViolations(details); !slices.Equal(got, want) {
			t.Errorf("%s: violations %v, want %v", name, got, want)
		}
		if msg := errMessage(err); !strings.Contains(msg, "config.environment[") || !strings.Contains(msg, "remove it") {
			t.Errorf("%s: message %q does not say what to do", name, msg)
		}

		// Stored as an old record would be: the runner refuses it.
		id := storeTask(t, srv, reg.GetUser().GetId(), wsID, store.TaskGitOperation, "", &berthv1.TaskConfig{Environment: env}, op)
		done := waitTask(t, c, ctx, id, nil)
		if done.GetStatus() != berthv1.TaskStatus_TASK_STATUS_FAILED || done.GetError().GetCode() != "ENV_REFUSED" ||
			!strings.Contains(done.GetError().GetMessage(), "config.environment[") {
			t.Errorf("%s stored directly: %v", name, done)
		}
	}
	entries, err := os.ReadDir(markers)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "berth-") {
			t.Errorf("an attack ran a command on the host through berth: %s exists", e.Name())
		}
	}

	// Any environment on a git task is refused: git's is fixed.
	_, err = c.Task.CreateTask(ctx, &berthv1.CreateTaskRequest{
		WorkspaceId: wsID, Type: berthv1.TaskType_TASK_TYPE_GIT_OPERATION,
		Git:    &berthv1.GitOperation{Operation: berthv1.GitOperationType_GIT_OPERATION_TYPE_STATUS},
		Config: &berthv1.TaskConfig{Environment: map[string]string{"MY_VAR": "1"}},
	})
	if got := fieldViolations(wantCode(t, err, connect.CodeInvalidArgument, "VALIDATION_ERROR")); !slices.Equal(got, []string{"config.environment"}) {
		t.Errorf("harmless variable on a git task: violations %v", got)
	}
}

// TestClaudeTaskEnvironment: variables that steer the claude CLI (the
// linker, node, the API's address, proxies) are refused at CreateTask and,
// stored directly, at run time; a plain variable reaches the CLI; flags
// widen and narrow the rule.
func TestClaudeTaskEnvironment(t *testing.T) {
	t.Parallel()
	srv := startServer(t, "--claude-path", testsvc.FakeClaude(t), "--anthropic-api-key", testAPIKey,
		"--task-env-deny", "*_TOKEN", "--task-env-allow", "PYTHONUNBUFFERED")
	c := srv.clients(protocols[0])
	reg := register(t, c, "claudeenv@example.com")
	ctx := as(t.Context(), reg.GetTokens().GetAccessToken())
	ws, err := c.Workspace.CreateWorkspace(ctx, &berthv1.CreateWorkspaceRequest{Name: "env", Path: srv.mkdir(t, "env")})
	if err != nil {
		t.Fatal(err)
	}
	wsID := ws.GetWorkspace().GetId()
	create := func(prompt string, env map[string]string) (*berthv1.CreateTaskResponse, error) {
		return c.Task.CreateTask(ctx, &berthv1.CreateTaskRequest{
			WorkspaceId: wsID, Type: berthv1.TaskType_TASK_TYPE_CLAUDE_CHAT, Prompt: prompt,
			Config: &berthv1.TaskConfig{Environment: env},
		})
	}
	for key, value := range map[string]string{
		"LD_PRELOAD": "/workspace/evil.so", "NODE_OPTIONS": "--require /workspace/evil.js",
		"ANTHROPIC_BASE_URL": "http://127.0.0.1:1", "https_proxy": "http://127.0.0.1:1", "ANTHROPIC_API_KEY": "sk-mine",
		"BERTH_TASK_TAG": "x", "GITHUB_TOKEN": "from --task-env-deny", "PYTHONPATH": "/workspace",
	} {
		_, err := create("hi", map[string]string{key: value, "MY_VAR": "1"})
		details := wantCode(t, err, connect.CodeInvalidArgument, "VALIDATION_ERROR")
		if got := fieldViolations(details); !slices.Equal(got, []string{fmt.Sprintf("config.environment[%q]", key)}) {
			t.Errorf("%s: violations %v", key, got)
		}
	}

	res, err := create("show me [env:MY_VAR] [env:PYTHONUNBUFFERED] [env:LD_PRELOAD]", map[string]string{"MY_VAR": "1", "PYTHONUNBUFFERED": "1"})
	if err != nil {
		t.Fatal(err)
	}
	done := waitTask(t, c, ctx, res.GetTask().GetId(), nil)
	if done.GetStatus() != berthv1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("task with plain variables = %v", done)
	}
	var seen []string
	for _, e := range allLogs(t, c, ctx, done.GetId()) {
		if strings.HasPrefix(e.GetMessage(), "env ") {
			seen = append(seen, e.GetMessage())
		}
	}
	if want := []string{"env MY_VAR=1", "env PYTHONUNBUFFERED=1", "env LD_PRELOAD unset"}; !slices.Equal(seen, want) {
		t.Errorf("the CLI saw %q, want %q", seen, want)
	}

	id := storeTask(t, srv, reg.GetUser().GetId(), wsID, store.TaskClaudeChat, "[env:LD_PRELOAD]",
		&berthv1.TaskConfig{Environment: map[string]string{"MY_VAR": "1", "LD_PRELOAD": "/nonexistent/evil.so"}}, nil)
	done = waitTask(t, c, ctx, id, nil)
	if done.GetStatus() != berthv1.TaskStatus_TASK_STATUS_FAILED || done.GetError().GetCode() != "ENV_REFUSED" ||
		!strings.Contains(done.GetError().GetMessage(), `config.environment["LD_PRELOAD"]`) {
		t.Errorf("stored claude task with LD_PRELOAD = %v", done)
	}
	for _, e := range allLogs(t, c, ctx, id) {
		if strings.HasPrefix(e.GetMessage(), "env ") || e.GetSource() == berthv1.LogSource_LOG_SOURCE_ASSISTANT {
			t.Errorf("the refused task ran the CLI: %q", e.GetMessage())
		}
	}
}

// TestGitCommitIgnoresHostConfig (not parallel: it sets HOME for the
// process runtime's host environment): with a hostile ~/.gitconfig on the
// host — an identity, and a clean filter that runs a program on every file
// git stages (through a global attributes file) — a commit task is
// authored and committed by the berth account that created it, and the
// program never runs.
func TestGitCommitIgnoresHostConfig(t *testing.T) {
	home := t.TempDir()
	marker := filepath.Join(t.TempDir(), "ran-from-host-config")
	attributes := filepath.Join(home, "attributes")
	if err := os.WriteFile(attributes, []byte("* filter=host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	gitconfig := fmt.Sprintf("[user]\n\tname = HOST\n\temail = host@host.example\n[core]\n\tattributesFile = %s\n[filter \"host\"]\n\tclean = %s\n",
		attributes, writeScript(t, "#!/bin/sh\ntouch "+marker+"\ncat\n"))
	if err := os.WriteFile(filepath.Join(home, ".gitconfig"), []byte(gitconfig), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOME", home)

	srv := startServer(t)
	c := srv.clients(protocols[0])
	res, err := c.Auth.Register(t.Context(), &berthv1.RegisterRequest{Email: "Ada@Example.com", Password: "correct horse battery", Name: "Ada Lovelace"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := as(t.Context(), res.GetTokens().GetAccessToken())
	dir := srv.mkdir(t, "repo")
	git(t, dir, "init", "-q", "-b", "main")
	if err := os.WriteFile(filepath.Join(dir, "README"), []byte("one\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ws, err := c.Workspace.CreateWorkspace(ctx, &berthv1.CreateWorkspaceRequest{Name: "repo", Path: dir})
	if err != nil {
		t.Fatal(err)
	}
	task, err := c.Task.CreateTask(ctx, &berthv1.CreateTaskRequest{
		WorkspaceId: ws.GetWorkspace().GetId(), Type: berthv1.TaskType_TASK_TYPE_GIT_OPERATION,
		Git: &berthv1.GitOperation{Operation: berthv1.GitOperationType_GIT_OPERATION_TYPE_COMMIT, Message: "first", Paths: []string{"README"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	done := waitTask(t, c, ctx, task.GetTask().GetId(), nil)
	if done.GetStatus() != berthv1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("commit = %v", done)
	}
	// Read back without any global config either.
	got := gitNoConfig(t, dir, "log", "-1", "--format=%an <%ae> / %cn <%ce>")
	if want := "Ada Lovelace <ada@example.com> / Ada Lovelace <ada@example.com>"; got != want {
		t.Errorf("commit identity %q, want %q", got, want)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the host's ~/.gitconfig ran a program")
	}
	if head := done.GetResult().GetDetails().GetFields()["head"].GetStringValue(); head != gitNoConfig(t, dir, "rev-parse", "HEAD") {
		t.Errorf("result head %q", head)
	}
}

// writeScript writes an executable script and returns its path.
func writeScript(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "script")
	if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// gitNoConfig runs git in dir reading no global or system configuration.
func gitNoConfig(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// scrape returns the admin listener's /metrics.
func scrape(t *testing.T, srv *testServer) string {
	t.Helper()
	res, err := http.Get(srv.AdminURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// metricValue returns the value of an unlabelled metric on /metrics.
func metricValue(t *testing.T, srv *testServer, name string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindStringSubmatch(scrape(t, srv))
	if m == nil {
		t.Fatalf("/metrics has no %s", name)
	}
	return m[1]
}

// grepLines returns the lines of s matching pattern.
func grepLines(s, pattern string) string {
	re := regexp.MustCompile(pattern)
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if re.MatchString(l) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestAPIKeyRedactedInEveryForm: an agent that prints the operator's key
// encoded (base64, base64url, hex in both cases, URL-escaped) in its
// output, and in plain text and base64 on stderr, each split across two
// writes, leaves none of those forms in the task's log or record.
func TestAPIKeyRedactedInEveryForm(t *testing.T) {
	t.Parallel()
	srv := startServer(t, "--claude-path", testsvc.FakeClaude(t), "--anthropic-api-key", testAPIKey)
	c := srv.clients(protocols[0])
	ctx := as(t.Context(), register(t, c, "leak@example.com").GetTokens().GetAccessToken())
	ws, err := c.Workspace.CreateWorkspace(ctx, &berthv1.CreateWorkspaceRequest{Name: "leak", Path: srv.mkdir(t, "leak")})
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Task.CreateTask(ctx, &berthv1.CreateTaskRequest{WorkspaceId: ws.GetWorkspace().GetId(), Type: berthv1.TaskType_TASK_TYPE_CLAUDE_CHAT, Prompt: "print it [leak]"})
	if err != nil {
		t.Fatal(err)
	}
	done := waitTask(t, c, ctx, res.GetTask().GetId(), nil)
	if done.GetStatus() != berthv1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("task = %v", done)
	}
	b := []byte(testAPIKey)
	forms := []string{testAPIKey, base64.StdEncoding.EncodeToString(b), base64.RawURLEncoding.EncodeToString(b),
		hex.EncodeToString(b), strings.ToUpper(hex.EncodeToString(b)), url.QueryEscape(testAPIKey)}
	redacted, stderr := 0, 0
	for _, e := range allLogs(t, c, ctx, done.GetId()) {
		for _, f := range forms {
			if strings.Contains(e.String(), f) {
				t.Errorf("log line %d holds the key as %q: %q", e.GetSeq(), f, e.GetMessage())
			}
		}
		redacted += strings.Count(e.GetMessage(), "[REDACTED]")
		if e.GetSource() == berthv1.LogSource_LOG_SOURCE_STDERR && e.GetMessage() == "stderr key [REDACTED] end" {
			stderr++
		}
	}
	if redacted != 7 || stderr != 2 {
		t.Errorf("%d redactions (%d whole stderr lines), want 7 (2)", redacted, stderr)
	}
	for _, f := range forms {
		if strings.Contains(done.String(), f) {
			t.Errorf("the task record holds the key as %q", f)
		}
	}
}
