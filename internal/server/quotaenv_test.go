package server_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/coder/websocket"

	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
	"github.com/berthhq/berth/internal/testsvc"
)

// quotaEnv is a server with quotas, its admin (the first account) and a
// workspace of the admin's.
type quotaEnv struct {
	srv   *testServer
	c     clients
	admin string // the admin's access token
	ws    string
}

func newQuotaEnv(t *testing.T, flags ...string) *quotaEnv {
	t.Helper()
	claude := testsvc.FakeClaude(t)
	srv := startServer(t, append([]string{"--claude-path", claude, "--anthropic-api-key", testAPIKey}, flags...)...)
	e := &quotaEnv{srv: srv, c: srv.clients(protocols[0])}
	e.admin = register(t, e.c, "root@example.com").GetTokens().GetAccessToken()
	e.ws = e.workspace(t, "main")
	return e
}

// workspace creates a workspace of the admin's. The admin names its
// directory, which admins may do whether members may or not.
func (e *quotaEnv) workspace(t testing.TB, name string) string {
	t.Helper()
	res, err := e.c.Workspace.CreateWorkspace(as(t.Context(), e.admin), &berthv1.CreateWorkspaceRequest{Name: name, Path: e.srv.mkdir(t, name)})
	if err != nil {
		t.Fatal(err)
	}
	return res.GetWorkspace().GetId()
}

// member registers an account and makes it an editor of the workspaces.
func (e *quotaEnv) member(t *testing.T, email string, workspaces ...string) (id, token string) {
	t.Helper()
	reg := register(t, e.c, email)
	for _, ws := range workspaces {
		if _, err := e.c.Workspace.AddMember(as(t.Context(), e.admin), &berthv1.AddMemberRequest{
			WorkspaceId: ws, UserId: reg.GetUser().GetId(), Role: berthv1.WorkspaceRole_WORKSPACE_ROLE_EDITOR,
		}); err != nil {
			t.Fatal(err)
		}
	}
	return reg.GetUser().GetId(), reg.GetTokens().GetAccessToken()
}

// task creates a claude_chat task as token.
func (e *quotaEnv) task(t *testing.T, token, ws, prompt string, priority berthv1.TaskPriority) (*berthv1.Task, error) {
	t.Helper()
	res, err := e.c.Task.CreateTask(as(t.Context(), token), &berthv1.CreateTaskRequest{
		WorkspaceId: ws, Type: berthv1.TaskType_TASK_TYPE_CLAUDE_CHAT, Prompt: prompt, Priority: priority,
	})
	return res.GetTask(), err
}

// status reads a task's status.
func (e *quotaEnv) status(t *testing.T, id string) berthv1.TaskStatus {
	t.Helper()
	res, err := e.c.Task.GetTask(as(t.Context(), e.admin), &berthv1.GetTaskRequest{Id: id})
	if err != nil {
		t.Fatal(err)
	}
	return res.GetTask().GetStatus()
}

// opened is a stream that the server accepted, to close later.
type opened interface{ Close() }

type sseOpened struct {
	cancel context.CancelFunc
	body   io.Closer
}

func (s sseOpened) Close() { s.cancel(); _ = s.body.Close() }

type wsOpened struct{ c *websocket.Conn }

func (w wsOpened) Close() { _ = w.c.CloseNow() }

// attempt is the outcome of one try to open a stream.
type attempt struct {
	status     int // the HTTP status of the answer (101 for an open WebSocket)
	retryAfter string
	body       string
	stream     opened
}

// openStream tries to open one stream as token: the SSE events of ws, or a
// WebSocket when socket is true.
func (e *quotaEnv) openStream(ctx context.Context, token, ws string, socket bool) (attempt, error) {
	if socket {
		url := "ws" + strings.TrimPrefix(e.srv.URL, "http") + "/ws"
		c, res, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: bearer(token), Subprotocols: []string{"berth.v1.json"}})
		if err == nil {
			return attempt{status: http.StatusSwitchingProtocols, stream: wsOpened{c}}, nil
		}
		if res == nil {
			return attempt{}, err
		}
		b, _ := io.ReadAll(res.Body)
		return attempt{status: res.StatusCode, retryAfter: res.Header.Get("Retry-After"), body: string(b)}, nil
	}
	ctx, cancel := context.WithCancel(ctx)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.srv.URL+"/api/v1/workspaces/"+ws+"/events", nil)
	req.Header = bearer(token)
	res, err := sseClient.Do(req)
	if err != nil {
		cancel()
		return attempt{}, err
	}
	if res.StatusCode == http.StatusOK {
		return attempt{status: res.StatusCode, stream: sseOpened{cancel, res.Body}}, nil
	}
	b, _ := io.ReadAll(res.Body)
	_ = res.Body.Close()
	cancel()
	return attempt{status: res.StatusCode, retryAfter: res.Header.Get("Retry-After"), body: string(b)}, nil
}

// flood opens n streams at once as token, SSE and WebSocket alternately,
// and returns the attempts.
func (e *quotaEnv) flood(t *testing.T, token string, n int) []attempt {
	t.Helper()
	out := make([]attempt, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			a, err := e.openStream(t.Context(), token, e.ws, i%2 == 1)
			if err != nil {
				t.Errorf("attempt %d: %v", i, err)
			}
			out[i] = a
		})
	}
	wg.Wait()
	t.Cleanup(func() { closeAttempts(out) })
	return out
}

func closeAttempts(as []attempt) {
	for _, a := range as {
		if a.stream != nil {
			a.stream.Close()
		}
	}
}

// tally counts the streams opened and checks every refusal is a 429 with
// Retry-After and a message naming the quota.
func tally(t *testing.T, as []attempt, quota string) (open int) {
	t.Helper()
	for _, a := range as {
		switch {
		case a.stream != nil:
			open++
		case a.status == http.StatusTooManyRequests:
			if a.retryAfter == "" || !strings.Contains(a.body, "resource_exhausted") || !strings.Contains(a.body, quota) {
				t.Errorf("refusal without Retry-After or naming no %q: %q %q", quota, a.retryAfter, a.body)
			}
		default:
			t.Errorf("attempt answered %d: %s", a.status, a.body)
		}
	}
	return open
}

// healthProbe calls /health every few milliseconds until stop and records
// how long each call took; any answer but 200 is recorded as an error.
type healthProbe struct {
	mu    sync.Mutex
	took  []time.Duration
	fails []error
	stop  chan struct{}
	done  chan struct{}
}

func probeHealth(url string) *healthProbe {
	p := &healthProbe{stop: make(chan struct{}), done: make(chan struct{})}
	client := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	go func() {
		defer close(p.done)
		for {
			select {
			case <-p.stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			start := time.Now()
			res, err := client.Get(url + "/health")
			took := time.Since(start)
			if err == nil {
				_, _ = io.Copy(io.Discard, res.Body)
				_ = res.Body.Close()
				if res.StatusCode != http.StatusOK {
					err = fmt.Errorf("/health answered %d", res.StatusCode)
				}
			}
			p.mu.Lock()
			p.took = append(p.took, took)
			if err != nil {
				p.fails = append(p.fails, err)
			}
			p.mu.Unlock()
		}
	}()
	return p
}

// end stops the probe and returns its calls' p50, p99 and max, and the
// number of calls.
func (p *healthProbe) end() (p50, p99, worst time.Duration, n int, fails []error) {
	close(p.stop)
	<-p.done
	took := slices.Clone(p.took)
	slices.Sort(took)
	if len(took) == 0 {
		return 0, 0, 0, 0, p.fails
	}
	at := func(q float64) time.Duration { return took[min(len(took)-1, int(q*float64(len(took))))] }
	return at(0.50), at(0.99), took[len(took)-1], len(took), p.fails
}

// memberID reads the id of the account behind token.
func memberID(t *testing.T, e *quotaEnv, token string) string {
	t.Helper()
	res, err := e.c.Auth.GetCurrentUser(as(t.Context(), token), &berthv1.GetCurrentUserRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return res.GetUser().GetId()
}

// waitFrame reads frames until one matches.
func waitFrame(t *testing.T, c *websocket.Conn, match func(wsMessage) bool) wsMessage {
	t.Helper()
	for {
		m := wsRead(t, c)
		if match(m) {
			return m
		}
	}
}

// memberWorkspace creates a workspace as a member: without a path where
// the server makes members' directories itself, else in a directory of the
// test's.
func (e *quotaEnv) memberWorkspace(t *testing.T, token, name string) error {
	t.Helper()
	ctx := as(t.Context(), token)
	_, err := e.c.Workspace.CreateWorkspace(ctx, &berthv1.CreateWorkspaceRequest{Name: name})
	if connect.CodeOf(err) == connect.CodeInvalidArgument && strings.Contains(err.Error(), "path") {
		_, err = e.c.Workspace.CreateWorkspace(ctx, &berthv1.CreateWorkspaceRequest{Name: name, Path: e.srv.mkdir(t, name)})
	}
	return err
}
