package server_test

import (
	"bytes"
	"context"
	"net/http"
	"strconv"
	"testing"

	"connectrpc.com/connect/v2"

	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
)

// call sends a Connect JSON POST from the client address from (through a
// trusted proxy: the server is started with --trusted-proxies 127.0.0.1).
func call(t *testing.T, srv *testServer, procedure, token, from, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+procedure, bytes.NewReader([]byte(body)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if from != "" {
		req.Header.Set("X-Forwarded-For", from)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res
}

// wantLimited checks a response refused by a rate limit: 429 with the
// headers, Retry-After included.
func wantLimited(t *testing.T, what string, res *http.Response, limit int) {
	t.Helper()
	if res.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("%s: status %d, want 429", what, res.StatusCode)
	}
	if got := res.Header.Get("RateLimit-Limit"); got != strconv.Itoa(limit) {
		t.Errorf("%s: RateLimit-Limit %q, want %d", what, got, limit)
	}
	if res.Header.Get("RateLimit-Remaining") != "0" || res.Header.Get("RateLimit-Reset") == "" {
		t.Errorf("%s: RateLimit-Remaining %q, RateLimit-Reset %q", what, res.Header.Get("RateLimit-Remaining"), res.Header.Get("RateLimit-Reset"))
	}
	if n, err := strconv.Atoi(res.Header.Get("Retry-After")); err != nil || n < 1 {
		t.Errorf("%s: Retry-After %q", what, res.Header.Get("Retry-After"))
	}
}

// TestRateLimits: each class on one instance, with the in-process budgets.
func TestRateLimits(t *testing.T) {
	t.Parallel()
	srv := startServer(t, "--trusted-proxies", "127.0.0.1",
		"--rate-anonymous", "0.01:3", "--rate-auth-failures", "0.01:2", "--rate-principal", "0.01:4", "--rate-task-create", "0.01:1")
	const providers = "/berth.v1.AuthService/ListAuthProviders"

	// Anonymous requests, per address.
	for i := range 3 {
		res := call(t, srv, providers, "", "198.51.100.1", "{}")
		if res.StatusCode != http.StatusOK || res.Header.Get("RateLimit-Remaining") != strconv.Itoa(2-i) {
			t.Fatalf("anonymous call %d: %d, remaining %q", i, res.StatusCode, res.Header.Get("RateLimit-Remaining"))
		}
	}
	wantLimited(t, "4th anonymous call", call(t, srv, providers, "", "198.51.100.1", "{}"), 3)
	if res := call(t, srv, providers, "", "198.51.100.2", "{}"); res.StatusCode != http.StatusOK {
		t.Errorf("another address: %d", res.StatusCode)
	}
	// The address in X-Forwarded-For counts only from a trusted proxy: the
	// SSE route without credentials is limited the same way.
	for range 3 {
		call(t, srv, providers, "", "198.51.100.3", "{}")
	}
	res, err := http.DefaultClient.Do(func() *http.Request {
		r, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/v1/workspaces/x/events", nil)
		r.Header.Set("X-Forwarded-For", "198.51.100.3")
		return r
	}())
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	wantLimited(t, "SSE without credentials", res, 3)

	// Failed sign-ins: per account (across addresses) and per address.
	c := srv.clients(protocols[0])
	register(t, c, "limited@example.com")
	bad := `{"email":"limited@example.com","password":"wrong wrong wrong"}`
	for i, from := range []string{"203.0.113.1", "203.0.113.2"} {
		if res := call(t, srv, "/berth.v1.AuthService/Login", "", from, bad); res.StatusCode != http.StatusUnauthorized {
			t.Fatalf("bad login %d: %d", i, res.StatusCode)
		}
	}
	res = call(t, srv, "/berth.v1.AuthService/Login", "", "203.0.113.3", `{"email":"limited@example.com","password":"correct horse battery"}`)
	if res.StatusCode != http.StatusTooManyRequests {
		t.Errorf("login to an account out of failures: %d, want 429 even with the right password", res.StatusCode)
	}
	for range 2 {
		call(t, srv, "/berth.v1.AuthService/GetCurrentUser", "not-a-token", "203.0.113.9", "{}")
	}
	if res := call(t, srv, "/berth.v1.AuthService/GetCurrentUser", "not-a-token", "203.0.113.9", "{}"); res.StatusCode != http.StatusTooManyRequests {
		t.Errorf("an address out of failures: %d, want 429", res.StatusCode)
	}

	// Authenticated requests, per principal; task creation, per user.
	token := register(t, c, "busy@example.com").GetTokens().GetAccessToken()
	other := register(t, c, "calm@example.com").GetTokens().GetAccessToken()
	for i := range 4 {
		if res := call(t, srv, "/berth.v1.AuthService/GetCurrentUser", token, "192.0.2.1", "{}"); res.StatusCode != http.StatusOK {
			t.Fatalf("call %d: %d", i, res.StatusCode)
		}
	}
	wantLimited(t, "5th call of one principal", call(t, srv, "/berth.v1.AuthService/GetCurrentUser", token, "192.0.2.1", "{}"), 4)
	if res := call(t, srv, "/berth.v1.AuthService/GetCurrentUser", other, "192.0.2.1", "{}"); res.StatusCode != http.StatusOK {
		t.Errorf("another principal: %d", res.StatusCode)
	}
	ctx := as(context.Background(), other)
	w, err := c.Workspace.CreateWorkspace(ctx, &berthv1.CreateWorkspaceRequest{Name: "r"})
	if err != nil {
		t.Fatal(err)
	}
	req := &berthv1.CreateTaskRequest{WorkspaceId: w.GetWorkspace().GetId(), Type: berthv1.TaskType_TASK_TYPE_GIT_OPERATION, Git: &berthv1.GitOperation{Operation: berthv1.GitOperationType_GIT_OPERATION_TYPE_STATUS}}
	if _, err := c.Task.CreateTask(ctx, req); err != nil {
		t.Fatal(err)
	}
	_, err = c.Task.CreateTask(ctx, req)
	wantCode(t, err, connect.CodeResourceExhausted, "RATE_LIMIT_EXCEEDED")
	if v := metric(t, srv, `berth_rate_limited_total{class="task_create"}`); v != 1 {
		t.Errorf("berth_rate_limited_total{class=task_create} = %v", v)
	}
}

// TestRateLimitsShared: with Valkey, two instances draw on one budget.
func TestRateLimitsShared(t *testing.T) {
	t.Parallel()
	p := newPair(t, "--rate-principal", "0.01:3")
	a, b := p.start(t), p.start(t)
	token := register(t, a.clients(protocols[0]), "shared@example.com").GetTokens().GetAccessToken()
	for i, srv := range []*testServer{a, b, a} {
		if res := call(t, srv, "/berth.v1.AuthService/GetCurrentUser", token, "", "{}"); res.StatusCode != http.StatusOK {
			t.Fatalf("call %d: %d", i, res.StatusCode)
		}
	}
	wantLimited(t, "4th call, on B", call(t, b, "/berth.v1.AuthService/GetCurrentUser", token, "", "{}"), 3)
}
