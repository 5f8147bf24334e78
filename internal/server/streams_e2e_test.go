package server_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect/v2"

	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
	"github.com/berthhq/berth/internal/testsvc"
)

// streamEnv is a server running the stand-in claude, an account and a
// workspace of it.
type streamEnv struct {
	srv   *testServer
	c     clients
	token string
	ctx   context.Context
	ws    string
}

func newStreamEnv(t testing.TB, flags ...string) *streamEnv {
	t.Helper()
	claude := testsvc.FakeClaude(t)
	srv := startServer(t, append([]string{"--claude-path", claude, "--anthropic-api-key", testAPIKey}, flags...)...)
	c := srv.clients(protocols[0])
	token := register(t, c, "streams@example.com").GetTokens().GetAccessToken()
	ctx := as(t.Context(), token)
	ws, err := c.Workspace.CreateWorkspace(ctx, &berthv1.CreateWorkspaceRequest{Name: "streams", Path: srv.mkdir(t, "streams")})
	if err != nil {
		t.Fatal(err)
	}
	return &streamEnv{srv: srv, c: c, token: token, ctx: ctx, ws: ws.GetWorkspace().GetId()}
}

func (e *streamEnv) task(t testing.TB, prompt string) string {
	t.Helper()
	res, err := e.c.Task.CreateTask(as(t.Context(), e.token), &berthv1.CreateTaskRequest{WorkspaceId: e.ws, Type: berthv1.TaskType_TASK_TYPE_CLAUDE_CHAT, Prompt: prompt})
	if err != nil {
		t.Fatal(err)
	}
	return res.GetTask().GetId()
}

// seqs checks that got is exactly 1…n in order and returns n.
func checkSeqs(t testing.TB, what string, got []int64, lastSeq int64) {
	t.Helper()
	if int64(len(got)) != lastSeq {
		t.Fatalf("%s: %d lines, want %d (end's last_seq)", what, len(got), lastSeq)
	}
	for i, s := range got {
		if s != int64(i+1) {
			t.Fatalf("%s: line %d has seq %d, want %d", what, i, s, i+1)
		}
	}
}

// TestStreamTaskLogsResume: over every RPC protocol, a client that drops
// the stream at random points and resumes from the last seq it has gets
// every line exactly once, in order, then the end.
func TestStreamTaskLogsResume(t *testing.T) {
	t.Parallel()
	e := newStreamEnv(t, "--max-running-tasks", "8", "--max-running-per-workspace", "8")
	for _, p := range []protocol{protocols[0], protocols[3], protocols[4]} {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			c := e.srv.clients(p)
			rpcCtx := as(t.Context(), e.token)
			id := e.task(t, "stream "+p.name+" [slow] [lines:25]")
			var got []int64
			var end *berthv1.TaskEnd
			sawStatus := false
			for round := 0; end == nil; round++ {
				if round > 200 {
					t.Fatal("no end after 200 reconnects")
				}
				ctx, cancel := context.WithCancel(rpcCtx)
				s, err := c.Task.StreamTaskLogs(ctx, &berthv1.StreamTaskLogsRequest{TaskId: id, FromSeq: int64(len(got)) + 1})
				if err != nil {
					t.Fatal(err)
				}
				take := 1 + rand.IntN(8)
				for n := 0; n < take; n++ {
					res, err := s.Receive()
					if err != nil {
						t.Fatalf("round %d: %v", round, err)
					}
					switch ev := res.GetEvent().(type) {
					case *berthv1.StreamTaskLogsResponse_Log:
						got = append(got, ev.Log.GetSeq())
					case *berthv1.StreamTaskLogsResponse_Status:
						sawStatus = true
					case *berthv1.StreamTaskLogsResponse_End:
						end = ev.End
						if _, err := s.Receive(); !errors.Is(err, io.EOF) {
							t.Errorf("after end: %v, want EOF", err)
						}
					}
					if end != nil {
						break
					}
				}
				cancel()
				_ = s.Close()
			}
			if !sawStatus {
				t.Error("no status event")
			}
			if end.GetStatus() != berthv1.TaskStatus_TASK_STATUS_SUCCEEDED {
				t.Errorf("end = %v", end)
			}
			checkSeqs(t, p.name, got, end.GetLastSeq())
			if stored := allLogs(t, c, rpcCtx, id); int64(len(stored)) != end.GetLastSeq() {
				t.Errorf("%d lines stored, end says %d", len(stored), end.GetLastSeq())
			}
		})
	}
}

// TestStreamTaskLogsShared: subscribers of one task over every protocol
// (Connect binary, Connect JSON, gzip, gRPC, gRPC-Web), following it live
// together, each get every line once, in order, and the same line for
// each seq: the line's message is one value for all of them, encoded
// once per codec (see event.Line.Shared), and no subscriber's bytes may
// leak into another's.
func TestStreamTaskLogsShared(t *testing.T) {
	t.Parallel()
	e := newStreamEnv(t)
	id := e.task(t, "shared [lines:120] [rate:40]")
	type result struct {
		lines map[int64]string
		seqs  []int64
		end   *berthv1.TaskEnd
		err   error
	}
	results := make([]result, len(protocols))
	var wg sync.WaitGroup
	for i, p := range protocols {
		wg.Go(func() {
			r := &results[i]
			r.lines = map[int64]string{}
			s, err := e.srv.clients(p).Task.StreamTaskLogs(as(t.Context(), e.token), &berthv1.StreamTaskLogsRequest{TaskId: id})
			if err != nil {
				r.err = err
				return
			}
			defer s.Close()
			for r.end == nil {
				res, err := s.Receive()
				if err != nil {
					r.err = fmt.Errorf("%s: %w", p.name, err)
					return
				}
				switch ev := res.GetEvent().(type) {
				case *berthv1.StreamTaskLogsResponse_Log:
					r.seqs = append(r.seqs, ev.Log.GetSeq())
					r.lines[ev.Log.GetSeq()] = ev.Log.GetMessage()
				case *berthv1.StreamTaskLogsResponse_End:
					r.end = ev.End
				}
			}
		})
	}
	wg.Wait()
	for i, p := range protocols {
		r := results[i]
		if r.err != nil {
			t.Fatal(r.err)
		}
		checkSeqs(t, p.name, r.seqs, r.end.GetLastSeq())
		for seq, msg := range r.lines {
			if want := results[0].lines[seq]; msg != want {
				t.Errorf("%s: line %d is %q, %s got %q", p.name, seq, msg, protocols[0].name, want)
			}
		}
	}
}

// TestSSETaskLogsResume: curl-style clients drop the SSE stream at random
// points and resume with Last-Event-ID or ?since=; the union is exactly
// 1…n, then the end. The headers and the retry hint are there.
func TestSSETaskLogsResume(t *testing.T) {
	t.Parallel()
	e := newStreamEnv(t)
	id := e.task(t, "sse [slow] [lines:25]")
	url := e.srv.URL + "/api/v1/tasks/" + id + "/logs/stream"

	// The raw stream starts with a retry hint and has the headers.
	raw, code := openSSE(t, e.ctx, url, bearer(e.token))
	if code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	for k, want := range map[string]string{"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"} {
		if got := raw.res.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	raw.close()
	req, _ := http.NewRequestWithContext(e.ctx, http.MethodGet, url, nil)
	req.Header = bearer(e.token)
	res, err := sseClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	first := make([]byte, 64)
	n, _ := io.ReadAtLeast(res.Body, first, len("retry: 2000\n"))
	_ = res.Body.Close()
	if !strings.HasPrefix(string(first[:n]), "retry: 2000\n") {
		t.Errorf("stream starts %q, want a retry hint", first[:n])
	}

	var got []int64
	var end *berthv1.TaskEnd
	for round := 0; end == nil; round++ {
		if round > 200 {
			t.Fatal("no end after 200 reconnects")
		}
		h := bearer(e.token)
		u := url
		if round%2 == 0 {
			u += "?since=" + strconv.Itoa(len(got))
		} else if len(got) > 0 {
			h.Set("Last-Event-ID", strconv.FormatInt(got[len(got)-1], 10))
		}
		s, code := openSSE(t, e.ctx, u, h)
		if code != http.StatusOK {
			t.Fatalf("status %d", code)
		}
		var seqs []int64
		seqs, end = readSSETask(t, s, 1+rand.IntN(8))
		got = append(got, seqs...)
		s.close()
	}
	if end.GetStatus() != berthv1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Errorf("end = %v", end)
	}
	checkSeqs(t, "sse", got, end.GetLastSeq())
}

// TestStreamsDoNotAffectTasks: every kind of stream is opened and then
// dropped mid-task; the task still runs to SUCCEEDED with its whole log.
func TestStreamsDoNotAffectTasks(t *testing.T) {
	t.Parallel()
	e := newStreamEnv(t)
	id := e.task(t, "independent [slow] [lines:10]")
	ctx, cancel := context.WithCancel(e.ctx)
	var streams []func()
	for _, p := range []protocol{protocols[0], protocols[3], protocols[4]} {
		c := e.srv.clients(p)
		s, err := c.Task.StreamTaskLogs(ctx, &berthv1.StreamTaskLogsRequest{TaskId: id})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Receive(); err != nil {
			t.Fatal(err)
		}
		w, err := c.Workspace.WatchWorkspace(ctx, &berthv1.WatchWorkspaceRequest{WorkspaceId: e.ws})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Receive(); err != nil {
			t.Fatal(err)
		}
		streams = append(streams, func() { _ = s.Close() }, func() { _ = w.Close() })
	}
	s, code := openSSE(t, ctx, e.srv.URL+"/api/v1/tasks/"+id+"/logs/stream", bearer(e.token))
	if code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	readSSETask(t, s, 1)
	wsEvents, code := openSSE(t, ctx, e.srv.URL+"/api/v1/workspaces/"+e.ws+"/events", bearer(e.token))
	if code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	if ev, err, _ := wsEvents.next(); err != nil || ev.Type != "workspace.status" {
		t.Fatalf("first workspace event %+v, %v", ev, err)
	}
	cancel()
	for _, closeStream := range streams {
		closeStream()
	}
	task := waitTask(t, e.c, e.ctx, id, nil)
	if task.GetStatus() != berthv1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("task %v", task.GetStatus())
	}
	if logs := allLogs(t, e.c, e.ctx, id); len(logs) < 10 {
		t.Errorf("%d lines stored", len(logs))
	}
}

// TestStreamAuth: SSE needs credentials or a ticket (which works once),
// and another user's task is not found, on SSE and over Connect.
func TestStreamAuth(t *testing.T) {
	t.Parallel()
	e := newStreamEnv(t)
	id := e.task(t, "private")
	waitTask(t, e.c, e.ctx, id, nil)
	url := e.srv.URL + "/api/v1/tasks/" + id + "/logs/stream"

	if _, code := openSSE(t, e.ctx, url, nil); code != http.StatusUnauthorized {
		t.Errorf("no credentials: %d, want 401", code)
	}
	if _, code := openSSE(t, e.ctx, url, bearer("not-a-token")); code != http.StatusUnauthorized {
		t.Errorf("bad token: %d, want 401", code)
	}
	if _, code := openSSE(t, e.ctx, e.srv.URL+"/api/v1/workspaces/"+e.ws+"/events", nil); code != http.StatusUnauthorized {
		t.Errorf("workspace events without credentials: %d, want 401", code)
	}

	ticket, err := e.c.Auth.CreateStreamTicket(e.ctx, &berthv1.CreateStreamTicketRequest{Target: "task:" + id})
	if err != nil {
		t.Fatal(err)
	}
	s, code := openSSE(t, e.ctx, url+"?ticket="+ticket.GetTicket(), nil)
	if code != http.StatusOK {
		t.Fatalf("ticket: %d", code)
	}
	seqs, end := readSSETask(t, s, 0)
	checkSeqs(t, "ticket", seqs, end.GetLastSeq())
	if _, code := openSSE(t, e.ctx, url+"?ticket="+ticket.GetTicket(), nil); code != http.StatusUnauthorized {
		t.Errorf("reused ticket: %d, want 401", code)
	}
	other, err := e.c.Auth.CreateStreamTicket(e.ctx, &berthv1.CreateStreamTicketRequest{Target: "workspace:" + e.ws})
	if err != nil {
		t.Fatal(err)
	}
	if _, code := openSSE(t, e.ctx, url+"?ticket="+other.GetTicket(), nil); code != http.StatusUnauthorized {
		t.Errorf("ticket for another target: %d, want 401", code)
	}

	mallory := register(t, e.c, "mallory@example.com").GetTokens().GetAccessToken()
	if _, code := openSSE(t, e.ctx, url, bearer(mallory)); code != http.StatusNotFound {
		t.Errorf("another user's task: %d, want 404", code)
	}
	if _, code := openSSE(t, e.ctx, e.srv.URL+"/api/v1/workspaces/"+e.ws+"/events", bearer(mallory)); code != http.StatusNotFound {
		t.Errorf("another user's workspace: %d, want 404", code)
	}
	s2, err := e.c.Task.StreamTaskLogs(as(t.Context(), mallory), &berthv1.StreamTaskLogsRequest{TaskId: id})
	if err == nil {
		_, err = s2.Receive()
		_ = s2.Close()
	}
	if connect.CodeOf(err) != connect.CodeNotFound {
		t.Errorf("another user's task over Connect: %v, want NotFound", err)
	}
	w2, err := e.c.Workspace.WatchWorkspace(as(t.Context(), mallory), &berthv1.WatchWorkspaceRequest{WorkspaceId: e.ws})
	if err == nil {
		_, err = w2.Receive()
		_ = w2.Close()
	}
	if connect.CodeOf(err) != connect.CodeNotFound {
		t.Errorf("another user's workspace over Connect: %v, want NotFound", err)
	}
}

// TestStreamsOutliveServerTimeouts: with read and write timeouts far
// shorter than the task, a Connect stream (HTTP/1.1 and gRPC) and an SSE
// stream each follow the task to its end without a reconnect.
func TestStreamsOutliveServerTimeouts(t *testing.T) {
	t.Parallel()
	// 3 s, not less: the set-up's own calls (Register hashes a password)
	// must fit in them on a loaded machine; the task runs far longer.
	e := newStreamEnv(t, "--read-timeout", "3s", "--write-timeout", "3s")
	id := e.task(t, "long [slow] [lines:40]")
	var wg sync.WaitGroup
	for _, p := range []protocol{protocols[0], protocols[3], protocols[4]} {
		wg.Go(func() {
			c := e.srv.clients(p)
			s, err := c.Task.StreamTaskLogs(as(t.Context(), e.token), &berthv1.StreamTaskLogsRequest{TaskId: id})
			if err != nil {
				t.Error(err)
				return
			}
			defer s.Close()
			var seqs []int64
			for {
				res, err := s.Receive()
				if err != nil {
					t.Errorf("%s: cut after %d lines: %v", p.name, len(seqs), err)
					return
				}
				if l := res.GetLog(); l != nil {
					seqs = append(seqs, l.GetSeq())
				}
				if end := res.GetEnd(); end != nil {
					checkSeqs(t, p.name, seqs, end.GetLastSeq())
					return
				}
			}
		})
	}
	s, code := openSSE(t, e.ctx, e.srv.URL+"/api/v1/tasks/"+id+"/logs/stream", bearer(e.token))
	if code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	start := time.Now()
	seqs, end := readSSETask(t, s, 0)
	checkSeqs(t, "sse", seqs, end.GetLastSeq())
	if time.Since(start) < 6*time.Second {
		t.Errorf("the task took %s: too short to test the timeouts", time.Since(start))
	}
	wg.Wait()
}

// TestShutdownEndsSSEStreams: a graceful shutdown ends open SSE streams at
// once and cleanly (EOF after whole events), instead of waiting out the
// shutdown grace for them.
func TestShutdownEndsSSEStreams(t *testing.T) {
	t.Parallel()
	claude := testsvc.FakeClaude(t)
	run := startServerUntil(t, "--claude-path", claude, "--anthropic-api-key", testAPIKey)
	e := &streamEnv{srv: run.srv, c: run.srv.clients(protocols[0])}
	e.token = register(t, e.c, "shutdown@example.com").GetTokens().GetAccessToken()
	e.ctx = as(t.Context(), e.token)
	ws, err := e.c.Workspace.CreateWorkspace(e.ctx, &berthv1.CreateWorkspaceRequest{Name: "s", Path: e.srv.mkdir(t, "s")})
	if err != nil {
		t.Fatal(err)
	}
	e.ws = ws.GetWorkspace().GetId()
	id := e.task(t, "long [slow] [lines:100]")
	s, code := openSSE(t, t.Context(), e.srv.URL+"/api/v1/tasks/"+id+"/logs/stream", bearer(e.token))
	if code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	w, code := openSSE(t, t.Context(), e.srv.URL+"/api/v1/workspaces/"+e.ws+"/events", bearer(e.token))
	if code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	readSSETask(t, s, 2)
	start := time.Now()
	run.stop()
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("shutdown took %s", d)
	}
	for _, st := range []*sseStream{s, w} {
		for {
			_, err, ok := st.next()
			if !ok {
				break
			}
			if err != nil {
				t.Fatalf("stream ended with %v, want a clean EOF", err)
			}
		}
	}
}
