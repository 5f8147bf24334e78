package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/coder/websocket"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/proto"

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

// TestStreamQuota: one user opening 200 streams at once, SSE and
// WebSocket together, gets exactly the cap and 429s with Retry-After for
// the rest, while /health answers throughout; the Connect server streams
// count on the same quota; another user is not affected; slots come back
// when streams close; a WebSocket subscription past the cap gets an error
// frame and the connection stays open.
func TestStreamQuota(t *testing.T) {
	t.Parallel()
	const limit = 8
	e := newQuotaEnv(t, "--max-streams-per-user", fmt.Sprint(limit))
	_, member := e.member(t, "flood@example.com", e.ws)

	probe := probeHealth(e.srv.URL)
	start := time.Now()
	first := e.flood(t, member, 200)
	floodTook := time.Since(start)
	p50, p99, worst, calls, fails := probe.end()
	t.Logf("200 stream opens in %v; /health during the flood: %d calls, p50 %v, p99 %v, max %v", floodTook, calls, p50, p99, worst)
	for _, err := range fails {
		t.Errorf("/health during the flood: %v", err)
	}
	if calls == 0 {
		t.Error("/health was never called during the flood")
	}
	if got := tally(t, first, fmt.Sprintf("max-streams-per-user (%d)", limit)); got != limit {
		t.Fatalf("%d streams opened, want the cap, %d", got, limit)
	}

	// The Connect server streams are on the same count.
	ctx := as(t.Context(), member)
	s, err := e.c.Workspace.WatchWorkspace(ctx, &berthv1.WatchWorkspaceRequest{WorkspaceId: e.ws})
	if err == nil {
		_, err = s.Receive()
		_ = s.Close()
	}
	details := wantCode(t, err, connect.CodeResourceExhausted, "RATE_LIMIT_EXCEEDED")
	if !slices.ContainsFunc(details, func(d proto.Message) bool { _, ok := d.(*errdetails.RetryInfo); return ok }) {
		t.Errorf("the refused server stream carries no RetryInfo: %v", details)
	}

	// Another user has their own count.
	_, other := e.member(t, "other@example.com", e.ws)
	a, err := e.openStream(t.Context(), other, e.ws, false)
	if err != nil || a.stream == nil {
		t.Fatalf("another user's stream: %v %d %s", err, a.status, a.body)
	}
	a.stream.Close()

	// Every slot comes back when its stream closes, on every transport:
	// once the server has seen them go, the cap is open again.
	closeAttempts(first)
	var again []attempt
	eventually(t, "the closed streams' slots to come back", func() bool {
		closeAttempts(again)
		again = e.flood(t, member, limit)
		for _, a := range again {
			if a.stream == nil {
				return false
			}
		}
		return true
	})
	closeAttempts(again)

	// A WebSocket holds one slot for itself and its first subscription,
	// and one more for each subscription after it.
	var c *websocket.Conn
	eventually(t, "the slots to come back again", func() bool {
		a, err := e.openStream(t.Context(), member, e.ws, true)
		if err != nil || a.stream == nil {
			return false
		}
		c = a.stream.(wsOpened).c
		return true
	})
	t.Cleanup(func() { _ = c.CloseNow() })
	var channels []string
	memberUser := memberID(t, e, member)
	for i := range limit + 1 {
		ws := e.workspace(t, fmt.Sprintf("sub-%d", i))
		if _, err := e.c.Workspace.AddMember(as(t.Context(), e.admin), &berthv1.AddMemberRequest{
			WorkspaceId: ws, UserId: memberUser, Role: berthv1.WorkspaceRole_WORKSPACE_ROLE_VIEWER,
		}); err != nil {
			t.Fatal(err)
		}
		channels = append(channels, "workspace:"+ws)
	}
	for i, ch := range channels[:limit] {
		wsSend(t, c, wsMessage{Type: "subscribe", ID: fmt.Sprint(i), Channel: ch})
		waitFrame(t, c, func(m wsMessage) bool { return m.Type == "subscribed" && m.ID == fmt.Sprint(i) })
	}
	wsSend(t, c, wsMessage{Type: "subscribe", ID: "over", Channel: channels[limit]})
	m := waitFrame(t, c, func(m wsMessage) bool { return m.ID == "over" })
	wantWSError(t, m, "resource_exhausted", "RATE_LIMIT_EXCEEDED")
	var body wsError
	_ = json.Unmarshal(m.Data, &body)
	if !strings.Contains(body.Message, "max-streams-per-user") {
		t.Errorf("error frame %q does not name the quota", body.Message)
	}
	// The connection is still open, and an unsubscribe frees a slot.
	wsSend(t, c, wsMessage{Type: "ping", ID: "p"})
	waitFrame(t, c, func(m wsMessage) bool { return m.Type == "pong" })
	wsSend(t, c, wsMessage{Type: "unsubscribe", ID: "u", Channel: channels[0]})
	waitFrame(t, c, func(m wsMessage) bool { return m.Type == "unsubscribed" })
	wsSend(t, c, wsMessage{Type: "subscribe", ID: "now", Channel: channels[limit]})
	waitFrame(t, c, func(m wsMessage) bool { return m.Type == "subscribed" && m.ID == "now" })
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

// TestStreamOpensSpendRequestBudget: opening an SSE stream or a WebSocket
// spends the principal's request budget, as an RPC does.
func TestStreamOpensSpendRequestBudget(t *testing.T) {
	t.Parallel()
	e := newQuotaEnv(t, "--rate-principal", "0.01:6", "--max-streams-per-user", "100")
	_, member := e.member(t, "budget@example.com", e.ws) // (the admin's calls spend the admin's budget)
	for i := range 6 {
		a, err := e.openStream(t.Context(), member, e.ws, i%2 == 1)
		if err != nil || a.stream == nil {
			t.Fatalf("stream %d within the budget: %v %d %s", i, err, a.status, a.body)
		}
		a.stream.Close()
	}
	for _, socket := range []bool{false, true} {
		a, err := e.openStream(t.Context(), member, e.ws, socket)
		if err != nil {
			t.Fatal(err)
		}
		if a.status != http.StatusTooManyRequests || a.retryAfter == "" || !strings.Contains(a.body, "too many requests") {
			t.Fatalf("stream past the budget (socket %v): %d %q %q", socket, a.status, a.retryAfter, a.body)
		}
	}
}

// TestRunningPerUser: while one member holds their cap of hung tasks,
// their next task waits, even with higher priority, and another user's
// task starts in the free slot.
func TestRunningPerUser(t *testing.T) {
	t.Parallel()
	e := newQuotaEnv(t, "--max-running-tasks", "3", "--max-running-per-workspace", "1", "--max-running-per-user", "2")
	ws := []string{e.ws, e.workspace(t, "two"), e.workspace(t, "three"), e.workspace(t, "four")}
	_, busy := e.member(t, "busy@example.com", ws[0], ws[1], ws[2])
	_, patient := e.member(t, "patient@example.com", ws[3])

	var hung []string
	for i := range 2 {
		task, err := e.task(t, busy, ws[i], "wait [hang]", berthv1.TaskPriority_TASK_PRIORITY_HIGH)
		if err != nil {
			t.Fatal(err)
		}
		hung = append(hung, task.GetId())
	}
	for _, id := range hung {
		eventually(t, "the hung tasks to run", func() bool {
			return e.status(t, id) == berthv1.TaskStatus_TASK_STATUS_RUNNING
		})
	}
	third, err := e.task(t, busy, ws[2], "wait [hang]", berthv1.TaskPriority_TASK_PRIORITY_HIGH)
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := e.task(t, patient, ws[3], "hello", berthv1.TaskPriority_TASK_PRIORITY_LOW)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the other user's task to run and end", func() bool {
		return e.status(t, theirs.GetId()) == berthv1.TaskStatus_TASK_STATUS_SUCCEEDED
	})
	if s := e.status(t, third.GetId()); s != berthv1.TaskStatus_TASK_STATUS_QUEUED {
		t.Fatalf("the busy member's third task is %v while two of theirs run, want QUEUED", s)
	}
	// One of the hung tasks is cancelled: the third one starts.
	if _, err := e.c.Task.CancelTask(as(t.Context(), busy), &berthv1.CancelTaskRequest{Id: hung[0]}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the third task to start once a slot of its user is free", func() bool {
		return e.status(t, third.GetId()) == berthv1.TaskStatus_TASK_STATUS_RUNNING
	})
	for _, id := range []string{hung[1], third.GetId()} {
		if _, err := e.c.Task.CancelTask(as(t.Context(), busy), &berthv1.CancelTaskRequest{Id: id}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestQueuedAndWorkspaceQuotas: past the queued-task quota CreateTask is
// ResourceExhausted naming it; 20 creates at once never pass it; the
// workspace quota refuses a member and not an admin.
func TestQueuedAndWorkspaceQuotas(t *testing.T) {
	t.Parallel()
	e := newQuotaEnv(t, "--max-running-tasks", "1", "--max-queued-per-user", "5", "--max-workspaces-per-user", "2")
	_, member := e.member(t, "queue@example.com", e.ws)
	// The one slot is taken by a hung task of the admin's.
	hang, err := e.task(t, e.admin, e.ws, "wait [hang]", berthv1.TaskPriority_TASK_PRIORITY_HIGH)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = e.c.Task.CancelTask(as(context.WithoutCancel(t.Context()), e.admin), &berthv1.CancelTaskRequest{Id: hang.GetId()})
	})
	eventually(t, "the hung task to run", func() bool {
		return e.status(t, hang.GetId()) == berthv1.TaskStatus_TASK_STATUS_RUNNING
	})
	var wg sync.WaitGroup
	errs := make([]error, 20)
	for i := range errs {
		wg.Go(func() { _, errs[i] = e.task(t, member, e.ws, "queued", berthv1.TaskPriority_TASK_PRIORITY_LOW) })
	}
	wg.Wait()
	created := 0
	for _, err := range errs {
		if err == nil {
			created++
			continue
		}
		wantCode(t, err, connect.CodeResourceExhausted, "RATE_LIMIT_EXCEEDED")
		if !strings.Contains(err.Error(), "max-queued-per-user (5)") {
			t.Errorf("refusal %q does not name the quota", err)
		}
	}
	if created != 5 {
		t.Fatalf("%d of 20 tasks queued at once, want the quota, 5", created)
	}

	// Workspaces: a member is held to the quota, the admin is not.
	for i := range 3 {
		if _, err := e.c.Workspace.CreateWorkspace(as(t.Context(), e.admin), &berthv1.CreateWorkspaceRequest{Name: fmt.Sprint("admin-", i), Path: e.srv.mkdir(t, fmt.Sprint("admin-", i))}); err != nil {
			t.Fatalf("admin's workspace %d: %v", i, err)
		}
	}
	for i := range 3 {
		err := e.memberWorkspace(t, member, fmt.Sprint("mine-", i))
		if i < 2 {
			if err != nil {
				t.Fatalf("member's workspace %d: %v", i, err)
			}
			continue
		}
		wantCode(t, err, connect.CodeResourceExhausted, "RATE_LIMIT_EXCEEDED")
		if !strings.Contains(err.Error(), "max-workspaces-per-user (2)") {
			t.Errorf("refusal %q does not name the quota", err)
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

// TestTaskLogCap: a task that prints far more than the cap stores at most
// the cap, then one line saying the log was truncated; the task still
// succeeds and its result notes the truncation.
func TestTaskLogCap(t *testing.T) {
	t.Parallel()
	const limit = 4096
	e := newQuotaEnv(t, "--max-task-log-bytes", fmt.Sprint(limit))
	task, err := e.task(t, e.admin, e.ws, "flood [lines:3000]", berthv1.TaskPriority_TASK_PRIORITY_MEDIUM)
	if err != nil {
		t.Fatal(err)
	}
	ctx := as(t.Context(), e.admin)
	var got *berthv1.Task
	eventually(t, "the task to end", func() bool {
		res, err := e.c.Task.GetTask(ctx, &berthv1.GetTaskRequest{Id: task.GetId()})
		if err != nil {
			t.Fatal(err)
		}
		got = res.GetTask()
		return got.GetCompletedAt() != nil
	})
	if got.GetStatus() != berthv1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("task %v (%v), want it to go on and succeed", got.GetStatus(), got.GetError())
	}
	if v, ok := got.GetResult().GetDetails().GetFields()["log_truncated_at_bytes"]; !ok || v.GetNumberValue() != limit {
		t.Errorf("result details %v do not note the truncation at %d bytes", got.GetResult().GetDetails(), limit)
	}
	logs, err := e.c.Task.GetTaskLogs(ctx, &berthv1.GetTaskLogsRequest{TaskId: task.GetId(), Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	lines := logs.GetEntries()
	if len(lines) == 0 || len(lines) > 900 {
		t.Fatalf("%d lines stored", len(lines))
	}
	total := 0
	for _, l := range lines[:len(lines)-1] {
		total += len(l.GetMessage())
	}
	last := lines[len(lines)-1]
	t.Logf("%d lines, %d message bytes before the truncation line: %q", len(lines), total, last.GetMessage())
	if total > limit {
		t.Errorf("%d message bytes stored before the truncation line, over the cap of %d", total, limit)
	}
	if !strings.Contains(last.GetMessage(), "log truncated") || !strings.Contains(last.GetMessage(), fmt.Sprint(limit)) {
		t.Errorf("last line %q is not the truncation line", last.GetMessage())
	}
	if logs.GetHasMore() {
		t.Error("more lines after the truncation line")
	}
}

// TestConnectionCap: with --max-connections 20, streams may hold three
// quarters of the connections (15) and no more, so /health still answers
// while they do; connections past the cap are answered 503 with
// Retry-After at once; closing connections makes room again.
func TestConnectionCap(t *testing.T) {
	t.Parallel()
	e := newQuotaEnv(t, "--max-connections", "20")
	var streams []attempt
	t.Cleanup(func() { closeAttempts(streams) })
	for i := range 15 {
		a, err := e.openStream(t.Context(), e.admin, e.ws, i%2 == 1)
		if err != nil || a.stream == nil {
			t.Fatalf("stream %d of the 15 allowed: %v %d %s", i, err, a.status, a.body)
		}
		streams = append(streams, a)
	}
	a, err := e.openStream(t.Context(), e.admin, e.ws, false)
	if err != nil {
		t.Fatal(err)
	}
	if a.status != http.StatusTooManyRequests || a.retryAfter == "" || !strings.Contains(a.body, "the server holds its most streams (15)") {
		t.Fatalf("the 16th stream: %d %q %q, want 429 naming the server's stream cap", a.status, a.retryAfter, a.body)
	}
	health := func() (int, string) {
		client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		res, err := client.Get(e.srv.URL + "/health")
		if err != nil {
			return 0, err.Error()
		}
		defer res.Body.Close()
		_, _ = io.Copy(io.Discard, res.Body)
		return res.StatusCode, res.Header.Get("Retry-After")
	}
	if status, _ := health(); status != http.StatusOK {
		t.Fatalf("/health with the streams at their cap: %d", status)
	}
	// Idle connections take the rest; the next one is refused at once.
	var idle []net.Conn
	t.Cleanup(func() {
		for _, c := range idle {
			_ = c.Close()
		}
	})
	refused := false
	for range 10 {
		c, err := net.Dial("tcp", strings.TrimPrefix(e.srv.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
		if status, retry := health(); status == http.StatusServiceUnavailable {
			if retry == "" {
				t.Error("503 without Retry-After")
			}
			refused = true
			break
		}
	}
	if !refused {
		t.Fatal("no connection was refused with 20 and more held open")
	}
	for _, c := range idle {
		_ = c.Close()
	}
	idle = nil
	eventually(t, "/health to answer once connections closed", func() bool {
		status, _ := health()
		return status == http.StatusOK
	})
}

// TestStreamQuotaShared: with Valkey, one user's streams count on one quota
// across instances: streams open on A leave only the rest of the cap on B,
// and a stream closed on A makes room on B.
func TestStreamQuotaShared(t *testing.T) {
	t.Parallel()
	p := newPair(t, "--max-streams-per-user", "4")
	a, b := p.start(t), p.start(t)
	ca := a.clients(protocols[0])
	token := register(t, ca, "shared-streams@example.com").GetTokens().GetAccessToken()
	res, err := ca.Workspace.CreateWorkspace(as(t.Context(), token), &berthv1.CreateWorkspaceRequest{Name: "shared", Path: p.mkdir(t, "shared-streams")})
	if err != nil {
		t.Fatal(err)
	}
	ws := res.GetWorkspace().GetId()
	ea, eb := &quotaEnv{srv: a, c: ca, ws: ws}, &quotaEnv{srv: b, c: b.clients(protocols[0]), ws: ws}
	var open []attempt
	t.Cleanup(func() { closeAttempts(open) })
	for i := range 3 {
		at, err := ea.openStream(t.Context(), token, ws, i == 1)
		if err != nil || at.stream == nil {
			t.Fatalf("stream %d on A: %v %d %s", i, err, at.status, at.body)
		}
		open = append(open, at)
	}
	at, err := eb.openStream(t.Context(), token, ws, true)
	if err != nil || at.stream == nil {
		t.Fatalf("the 4th stream, on B: %v %d %s", err, at.status, at.body)
	}
	open = append(open, at)
	for _, socket := range []bool{false, true} {
		at, err := eb.openStream(t.Context(), token, ws, socket)
		if err != nil {
			t.Fatal(err)
		}
		if at.status != http.StatusTooManyRequests || !strings.Contains(at.body, "max-streams-per-user (4)") {
			t.Fatalf("the 5th stream, on B (socket %v): %d %s", socket, at.status, at.body)
		}
	}
	open[0].stream.Close()
	eventually(t, "the slot closed on A to free up on B", func() bool {
		at, err := eb.openStream(t.Context(), token, ws, false)
		if err != nil || at.stream == nil {
			return false
		}
		open = append(open, at)
		return true
	})
}

// TestConnectStreamSlots: the Connect server streams hold a slot while
// they run and give it back when the client ends them, over Connect and
// gRPC.
func TestConnectStreamSlots(t *testing.T) {
	t.Parallel()
	e := newQuotaEnv(t, "--max-streams-per-user", "2")
	for _, p := range []protocol{protocols[0], protocols[3]} {
		t.Run(p.name, func(t *testing.T) {
			c := e.srv.clients(p)
			watch := func() (func(), error) {
				ctx, cancel := context.WithCancel(as(t.Context(), e.admin))
				s, err := c.Workspace.WatchWorkspace(ctx, &berthv1.WatchWorkspaceRequest{WorkspaceId: e.ws})
				if err == nil {
					_, err = s.Receive() // the workspace's state comes first
				}
				if err != nil {
					cancel()
					return nil, err
				}
				return func() { cancel(); _ = s.Close() }, nil
			}
			first, err := watch()
			if err != nil {
				t.Fatal(err)
			}
			second, err := watch()
			if err != nil {
				t.Fatal(err)
			}
			_, err = watch()
			wantCode(t, err, connect.CodeResourceExhausted, "RATE_LIMIT_EXCEEDED")
			first()
			eventually(t, "the ended stream's slot to come back", func() bool {
				again, err := watch()
				if err != nil {
					return false
				}
				again()
				return true
			})
			second()
			eventually(t, "every slot to come back", func() bool {
				a, err := watch()
				if err != nil {
					return false
				}
				defer a()
				b, err := watch()
				if err != nil {
					return false
				}
				b()
				return true
			})
		})
	}
}
