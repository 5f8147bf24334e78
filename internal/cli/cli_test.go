package cli_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
)

// TestCLI drives the built binary against a real server: password login
// with stored, refreshed credentials, workspaces by name, a followed task
// that prints every log line, a failing task's exit status, -o json that
// parses, an API key in BERTH_TOKEN without login, Ctrl-C detach, logout.
func TestCLI(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	srv.register(t, "ada@example.com")
	ada := newUser(t)
	credsPath := filepath.Join(ada.config, "berth", "credentials.json")

	t.Run("login stores 0600 credentials", func(t *testing.T) {
		ada.t = t
		ada.login(srv, "ada@example.com")
		for path, want := range map[string]os.FileMode{credsPath: 0o600, filepath.Dir(credsPath): 0o700} {
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if got := fi.Mode().Perm(); got != want {
				t.Errorf("%s has mode %v, want %v", path, got, want)
			}
		}
		var who berthv1.GetCurrentUserResponse
		parse(t, ada.ok("whoami", "-o", "json").stdout, &who)
		if who.GetUser().GetEmail() != "ada@example.com" {
			t.Errorf("whoami: %v", &who)
		}
		// On a terminal the password is asked for and not echoed.
		srv.register(t, "cy@example.com")
		cy := newUser(t)
		term := startTerminal(t, cy, "login --server "+srv.url+" --email cy@example.com")
		term.waitFor("Password: ")
		term.write(password + "\n")
		if code, seen := term.wait(); code != 0 || strings.Contains(seen, password) || !strings.Contains(seen, "Logged in to") {
			t.Errorf("login on a terminal: exit %d\n%q", code, seen)
		}
		if _, err := os.Stat(filepath.Join(cy.config, "berth", "credentials.json")); err != nil {
			t.Errorf("login on a terminal stored nothing: %v", err)
		}
		if res := ada.run("wrong\n", "login", "--server", srv.url, "--email", "ada@example.com", "--password-stdin"); res.code != 1 || !strings.Contains(res.stderr, "unauthenticated") && !strings.Contains(res.stderr, "not authenticated") {
			t.Errorf("login with a wrong password: %s", res)
		}
	})

	var wsID string
	t.Run("workspaces by name", func(t *testing.T) {
		ada.t = t
		var created berthv1.CreateWorkspaceResponse
		parse(t, ada.ok("ws", "create", "demo", "--description", "CLI test", "-o", "json").stdout, &created)
		wsID = created.GetWorkspace().GetId()
		var list berthv1.ListWorkspacesResponse
		parse(t, ada.ok("workspace", "list", "-o", "json").stdout, &list)
		if len(list.GetWorkspaces()) != 1 || list.GetWorkspaces()[0].GetId() != wsID {
			t.Errorf("ws list: %v", &list)
		}
		table := ada.ok("ws", "get", "demo").stdout
		if !strings.HasPrefix(table, "ID") || !strings.Contains(table, wsID) || !strings.Contains(table, "demo") {
			t.Errorf("ws get demo (table):\n%s", table)
		}
		if y := ada.ok("ws", "get", wsID, "-o", "yaml").stdout; !strings.Contains(y, "name: demo") {
			t.Errorf("ws get -o yaml:\n%s", y)
		}
		if res := ada.run("", "ws", "get", "nonesuch"); res.code != 1 || !strings.Contains(res.stderr, `no workspace named "nonesuch"`) {
			t.Errorf("unknown workspace: %s", res)
		}
		if res := ada.run("", "ws", "list", "-o", "xml"); res.code != 2 || !strings.Contains(res.stderr, "-o") {
			t.Errorf("-o xml: %s", res)
		}
	})

	var okTask string
	t.Run("task run --follow prints every line and exits 0", func(t *testing.T) {
		ada.t = t
		res := ada.run("", "task", "run", "demo", "--claude", "Summarise the project", "--max-turns", "10", "--follow")
		if res.code != 0 {
			t.Fatalf("task run: %s", res)
		}
		okTask = taskIDFrom(t, res.stderr)
		if strings.Contains(res.stdout, "\x1b[") {
			t.Errorf("colour on a pipe:\n%s", res.stdout)
		}
		var logs berthv1.GetTaskLogsResponse
		parse(t, ada.ok("task", "logs", okTask, "-o", "json").stdout, &logs)
		if len(logs.GetEntries()) < 5 {
			t.Fatalf("only %d log lines stored", len(logs.GetEntries()))
		}
		rest := res.stdout
		for _, e := range logs.GetEntries() { // every line, in order
			for _, l := range strings.Split(strings.TrimSpace(e.GetMessage()), "\n") {
				i := strings.Index(rest, strings.TrimSpace(l))
				if i < 0 {
					t.Fatalf("line %d %q missing (or out of order) in the followed output:\n%s", e.GetSeq(), l, res.stdout)
				}
				rest = rest[i+len(strings.TrimSpace(l)):]
			}
		}
		for _, want := range []string{`→ Bash {"command":"ls -la"}`, "Done: the project has a README"} {
			if !strings.Contains(res.stdout, want) {
				t.Errorf("followed output lacks %q:\n%s", want, res.stdout)
			}
		}
		if !strings.Contains(res.stderr, "succeeded") || !strings.Contains(res.stderr, "cost $") {
			t.Errorf("no summary with the cost on stderr:\n%s", res.stderr)
		}
		// The plain log (no --follow) prints the same lines.
		if plain := ada.ok("task", "logs", okTask).stdout; plain != res.stdout {
			t.Errorf("task logs differs from the followed output:\n%s\n---\n%s", plain, res.stdout)
		}
		// --since skips the lines up to N.
		var since berthv1.GetTaskLogsResponse
		parse(t, ada.ok("task", "logs", okTask, "--since", "3", "-o", "json").stdout, &since)
		if len(since.GetEntries()) != len(logs.GetEntries())-3 || since.GetEntries()[0].GetSeq() != 4 {
			t.Errorf("--since 3 gave %d lines from seq %d", len(since.GetEntries()), since.GetEntries()[0].GetSeq())
		}
		var got berthv1.GetTaskResponse
		parse(t, ada.ok("task", "get", okTask, "-o", "json").stdout, &got)
		if got.GetTask().GetStatus() != berthv1.TaskStatus_TASK_STATUS_SUCCEEDED {
			t.Errorf("task get: %v", &got)
		}
	})

	t.Run("a failing task exits 3", func(t *testing.T) {
		ada.t = t
		res := ada.run("", "task", "run", "demo", "--claude", "[fail] break something", "--follow")
		if res.code != 3 || !strings.Contains(res.stderr, "failed") {
			t.Fatalf("failing task: %s", res)
		}
		var list berthv1.ListTasksResponse
		parse(t, ada.ok("task", "list", "--workspace", "demo", "-o", "json").stdout, &list)
		if len(list.GetTasks()) != 2 {
			t.Errorf("task list: %d tasks, want 2", len(list.GetTasks()))
		}
		if res := ada.run("", "task", "run", "demo", "--claude", "x", "--git", "status"); res.code != 2 {
			t.Errorf("--claude with --git: %s", res)
		}
	})

	t.Run("git tasks", func(t *testing.T) {
		ada.t = t
		ada.ok("task", "run", "demo", "--git", "init", "--follow")
		res := ada.ok("task", "run", "demo", "--git", "status", "--follow")
		if !strings.Contains(res.stdout, "No commits yet") {
			t.Errorf("git status output:\n%s", res.stdout)
		}
	})

	t.Run("an API key in BERTH_TOKEN works without login", func(t *testing.T) {
		ada.t = t
		key := strings.TrimSpace(ada.ok("key", "create", "ci").stdout)
		if key == "" || strings.Contains(key, "\n") {
			t.Fatalf("key create printed %q", key)
		}
		ci := newUser(t, "BERTH_TOKEN="+key, "BERTH_SERVER="+srv.url)
		var list berthv1.ListWorkspacesResponse
		parse(t, ci.ok("ws", "list", "-o", "json").stdout, &list)
		if len(list.GetWorkspaces()) != 1 || list.GetWorkspaces()[0].GetName() != "demo" {
			t.Errorf("ws list with BERTH_TOKEN: %v", &list)
		}
		if _, err := os.Stat(filepath.Join(ci.config, "berth", "credentials.json")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("BERTH_TOKEN wrote credentials: %v", err)
		}
		anon := newUser(t, "BERTH_SERVER="+srv.url)
		if res := anon.run("", "ws", "list"); res.code != 1 || !strings.Contains(res.stderr, "not logged in") {
			t.Errorf("no credentials: %s", res)
		}
		bad := newUser(t, "BERTH_TOKEN=not-a-key", "BERTH_SERVER="+srv.url)
		if res := bad.run("", "ws", "list"); res.code != 1 || !strings.Contains(res.stderr, "not authenticated") {
			t.Errorf("a bad BERTH_TOKEN: %s", res)
		}
	})

	t.Run("tokens refresh and rotate", func(t *testing.T) {
		ada.t = t
		garbage := func(c map[string]any) { c["access_token"] = "garbage" }
		for _, step := range []struct {
			spoil func(map[string]any)
			args  []string
		}{
			{garbage, []string{"whoami"}}, // refused: 401, refresh, retry
			{func(c map[string]any) { c["expiry"] = time.Now().Add(-time.Hour).Format(time.RFC3339) }, []string{"whoami"}}, // expired: refreshed first
			{garbage, []string{"task", "logs", "--follow", okTask}},                                                        // a refused stream: refresh, reconnect
		} {
			before := editCredentials(t, credsPath, srv.url, step.spoil)
			ada.ok(step.args...)
			after := editCredentials(t, credsPath, srv.url, func(map[string]any) {})
			if after["refresh_token"] == before["refresh_token"] || after["access_token"] == before["access_token"] {
				t.Errorf("the tokens were not rotated: %v → %v", before, after)
			}
			if fi, err := os.Stat(credsPath); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("credentials after a refresh: %v %v", fi.Mode(), err)
			}
		}
	})

	t.Run("Ctrl-C detaches; a cancelled task exits 4", func(t *testing.T) {
		ada.t = t
		var created berthv1.CreateTaskResponse
		parse(t, ada.ok("task", "run", "demo", "--claude", "[hang] wait", "--follow=false", "-o", "json").stdout, &created)
		id := created.GetTask().GetId()
		berth, _ := binaries(t)
		ctx, cancel := context.WithTimeout(t.Context(), within(t))
		defer cancel()
		cmd := exec.CommandContext(ctx, berth, "task", "logs", "--follow", id)
		cmd.Env = ada.env
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		if !sc.Scan() { // the init line: it is following
			t.Fatalf("no log line: %v %s", sc.Err(), stderr.String())
		}
		if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		for sc.Scan() {
		}
		err = cmd.Wait()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 130 || !strings.Contains(stderr.String(), "detached") {
			t.Fatalf("Ctrl-C: %v %s", err, stderr.String())
		}
		ada.ok("task", "cancel", id)
		if res := ada.run("", "task", "logs", "--follow", id); res.code != 4 || !strings.Contains(res.stderr, "cancelled") {
			t.Errorf("following a cancelled task: %s", res)
		}
	})

	t.Run("on a terminal: follow by default, colour, progress, Ctrl-C asks", func(t *testing.T) {
		ada.t = t
		terminalCancel(t, ada)
	})

	t.Run("ws watch prints task events live", func(t *testing.T) {
		ada.t = t
		berth, _ := binaries(t)
		ctx, cancel := context.WithTimeout(t.Context(), within(t))
		defer cancel()
		cmd := exec.CommandContext(ctx, berth, "ws", "watch", "demo", "-o", "json")
		cmd.Env = ada.env
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		next := func() *berthv1.WorkspaceEvent {
			t.Helper()
			if !sc.Scan() {
				t.Fatalf("watch ended: %v %s", sc.Err(), stderr.String())
			}
			var ev berthv1.WatchWorkspaceResponse
			if err := protojson.Unmarshal(sc.Bytes(), &ev); err != nil {
				t.Fatalf("watch event %q: %v", sc.Text(), err)
			}
			return ev.GetEvent()
		}
		if ev := next(); ev.GetKind() != "workspace.status" || ev.GetWorkspace().GetId() != wsID { // subscribed
			t.Fatalf("first event: %v", ev)
		}
		res := ada.run("", "task", "run", "demo", "--claude", "watch me", "--follow")
		if res.code != 0 {
			t.Fatalf("task run: %s", res)
		}
		id := taskIDFrom(t, res.stderr)
		var kinds []string
		for {
			ev := next()
			if ev.GetTaskId() != id && ev.GetTask().GetId() != id {
				continue
			}
			kinds = append(kinds, ev.GetKind())
			if ev.GetTaskStatus() == berthv1.TaskStatus_TASK_STATUS_SUCCEEDED {
				break
			}
		}
		if kinds[0] != "task.created" {
			t.Errorf("task events: %v", kinds)
		}
		if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		for sc.Scan() {
		}
		var exit *exec.ExitError
		if err := cmd.Wait(); !errors.As(err, &exit) || exit.ExitCode() != 130 {
			t.Errorf("watch after Ctrl-C: %v %s", err, stderr.String())
		}
	})

	t.Run("admin and sharing", func(t *testing.T) {
		ada.t = t // the first account: an admin
		srv.register(t, "bob@example.com")
		var users berthv1.ListUsersResponse
		parse(t, ada.ok("admin", "users", "--search", "bob", "-o", "json").stdout, &users)
		if len(users.GetUsers()) != 1 {
			t.Fatalf("admin users --search bob: %v", &users)
		}
		bob := users.GetUsers()[0].GetId()
		var role berthv1.SetUserRoleResponse
		parse(t, ada.ok("admin", "role", bob, "viewer", "-o", "json").stdout, &role)
		if role.GetUser().GetRole() != berthv1.Role_ROLE_VIEWER {
			t.Errorf("admin role: %v", &role)
		}
		if out := ada.ok("admin", "disable", bob).stdout; !strings.Contains(out, "yes") {
			t.Errorf("admin disable (table):\n%s", out)
		}
		ada.ok("admin", "enable", bob)
		var audit berthv1.ListAuditEventsResponse
		parse(t, ada.ok("admin", "audit", "--target", bob, "-o", "json").stdout, &audit)
		if len(audit.GetEvents()) < 3 {
			t.Errorf("admin audit --target bob: %d events", len(audit.GetEvents()))
		}
		ada.ok("ws", "share", "demo", "bob@example.com", "--role", "viewer")
		var members berthv1.ListMembersResponse
		parse(t, ada.ok("ws", "members", "demo", "-o", "json").stdout, &members)
		found := false
		for _, m := range members.GetMembers() {
			found = found || m.GetEmail() == "bob@example.com" && m.GetRole() == berthv1.WorkspaceRole_WORKSPACE_ROLE_VIEWER
		}
		if !found {
			t.Errorf("ws members: %v", &members)
		}
		if res := ada.run("", "admin", "role", bob, "overlord"); res.code != 2 {
			t.Errorf("an unknown role: %s", res)
		}
	})

	t.Run("stats", func(t *testing.T) {
		ada.t = t
		var stats berthv1.GetStatsResponse
		parse(t, ada.ok("stats", "-o", "json").stdout, &stats)
		if stats.GetTasks() != 7 || stats.GetWorkspaces() != 1 || stats.GetTotalCostUsd() <= 0 {
			t.Errorf("stats: %v", &stats)
		}
	})

	t.Run("logout", func(t *testing.T) {
		ada.t = t
		old := editCredentials(t, credsPath, srv.url, func(map[string]any) {})
		ada.ok("logout")
		if res := ada.run("", "whoami"); res.code != 1 || !strings.Contains(res.stderr, "not logged in") {
			t.Errorf("whoami after logout: %s", res)
		}
		// The server revoked the session: the old access token is refused.
		stale := newUser(t, "BERTH_TOKEN="+old["access_token"].(string), "BERTH_SERVER="+srv.url)
		if res := stale.run("", "whoami"); res.code != 1 || !strings.Contains(res.stderr, "not authenticated") {
			t.Errorf("the logged-out access token still works: %s", res)
		}
	})
}

// editCredentials changes the stored credentials of server with edit and
// returns them as they were.
func editCredentials(t *testing.T, path, server string, edit func(map[string]any)) map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var file map[string]any
	if err := json.Unmarshal(data, &file); err != nil {
		t.Fatal(err)
	}
	creds := file["servers"].(map[string]any)[server].(map[string]any)
	before := map[string]any{}
	for k, v := range creds {
		before[k] = v
	}
	edit(creds)
	if data, err = json.Marshal(file); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return before
}
