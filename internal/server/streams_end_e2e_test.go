package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connectproto"
	"github.com/coder/websocket"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/encoding/protojson"

	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
	"github.com/berthhq/berth/internal/testsvc"
)

// TestShutdownEndsStreams: on shutdown a WebSocket gets close 1012 and a
// Connect stream ends with Unavailable and a retry hint — at once, not
// after the shutdown grace — and each client resumes on a new server
// without losing a line.
func TestShutdownEndsStreams(t *testing.T) {
	t.Parallel()
	claude := testsvc.FakeClaude(t)
	dir := t.TempDir()
	flags := []string{"--claude-path", claude, "--anthropic-api-key", testAPIKey, "--data-dir", dir + "/data", "--workspace-root", dir + "/ws"}
	run := startServerUntil(t, flags...)
	e := &streamEnv{srv: run.srv, c: run.srv.clients(protocols[0])}
	e.token = register(t, e.c, "restart@example.com").GetTokens().GetAccessToken()
	e.ctx = as(t.Context(), e.token)
	w, err := e.c.Workspace.CreateWorkspace(e.ctx, &berthv1.CreateWorkspaceRequest{Name: "r", Path: e.srv.mkdir(t, "r")})
	if err != nil {
		t.Fatal(err)
	}
	e.ws = w.GetWorkspace().GetId()
	id := e.task(t, "done before [lines:3000]")
	waitTaskEnd(t, e, id)

	c := mustDialWS(t, e, e.token)
	wsSend(t, c, wsMessage{Type: "subscribe", ID: "t", Channel: "task:" + id, Since: 0})
	wsSend(t, c, wsMessage{Type: "subscribe", ID: "w", Channel: "workspace:" + e.ws})
	rpc, err := e.c.Workspace.WatchWorkspace(e.ctx, &berthv1.WatchWorkspaceRequest{WorkspaceId: e.ws})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rpc.Receive(); err != nil {
		t.Fatal(err)
	}
	// The WebSocket's task channel: read a few lines, then stop the server.
	var got []int64
	for len(got) < 5 {
		m := wsRead(t, c)
		if m.Action == "log" {
			var entry berthv1.LogEntry
			if err := protojson.Unmarshal(m.Data, &entry); err != nil {
				t.Fatal(err)
			}
			got = append(got, entry.GetSeq())
		}
	}
	stopped := make(chan time.Duration, 1)
	go func() {
		start := time.Now()
		run.stop()
		stopped <- time.Since(start)
	}()

	// The Connect stream: Unavailable with RetryInfo.
	for {
		_, err := rpc.Receive()
		if err == nil {
			continue
		}
		if connect.CodeOf(err) != connect.CodeUnavailable {
			t.Fatalf("WatchWorkspace ended with %v, want unavailable", err)
		}
		var ce *connect.Error
		retry := false
		if errors.As(err, &ce) {
			for _, d := range ce.Details() {
				if v, derr := connectproto.UnmarshalErrorDetail(d); derr == nil {
					if ri, ok := v.(*errdetails.RetryInfo); ok && ri.GetRetryDelay().AsDuration() > 0 {
						retry = true
					}
				}
			}
		}
		if !retry {
			t.Errorf("no RetryInfo in %v", err)
		}
		break
	}
	// The WebSocket: whole frames, then 1012.
	for {
		ctx, cancel := context.WithTimeout(t.Context(), within(t))
		_, b, err := c.Read(ctx)
		cancel()
		if err != nil {
			if websocket.CloseStatus(err) != websocket.StatusServiceRestart {
				t.Fatalf("the WebSocket ended with %v, want 1012", err)
			}
			break
		}
		var m wsMessage
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("a broken frame: %v", err)
		}
		if m.Action == "log" {
			var entry berthv1.LogEntry
			if err := protojson.Unmarshal(m.Data, &entry); err != nil {
				t.Fatal(err)
			}
			got = append(got, entry.GetSeq())
		}
	}
	if d := <-stopped; d > 5*time.Second {
		t.Errorf("shutdown took %s with streams open, want them ended at once", d)
	}

	// A new server on the same data: resume with since and finish.
	next := startServer(t, flags...)
	e2 := &streamEnv{srv: next, c: next.clients(protocols[0]), token: e.token, ctx: e.ctx, ws: e.ws}
	c2 := mustDialWS(t, e2, e.token)
	wsSend(t, c2, wsMessage{Type: "subscribe", ID: "t", Channel: "task:" + id, Since: int64(len(got))})
	var end berthv1.TaskEnd
	for {
		m := wsRead(t, c2)
		if m.Action == "log" {
			var entry berthv1.LogEntry
			if err := protojson.Unmarshal(m.Data, &entry); err != nil {
				t.Fatal(err)
			}
			got = append(got, entry.GetSeq())
		}
		if m.Action == "end" {
			if err := protojson.Unmarshal(m.Data, &end); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	checkSeqs(t, "across the restart", got, end.GetLastSeq())
}

// TestLogoutEndsOpenStreams: streams re-check their credentials while they
// are open: after a logout, an SSE stream ends, a Connect stream ends with
// Unauthenticated and WebSockets (bearer and ticket) close with 1008.
func TestLogoutEndsOpenStreams(t *testing.T) {
	t.Parallel()
	e := newStreamEnv(t, "--stream-heartbeat", "100ms", "--ws-ping-interval", "100ms")
	s, code := openSSE(t, e.ctx, e.srv.URL+"/api/v1/workspaces/"+e.ws+"/events", bearer(e.token))
	if code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	rpc, err := e.c.Workspace.WatchWorkspace(e.ctx, &berthv1.WatchWorkspaceRequest{WorkspaceId: e.ws})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rpc.Receive(); err != nil {
		t.Fatal(err)
	}
	bearerWS := mustDialWS(t, e, e.token)
	ticket, err := e.c.Auth.CreateStreamTicket(e.ctx, &berthv1.CreateStreamTicketRequest{Target: "ws"})
	if err != nil {
		t.Fatal(err)
	}
	ticketWS, _, err := dialWS(t, e, "?ticket="+ticket.GetTicket(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*websocket.Conn{bearerWS, ticketWS} {
		wsSend(t, c, wsMessage{Type: "subscribe", ID: "w", Channel: "workspace:" + e.ws})
		if m := wsRead(t, c); m.Type != "subscribed" {
			t.Fatalf("got %+v", m)
		}
	}
	// Still open after several heartbeats and pings.
	time.Sleep(400 * time.Millisecond)
	if _, err := e.c.Auth.Logout(e.ctx, &berthv1.LogoutRequest{}); err != nil {
		t.Fatal(err)
	}

	for {
		_, err, ok := s.next()
		if !ok {
			break
		}
		if err != nil {
			t.Fatalf("SSE ended with %v, want a clean end", err)
		}
	}
	for {
		if _, err := rpc.Receive(); err != nil {
			if connect.CodeOf(err) != connect.CodeUnauthenticated {
				t.Errorf("Connect stream ended with %v, want unauthenticated", err)
			}
			break
		}
	}
	for name, c := range map[string]*websocket.Conn{"bearer": bearerWS, "ticket": ticketWS} {
		for {
			ctx, cancel := context.WithTimeout(t.Context(), within(t))
			_, _, err := c.Read(ctx)
			cancel()
			if err != nil {
				var ce websocket.CloseError
				if !errors.As(err, &ce) || ce.Code != websocket.StatusPolicyViolation || !strings.Contains(ce.Reason, "sign in again") {
					t.Errorf("%s WebSocket ended with %v, want 1008", name, err)
				}
				break
			}
		}
	}
	waitMetric(t, e.srv, `berth_stream_dropped_clients_total{reason="revoked",transport="websocket"}`, 2)
}
