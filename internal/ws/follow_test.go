package ws_test

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/berthhq/berth/internal/access"
	"github.com/berthhq/berth/internal/bus"
	"github.com/berthhq/berth/internal/event"
	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
	"github.com/berthhq/berth/internal/store"
	"github.com/berthhq/berth/internal/stream"
	"github.com/berthhq/berth/internal/task"
	"github.com/berthhq/berth/internal/tasklog"
	"github.com/berthhq/berth/internal/workspace"
	"github.com/berthhq/berth/internal/ws"
)

// TestSubscribeResume: on real SQLite through the real task service, a
// subscription to a task from since gets every later line once, in order,
// then the end — the same events, in the same JSON, as SSE — and a
// channel the caller may not see is answered with a not-found error frame.
func TestSubscribeResume(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "berth.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	now := time.Now().UTC()
	u := &store.User{ID: uuid.NewString(), Email: "u@example.com", Name: "U", Role: store.RoleMember, CreatedAt: now, UpdatedAt: now}
	if err := st.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	w := &store.Workspace{ID: uuid.NewString(), OwnerID: u.ID, Name: "w", Path: t.TempDir(), Status: store.WorkspaceRunning, CreatedAt: now, UpdatedAt: now}
	if err := st.CreateWorkspace(ctx, w); err != nil {
		t.Fatal(err)
	}
	tr := &store.TaskRecord{ID: uuid.NewString(), WorkspaceID: w.ID, CreatedBy: u.ID, Type: store.TaskClaudeChat, Status: store.TaskRunning, Priority: store.TaskPriorityMedium, CreatedAt: now, StartedAt: &now}
	if err := st.CreateTaskRecord(ctx, tr); err != nil {
		t.Fatal(err)
	}
	events := bus.New()
	const lines = 400
	lw := tasklog.NewWriter(st, events, tr.ID, 1, tasklog.Options{FlushLines: 64, FlushEvery: time.Millisecond})
	for i := range lines {
		lw.Log(store.LogInfo, store.LogStdout, fmt.Sprintf("line %d", i+1), nil)
	}
	if err := lw.Close(); err != nil {
		t.Fatal(err)
	}
	done, err := st.FinishTask(ctx, tr.ID, []store.TaskStatus{store.TaskRunning}, store.TaskSucceeded, store.TaskFinish{CompletedAt: new(time.Now().UTC())})
	if err != nil {
		t.Fatal(err)
	}
	events.Publish(event.TaskTopic(tr.ID), task.Changed(done))

	srv, _ := serveAs(t, st, events, u)
	conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/ws", &websocket.DialOptions{Subprotocols: []string{ws.Subprotocol}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseNow()
	conn.SetReadLimit(1 << 20)
	send := func(m ws.Message) {
		b, _ := json.Marshal(m)
		if err := conn.Write(ctx, websocket.MessageText, b); err != nil {
			t.Fatal(err)
		}
	}
	recv := func() ws.Message {
		_, b, err := conn.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var m ws.Message
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		return m
	}

	for _, since := range []int64{0, 123, lines - 1, lines + 50} {
		channel := event.TaskTopic(tr.ID)
		send(ws.Message{Type: "subscribe", ID: "s", Channel: channel, Since: since})
		want := min(since, lines) + 1
		for {
			m := recv()
			if m.Type == "subscribed" || m.Action == "status" {
				continue
			}
			if m.Type != "event" || m.Channel != channel {
				t.Fatalf("since %d: frame %+v", since, m)
			}
			if m.Action == "end" {
				var end berthv1.TaskEnd
				if err := protojson.Unmarshal(m.Data, &end); err != nil || end.GetLastSeq() != lines || end.GetStatus() != berthv1.TaskStatus_TASK_STATUS_SUCCEEDED {
					t.Fatalf("since %d: end %s, %v", since, m.Data, err)
				}
				if want != lines+1 {
					t.Fatalf("since %d: end after seq %d, want after %d", since, want-1, lines)
				}
				break
			}
			var e berthv1.LogEntry
			if err := protojson.Unmarshal(m.Data, &e); err != nil || m.Action != "log" || e.GetSeq() != want {
				t.Fatalf("since %d: %s %s, want seq %d (%v)", since, m.Action, m.Data, want, err)
			}
			want++
		}
	}

	send(ws.Message{Type: "subscribe", ID: "x", Channel: event.TaskTopic(uuid.NewString())})
	for {
		m := recv()
		if m.Type == "subscribed" {
			continue
		}
		var body ws.ErrorBody
		if m.Type != "error" || m.ID != "x" || json.Unmarshal(m.Data, &body) != nil || body.Code != "not_found" || body.Reason != "NOT_FOUND" {
			t.Fatalf("subscribing to an unknown task: %+v", m)
		}
		break
	}
}

// serveAs serves /ws over real task and workspace services on st and
// events, every connection authenticated as u; it stops when the test ends.
func serveAs(t testing.TB, st *store.Store, events *bus.Bus, u *store.User) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	logger := slog.New(slog.DiscardHandler)
	workspaces := workspace.NewService(workspace.Deps{Store: st, Bus: events, Logger: logger, Now: time.Now, TaskProto: task.ToProto})
	runner := task.NewRunner(st, nil, workspaces, events, prometheus.NewRegistry(), logger, time.Now, task.RunnerConfig{})
	h := ws.New(ws.Config{
		Auth: stream.Auth{Authenticate: func(*http.Request) (access.Principal, error) {
			return access.Principal{UserID: u.ID, Role: u.Role}, nil
		}},
		Tasks: task.NewService(st, runner, task.Budget{}, task.Limits{}, time.Now, nil), Workspaces: workspaces, Logger: logger,
	})
	srv := httptest.NewUnstartedServer(h)
	writes := new(atomic.Int64)
	srv.Listener = countingListener{Listener: srv.Listener, writes: writes}
	srv.Start()
	t.Cleanup(srv.Close)
	t.Cleanup(h.Shutdown)
	return srv, writes
}

// countingListener counts the writes to the sockets it accepts: the
// server's write system calls.
type countingListener struct {
	net.Listener
	writes *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{Conn: c, writes: l.writes}, nil
}

type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// TestLiveLineFramesShared: a live line reaches every subscriber of its
// task as the same bytes, its whole event frame encoded once (timestamp
// included), on the task's channel.
func TestLiveLineFramesShared(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	f := newFixture(t)
	srv, st, events, tr, channel := f.srv, f.st, f.events, f.task, f.channel

	// Two subscribers, each following the task (its status, the first
	// event of a task with no lines, sent) before the first line is written.
	conns := dialIdle(t, srv.URL, channel, 2)

	const lines = 20
	lw := tasklog.NewWriter(st, events, tr.ID, 1, tasklog.Options{FlushLines: 4, FlushEvery: time.Millisecond})
	for i := range lines {
		lw.Log(store.LogInfo, store.LogStdout, fmt.Sprintf("line %d", i+1), nil)
	}
	if err := lw.Close(); err != nil {
		t.Fatal(err)
	}
	frames := make([][][]byte, len(conns))
	for i, c := range conns {
		for len(frames[i]) < lines {
			_, b, err := c.Read(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var m ws.Message
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			if m.Action != "log" {
				continue
			}
			var e berthv1.LogEntry
			if err := protojson.Unmarshal(m.Data, &e); err != nil || m.Type != "event" || m.Channel != channel || m.Timestamp.IsZero() || e.GetSeq() != int64(len(frames[i])+1) {
				t.Fatalf("subscriber %d: frame %s (%v)", i, b, err)
			}
			frames[i] = append(frames[i], b)
		}
	}
	for seq := range lines {
		if a, b := frames[0][seq], frames[1][seq]; string(a) != string(b) {
			t.Fatalf("seq %d: the subscribers got different frames:\n%s\n%s", seq+1, a, b)
		}
	}
}
