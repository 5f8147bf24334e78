package server_test

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"connectrpc.com/connect/v2"

	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
	"github.com/berthhq/berth/internal/testsvc"
)

// pair is two berth instances sharing one Postgres database, one Valkey,
// one signing key and one workspace root, as behind a load balancer.
type pair struct {
	flags  []string
	redis  *testsvc.Redis
	shared string
}

func newPair(t *testing.T, extra ...string) *pair {
	t.Helper()
	shared := t.TempDir()
	redis := testsvc.StartRedis(t)
	flags := append([]string{
		"--database-url", testsvc.Postgres(t), "--valkey-url", redis.URL(),
		"--jwt-key-file", filepath.Join(shared, "jwt.pem"), "--workspace-root", filepath.Join(shared, "workspaces"),
		"--claude-path", testsvc.FakeClaude(t), "--anthropic-api-key", testAPIKey,
	}, extra...)
	return &pair{flags: flags, redis: redis, shared: shared}
}

func (p *pair) start(t *testing.T) *testServer { t.Helper(); return startServer(t, p.flags...) }

// mkdirIn makes a project directory in the shared workspace root.
func (p *pair) mkdir(t *testing.T, name string) string {
	t.Helper()
	dir := filepath.Join(p.shared, "workspaces", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestStreamAcrossInstances: a task runs on instance A; a client follows
// its log on instance B over SSE and over a Connect stream, and receives
// every line live, then the end — the lines reach B through Valkey.
func TestStreamAcrossInstances(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	a := p.start(t)
	ca := a.clients(protocols[0])
	token := register(t, ca, "across@example.com").GetTokens().GetAccessToken()
	ctx := as(t.Context(), token)
	ws, err := ca.Workspace.CreateWorkspace(ctx, &berthv1.CreateWorkspaceRequest{Name: "x", Path: p.mkdir(t, "x")})
	if err != nil {
		t.Fatal(err)
	}
	// Created while A is the only instance, so A runs it.
	created, err := ca.Task.CreateTask(ctx, &berthv1.CreateTaskRequest{WorkspaceId: ws.GetWorkspace().GetId(), Type: berthv1.TaskType_TASK_TYPE_CLAUDE_CHAT, Prompt: "across [slow] [lines:30]"})
	if err != nil {
		t.Fatal(err)
	}
	id := created.GetTask().GetId()
	waitTask(t, ca, ctx, id, func(tk *berthv1.Task) bool { return tk.GetStatus() == berthv1.TaskStatus_TASK_STATUS_RUNNING })

	b := p.start(t)
	cb := b.clients(protocols[0])
	s, code := openSSE(t, ctx, b.URL+"/api/v1/tasks/"+id+"/logs/stream", bearer(token))
	if code != http.StatusOK {
		t.Fatalf("SSE on B: %d", code)
	}
	rpc, err := cb.Task.StreamTaskLogs(ctx, &berthv1.StreamTaskLogsRequest{TaskId: id})
	if err != nil {
		t.Fatal(err)
	}
	seqs, end := readSSETask(t, s, 0)
	if end.GetStatus() != berthv1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("end on B: %v", end)
	}
	checkSeqs(t, "SSE on B", seqs, end.GetLastSeq())
	var rpcSeqs []int64
	for {
		res, err := rpc.Receive()
		if err != nil {
			if err != io.EOF && !strings.Contains(err.Error(), "EOF") {
				t.Fatalf("Connect stream on B: %v", err)
			}
			break
		}
		if l := res.GetLog(); l != nil {
			rpcSeqs = append(rpcSeqs, l.GetSeq())
		}
	}
	checkSeqs(t, "Connect on B", rpcSeqs, end.GetLastSeq())
	if v := metric(t, b, `berth_valkey_up`); v != 1 {
		t.Errorf("berth_valkey_up on B = %v", v)
	}
	res, err := http.Get(b.URL + "/ready")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var ready map[string]any
	if err := json.NewDecoder(res.Body).Decode(&ready); err != nil {
		t.Fatal(err)
	}
	if got := ready["checks"].(map[string]any)["valkey"].(map[string]any)["state"]; got != "ok" {
		t.Errorf("/ready valkey = %v", got)
	}
}

// TestAuthChangesReachEveryInstance: with Valkey, a role change, a
// disabled account or a logout made through instance A applies on
// instance B to the very next request, every time.
func TestAuthChangesReachEveryInstance(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	a, b := p.start(t), p.start(t)
	ca, cb := a.clients(protocols[0]), b.clients(protocols[0])
	admin := as(t.Context(), register(t, ca, "root@example.com").GetTokens().GetAccessToken())
	reg := register(t, ca, "worker@example.com")
	userID := reg.GetUser().GetId()
	worker := as(t.Context(), reg.GetTokens().GetAccessToken())
	// Warm B's cache with the account as it is.
	if _, err := cb.Auth.GetCurrentUser(worker, &berthv1.GetCurrentUserRequest{}); err != nil {
		t.Fatal(err)
	}
	// Over --workspace-max-memory: refused after the role check.
	create := &berthv1.CreateWorkspaceRequest{Name: "w", Resources: &berthv1.ResourceLimits{MemoryMb: 1 << 20}}
	for i := range 40 {
		role := []berthv1.Role{berthv1.Role_ROLE_VIEWER, berthv1.Role_ROLE_MEMBER}[i%2]
		if _, err := ca.Admin.SetUserRole(admin, &berthv1.SetUserRoleRequest{UserId: userID, Role: role}); err != nil {
			t.Fatal(err)
		}
		_, err := cb.Workspace.CreateWorkspace(worker, create)
		if role == berthv1.Role_ROLE_VIEWER {
			wantCode(t, err, connect.CodePermissionDenied, "FORBIDDEN") // a viewer may not create
		} else {
			wantCode(t, err, connect.CodeInvalidArgument, "VALIDATION_ERROR") // a member gets as far as the limits
		}
	}
	for i := range 20 {
		if _, err := ca.Admin.DisableUser(admin, &berthv1.DisableUserRequest{UserId: userID}); err != nil {
			t.Fatal(err)
		}
		_, err := cb.Auth.GetCurrentUser(worker, &berthv1.GetCurrentUserRequest{})
		wantCode(t, err, connect.CodeUnauthenticated, "UNAUTHORIZED")
		if _, err := ca.Admin.EnableUser(admin, &berthv1.EnableUserRequest{UserId: userID}); err != nil {
			t.Fatal(err)
		}
		// Disabling revoked the account's sessions: the old token stays
		// refused on B, though the account works again (a new sign-in).
		_, err = cb.Auth.GetCurrentUser(worker, &berthv1.GetCurrentUserRequest{})
		wantCode(t, err, connect.CodeUnauthenticated, "UNAUTHORIZED")
		login, err := ca.Auth.Login(t.Context(), &berthv1.LoginRequest{Email: "worker@example.com", Password: "correct horse battery"})
		if err != nil {
			t.Fatalf("round %d: sign in again on A: %v", i, err)
		}
		worker = as(t.Context(), login.GetTokens().GetAccessToken())
		if _, err := cb.Auth.GetCurrentUser(worker, &berthv1.GetCurrentUserRequest{}); err != nil {
			t.Fatalf("round %d: enabled again on A, new token refused on B: %v", i, err)
		}
	}
	if _, err := ca.Auth.Logout(worker, &berthv1.LogoutRequest{}); err != nil {
		t.Fatal(err)
	}
	_, err := cb.Auth.GetCurrentUser(worker, &berthv1.GetCurrentUserRequest{})
	wantCode(t, err, connect.CodeUnauthenticated, "UNAUTHORIZED")
	// Unchanged records are served from memory: reads of one account
	// become hits (on a loaded machine a read may come after the
	// reader's lease lapsed and miss; the next ones hit again).
	base := metric(t, b, `berth_cache_hits_total{cache="users"}`)
	eventually(t, "B's users cache to serve an unchanged account 3 times", func() bool {
		if _, err := cb.Auth.GetCurrentUser(admin, &berthv1.GetCurrentUserRequest{}); err != nil {
			t.Fatal(err)
		}
		return metric(t, b, `berth_cache_hits_total{cache="users"}`)-base >= 3
	})
}

// TestValkeyOutage: redis-server is killed in the middle of a request loop
// on two instances and started again: no request fails because of it,
// /ready says degraded meanwhile, and both instances come back to Valkey
// by themselves, with caching working again.
func TestValkeyOutage(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	a, b := p.start(t), p.start(t)
	ca, cb := a.clients(protocols[0]), b.clients(protocols[0])
	admin := as(t.Context(), register(t, ca, "outage@example.com").GetTokens().GetAccessToken())
	ws, err := ca.Workspace.CreateWorkspace(admin, &berthv1.CreateWorkspaceRequest{Name: "o", Path: p.mkdir(t, "o")})
	if err != nil {
		t.Fatal(err)
	}
	id := ws.GetWorkspace().GetId()
	readyState := func(srv *testServer) string {
		res, err := http.Get(srv.URL + "/ready")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var ready map[string]any
		if err := json.NewDecoder(res.Body).Decode(&ready); err != nil {
			t.Fatal(err)
		}
		if res.StatusCode != http.StatusOK {
			t.Errorf("/ready %d during the outage: %v", res.StatusCode, ready)
		}
		return ready["checks"].(map[string]any)["valkey"].(map[string]any)["state"].(string)
	}
	loop := func(n int) {
		for i := range n {
			c := []clients{ca, cb}[i%2]
			if _, err := c.Auth.GetCurrentUser(admin, &berthv1.GetCurrentUserRequest{}); err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
			desc := "round " + strconv.Itoa(i)
			if _, err := c.Workspace.UpdateWorkspace(admin, &berthv1.UpdateWorkspaceRequest{Id: id, Description: &desc}); err != nil {
				t.Fatalf("update %d: %v", i, err)
			}
			got, err := []clients{cb, ca}[i%2].Workspace.GetWorkspace(admin, &berthv1.GetWorkspaceRequest{Id: id})
			if err != nil {
				t.Fatalf("read %d: %v", i, err)
			}
			if got.GetWorkspace().GetDescription() != desc {
				t.Fatalf("read %d on the other instance: %q, want %q", i, got.GetWorkspace().GetDescription(), desc)
			}
		}
	}
	loop(20)
	p.redis.Stop()
	loop(40) // the instances notice on their own; nothing fails meanwhile
	for _, srv := range []*testServer{a, b} {
		eventually(t, "degraded in /ready", func() bool { return readyState(srv) == "degraded (using local fallback)" })
	}
	loop(20)
	p.redis.Start()
	for _, srv := range []*testServer{a, b} {
		eventually(t, "ok in /ready", func() bool { return readyState(srv) == "ok" })
		if v := metric(t, srv, `berth_valkey_up`); v != 1 {
			t.Errorf("berth_valkey_up = %v after the restart", v)
		}
	}
	before := metric(t, b, `berth_cache_hits_total{cache="users"}`)
	loop(20)
	if after := metric(t, b, `berth_cache_hits_total{cache="users"}`); after <= before {
		t.Errorf("no cache hits on B after Valkey came back (%v before the loop, %v after)", before, after)
	}
}

// TestStatsAcrossInstances: GetStats is cached, yet a workspace or task
// created through A is counted by B's very next GetStats, every time.
func TestStatsAcrossInstances(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	a, b := p.start(t), p.start(t)
	ca, cb := a.clients(protocols[0]), b.clients(protocols[0])
	ctx := as(t.Context(), register(t, ca, "counts@example.com").GetTokens().GetAccessToken())
	var ws string
	for i := range 15 {
		res, err := ca.Workspace.CreateWorkspace(ctx, &berthv1.CreateWorkspaceRequest{Name: "c" + strconv.Itoa(i), Path: p.mkdir(t, "c"+strconv.Itoa(i))})
		if err != nil {
			t.Fatal(err)
		}
		ws = res.GetWorkspace().GetId()
		got, err := cb.Stats.GetStats(ctx, &berthv1.GetStatsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if got.GetWorkspaces() != int64(i+1) {
			t.Fatalf("round %d: B counts %d workspaces right after A created its %dth", i, got.GetWorkspaces(), i+1)
		}
	}
	for i := range 10 {
		if _, err := ca.Task.CreateTask(ctx, &berthv1.CreateTaskRequest{WorkspaceId: ws, Type: berthv1.TaskType_TASK_TYPE_GIT_OPERATION,
			Git: &berthv1.GitOperation{Operation: berthv1.GitOperationType_GIT_OPERATION_TYPE_STATUS}}); err != nil {
			t.Fatal(err)
		}
		got, err := cb.Stats.GetStats(ctx, &berthv1.GetStatsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if got.GetTasks() != int64(i+1) {
			t.Fatalf("round %d: B counts %d tasks right after A created one more", i, got.GetTasks())
		}
	}
	// The tasks run on A, and each change of theirs retires the counts
	// (rightly): measure the hits once they have all ended.
	eventually(t, "the tasks ended", func() bool {
		res, err := cb.Task.ListTasks(ctx, &berthv1.ListTasksRequest{WorkspaceId: ws})
		if err != nil {
			t.Fatal(err)
		}
		for _, task := range res.GetTasks() {
			switch task.GetStatus() {
			case berthv1.TaskStatus_TASK_STATUS_QUEUED, berthv1.TaskStatus_TASK_STATUS_RUNNING:
				return false
			}
		}
		return len(res.GetTasks()) == 10
	})
	before := metric(t, b, `berth_cache_hits_total{cache="stats"}`)
	for range 5 {
		if _, err := cb.Stats.GetStats(ctx, &berthv1.GetStatsRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	if after := metric(t, b, `berth_cache_hits_total{cache="stats"}`); after < before+3 {
		t.Errorf("repeated GetStats on B: %v hits before, %v after", before, after)
	}
}
