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
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/coder/websocket"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/proto"

	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
)

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
			// The streams of the protocol before end on the server a
			// moment after their clients ended them.
			waitMetric(t, e.srv, "berth_streams_held", 0)
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
