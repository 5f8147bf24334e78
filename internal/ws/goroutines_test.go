package ws_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"

	"github.com/berthhq/berth/internal/bus"
	"github.com/berthhq/berth/internal/event"
	"github.com/berthhq/berth/internal/store"
	"github.com/berthhq/berth/internal/testsvc"
	"github.com/berthhq/berth/internal/ws"
)

// TestGoroutinesPerConnection: an idle WebSocket with one subscription
// costs only the goroutine that reads it — no follower while the
// subscription has nothing to send, no writer, pinger or shutdown watcher
// of its own — beyond what a bare coder/websocket handler that reads its
// connection costs, plus a constant for the whole handler. Not parallel:
// it counts the process's goroutines.
func TestGoroutinesPerConnection(t *testing.T) {
	const conns = 30
	floor := bareFloor(t, conns)
	f := newFixture(t)
	got := goroutinesPerConnections(t, f.srv.URL, f.channel, conns)
	t.Logf("%d idle connections: bare coder/websocket adds %d goroutines, berth with a subscription each %d", conns, floor, got)
	const constant = 3 // the keep-alive wheel's goroutine, and slack
	if got > floor+constant {
		t.Errorf("%d idle WebSockets with one subscription add %d goroutines, bare ones %d: %.1f of berth's own per connection, want none",
			conns, got, floor, float64(got-floor)/conns)
	}
}

// bareFloor returns by how many goroutines n idle connections to a bare
// coder/websocket handler, which writes a frame then reads its connection,
// grow the process.
func bareFloor(t *testing.T, n int) int {
	t.Helper()
	bare := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{ws.Subprotocol}})
		if err != nil {
			return
		}
		defer c.CloseNow()
		if c.Write(r.Context(), websocket.MessageText, []byte(`{"type":"event"}`)) != nil {
			return
		}
		for {
			if _, _, err := c.Read(context.WithoutCancel(r.Context())); err != nil {
				return
			}
		}
	}))
	defer bare.Close()
	return goroutinesPerConnections(t, bare.URL, "", n)
}

// fixture is /ws served over real task and workspace services on SQLite,
// with a user's running task in a workspace of theirs.
type fixture struct {
	st      *store.Store
	events  *bus.Bus
	user    *store.User
	ws      *store.Workspace
	task    *store.TaskRecord
	srv     *httptest.Server
	writes  *atomic.Int64 // the server's writes to its sockets
	channel string        // the task's
}

// newFixture serves /ws as a user with a running task; it stops when the
// test ends.
func newFixture(t testing.TB) *fixture {
	t.Helper()
	ctx := t.Context()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "berth.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	now := time.Now().UTC()
	u := &store.User{ID: uuid.NewString(), Email: "u@example.com", Name: "U", Role: store.RoleMember, CreatedAt: now, UpdatedAt: now}
	w := &store.Workspace{ID: uuid.NewString(), OwnerID: u.ID, Name: "w", Path: t.TempDir(), Status: store.WorkspaceRunning, CreatedAt: now, UpdatedAt: now}
	tr := &store.TaskRecord{ID: uuid.NewString(), WorkspaceID: w.ID, CreatedBy: u.ID, Type: store.TaskClaudeChat, Status: store.TaskRunning, Priority: store.TaskPriorityMedium, CreatedAt: now, StartedAt: &now}
	if err := st.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateWorkspace(ctx, w); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateTaskRecord(ctx, tr); err != nil {
		t.Fatal(err)
	}
	events := bus.New()
	srv, writes := serveAs(t, st, events, u)
	return &fixture{st: st, events: events, user: u, ws: w, task: tr, srv: srv, writes: writes, channel: event.TaskTopic(tr.ID)}
}

// goroutinesPerConnections opens n idle WebSockets to url as dialIdle
// does, and returns by how many the process's goroutines grew once they
// settled. The client
// connections run no goroutine of their own (nothing reads them after the
// first event). They are closed before it returns.
func goroutinesPerConnections(t *testing.T, url, channel string, n int) int {
	t.Helper()
	before := testsvc.SettledGoroutines(t)
	conns := dialIdle(t, url, channel, n)
	defer func() {
		for _, c := range conns {
			_ = c.CloseNow()
		}
		testsvc.SettledGoroutines(t)
	}()
	return testsvc.SettledGoroutines(t) - before
}

// dialIdle opens n WebSockets to url, subscribes each to channel and reads
// up to its first event, or, with no channel, pings it and reads the pong,
// and returns them open.
func dialIdle(t testing.TB, url, channel string, n int) []*websocket.Conn {
	t.Helper()
	ctx := t.Context()
	conns := make([]*websocket.Conn, 0, n)
	for range n {
		c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(url, "http")+"/ws", &websocket.DialOptions{Subprotocols: []string{ws.Subprotocol}})
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		t.Cleanup(func() { _ = c.CloseNow() })
		first := ws.Message{Type: "subscribe", ID: "s", Channel: channel}
		if channel == "" {
			first = ws.Message{Type: "ping", ID: "p"}
		}
		b, _ := json.Marshal(first)
		if err := c.Write(ctx, websocket.MessageText, b); err != nil {
			t.Fatal(err)
		}
		for {
			_, b, err := c.Read(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var m ws.Message
			if err := json.Unmarshal(b, &m); err != nil || m.Type == "error" {
				t.Fatalf("frame %s (%v)", b, err)
			}
			if m.Type == "event" || m.Type == "pong" {
				break
			}
		}
	}
	return conns
}
