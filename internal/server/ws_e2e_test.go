package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
)

// wsMessage is a frame of /ws.
type wsMessage struct {
	Type      string          `json:"type"`
	Action    string          `json:"action,omitempty"`
	ID        string          `json:"id,omitempty"`
	Channel   string          `json:"channel,omitempty"`
	Since     int64           `json:"since,omitempty"`
	Data      json.RawMessage `json:"data,omitempty"`
	Timestamp time.Time       `json:"timestamp,omitzero"`
}

type wsError struct {
	Code, Message, Reason string
}

// dialWS opens /ws; query may be "" and header nil.
func dialWS(t *testing.T, e *streamEnv, query string, header http.Header, subprotocols ...string) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	if subprotocols == nil {
		subprotocols = []string{"berth.v1.json"}
	}
	url := "ws" + strings.TrimPrefix(e.srv.URL, "http") + "/ws" + query
	ctx, cancel := context.WithTimeout(t.Context(), within(t))
	defer cancel()
	c, res, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: header, Subprotocols: subprotocols})
	if err == nil {
		t.Cleanup(func() { _ = c.CloseNow() })
	}
	return c, res, err
}

func mustDialWS(t *testing.T, e *streamEnv, token string) *websocket.Conn {
	t.Helper()
	c, _, err := dialWS(t, e, "", bearer(token))
	if err != nil {
		t.Fatal(err)
	}
	if c.Subprotocol() != "berth.v1.json" {
		t.Fatalf("subprotocol %q", c.Subprotocol())
	}
	return c
}

func wsSend(t testing.TB, c *websocket.Conn, m wsMessage) {
	t.Helper()
	b, _ := json.Marshal(m)
	if err := c.Write(t.Context(), websocket.MessageText, b); err != nil {
		t.Fatal(err)
	}
}

func wsRead(t testing.TB, c *websocket.Conn) wsMessage {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), within(t))
	defer cancel()
	_, b, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	var m wsMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("frame %s: %v", b, err)
	}
	if m.Timestamp.IsZero() {
		t.Errorf("frame without timestamp: %s", b)
	}
	return m
}

// wsCommand sends a command and returns its answer (result or error).
func wsCommand(t *testing.T, c *websocket.Conn, id, action, data string) wsMessage {
	t.Helper()
	wsSend(t, c, wsMessage{Type: "command", ID: id, Action: action, Data: json.RawMessage(data)})
	for {
		m := wsRead(t, c)
		if m.ID == id {
			return m
		}
	}
}

func wantWSError(t *testing.T, m wsMessage, code, reason string) {
	t.Helper()
	if m.Type != "error" {
		t.Fatalf("got %s %s, want error %s", m.Type, m.Data, code)
	}
	var e wsError
	if err := json.Unmarshal(m.Data, &e); err != nil {
		t.Fatal(err)
	}
	if e.Code != code || (reason != "" && e.Reason != reason) || e.Message == "" {
		t.Fatalf("error %+v, want %s %s", e, code, reason)
	}
}

func wantResult[T any, P interface {
	*T
	proto.Message
}](t *testing.T, m wsMessage) P {
	t.Helper()
	if m.Type != "result" {
		t.Fatalf("got %s %s, want result", m.Type, m.Data)
	}
	var out P = new(T)
	if err := protojson.Unmarshal(m.Data, out); err != nil {
		t.Fatalf("result %s: %v", m.Data, err)
	}
	return out
}

// TestWSCommands: every command action, with its success and an error
// path, and the errors of bad frames; the connection stays open.
func TestWSCommands(t *testing.T) {
	t.Parallel()
	e := newStreamEnv(t)
	c := mustDialWS(t, e, e.token)

	// workspace.get
	got := wantResult[berthv1.GetWorkspaceResponse](t, wsCommand(t, c, "g1", "workspace.get", `{"id":"`+e.ws+`"}`))
	if got.GetWorkspace().GetId() != e.ws {
		t.Errorf("workspace.get = %v", got)
	}
	wantWSError(t, wsCommand(t, c, "g2", "workspace.get", `{"id":"00000000-0000-4000-8000-000000000000"}`), "not_found", "NOT_FOUND")
	wantWSError(t, wsCommand(t, c, "g3", "workspace.get", `{"id":""}`), "invalid_argument", "VALIDATION_ERROR")

	// task.create, then task.continue and task.cancel on it.
	created := wantResult[berthv1.CreateTaskResponse](t, wsCommand(t, c, "c1", "task.create",
		`{"workspace_id":"`+e.ws+`","type":"TASK_TYPE_CLAUDE_CHAT","prompt":"ws [lines:3]"}`))
	id := created.GetTask().GetId()
	if id == "" {
		t.Fatalf("task.create = %v", created)
	}
	wantWSError(t, wsCommand(t, c, "c2", "task.create", `{"workspace_id":"`+e.ws+`","type":"TASK_TYPE_CLAUDE_CHAT"}`), "invalid_argument", "VALIDATION_ERROR")
	waitTaskEnd(t, e, id)
	cont := wantResult[berthv1.CreateTaskResponse](t, wsCommand(t, c, "n1", "task.continue",
		`{"workspace_id":"`+e.ws+`","type":"TASK_TYPE_CLAUDE_CHAT","prompt":"more","continue_task_id":"`+id+`"}`))
	if cont.GetTask().GetContinueTaskId() != id {
		t.Errorf("task.continue = %v", cont)
	}
	wantWSError(t, wsCommand(t, c, "n2", "task.continue", `{"workspace_id":"`+e.ws+`","type":"TASK_TYPE_CLAUDE_CHAT","prompt":"more"}`), "invalid_argument", "VALIDATION_ERROR")
	wantWSError(t, wsCommand(t, c, "x1", "task.cancel", `{"id":"`+id+`"}`), "failed_precondition", "CONFLICT")
	hang := wantResult[berthv1.CreateTaskResponse](t, wsCommand(t, c, "c3", "task.create",
		`{"workspace_id":"`+e.ws+`","type":"TASK_TYPE_CLAUDE_CHAT","prompt":"[hang]"}`)).GetTask().GetId()
	cancelled := wantResult[berthv1.CancelTaskResponse](t, wsCommand(t, c, "x2", "task.cancel", `{"id":"`+hang+`"}`))
	if cancelled.GetTask().GetStatus() != berthv1.TaskStatus_TASK_STATUS_CANCELLED {
		t.Errorf("task.cancel = %v", cancelled)
	}

	// workspace.start and workspace.stop (process runtime).
	started := wantResult[berthv1.StartWorkspaceResponse](t, wsCommand(t, c, "s1", "workspace.start", `{"id":"`+e.ws+`"}`))
	if started.GetWorkspace().GetStatus() != berthv1.WorkspaceStatus_WORKSPACE_STATUS_RUNNING {
		t.Errorf("workspace.start = %v", started)
	}
	stopped := wantResult[berthv1.StopWorkspaceResponse](t, wsCommand(t, c, "s2", "workspace.stop", `{"id":"`+e.ws+`"}`))
	if stopped.GetWorkspace().GetStatus() != berthv1.WorkspaceStatus_WORKSPACE_STATUS_STOPPED {
		t.Errorf("workspace.stop = %v", stopped)
	}
	wantWSError(t, wsCommand(t, c, "s3", "workspace.stop", `{"id":"00000000-0000-4000-8000-000000000000"}`), "not_found", "NOT_FOUND")
	wantWSError(t, wsCommand(t, c, "s4", "workspace.start", `{"id":"00000000-0000-4000-8000-000000000000"}`), "not_found", "NOT_FOUND")

	// Bad protojson, unknown fields, unknown action, bad JSON, unknown type.
	wantWSError(t, wsCommand(t, c, "b1", "task.create", `{"workspace_id":42}`), "invalid_argument", "VALIDATION_ERROR")
	wantWSError(t, wsCommand(t, c, "b2", "task.create", `{"nope":1}`), "invalid_argument", "VALIDATION_ERROR")
	wantWSError(t, wsCommand(t, c, "b3", "task.explode", `{}`), "invalid_argument", "VALIDATION_ERROR")
	if err := c.Write(t.Context(), websocket.MessageText, []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	wantWSError(t, wsRead(t, c), "invalid_argument", "VALIDATION_ERROR")
	wsSend(t, c, wsMessage{Type: "dance", ID: "d1"})
	wantWSError(t, wsRead(t, c), "invalid_argument", "VALIDATION_ERROR")

	// ping → pong, still on the same connection.
	wsSend(t, c, wsMessage{Type: "ping", ID: "p1"})
	if m := wsRead(t, c); m.Type != "pong" || m.ID != "p1" {
		t.Errorf("ping answered with %+v", m)
	}
}

func waitTaskEnd(t testing.TB, e *streamEnv, id string) {
	t.Helper()
	deadline := time.Now().Add(within(t))
	for time.Now().Before(deadline) {
		res, err := e.c.Task.GetTask(e.ctx, &berthv1.GetTaskRequest{Id: id})
		if err != nil {
			t.Fatal(err)
		}
		switch res.GetTask().GetStatus() {
		case berthv1.TaskStatus_TASK_STATUS_SUCCEEDED, berthv1.TaskStatus_TASK_STATUS_FAILED, berthv1.TaskStatus_TASK_STATUS_CANCELLED:
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("task %s did not end", id)
}

// TestWSAuthorization: a viewer key may read but not create tasks; a
// channel the caller may not see is not found.
func TestWSAuthorization(t *testing.T) {
	t.Parallel()
	e := newStreamEnv(t)
	key, err := e.c.Auth.CreateApiKey(e.ctx, &berthv1.CreateApiKeyRequest{Name: "viewer", Role: berthv1.Role_ROLE_VIEWER})
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := dialWS(t, e, "", http.Header{"X-Api-Key": {key.GetKey()}})
	if err != nil {
		t.Fatal(err)
	}
	wantWSError(t, wsCommand(t, c, "1", "task.create", `{"workspace_id":"`+e.ws+`","type":"TASK_TYPE_CLAUDE_CHAT","prompt":"x"}`), "permission_denied", "FORBIDDEN")
	wantWSError(t, wsCommand(t, c, "2", "workspace.stop", `{"id":"`+e.ws+`"}`), "permission_denied", "FORBIDDEN")
	wantResult[berthv1.GetWorkspaceResponse](t, wsCommand(t, c, "3", "workspace.get", `{"id":"`+e.ws+`"}`))

	// Another account sees neither the workspace nor its tasks.
	id := e.task(t, "mine [lines:2]")
	other := register(t, e.c, "ws-other@example.com").GetTokens().GetAccessToken()
	o := mustDialWS(t, e, other)
	wsSend(t, o, wsMessage{Type: "subscribe", ID: "s1", Channel: "task:" + id})
	m := wsRead(t, o)
	if m.ID != "s1" {
		t.Fatalf("got %+v", m)
	}
	wantWSError(t, m, "not_found", "NOT_FOUND")
	wantWSError(t, wsCommand(t, o, "g", "workspace.get", `{"id":"`+e.ws+`"}`), "not_found", "NOT_FOUND")

	// No credentials: refused at the upgrade.
	if _, res, err := dialWS(t, e, "", nil); err == nil || res == nil || res.StatusCode != http.StatusUnauthorized {
		t.Errorf("no credentials: %v %v", res, err)
	}
}

// TestWSSubscribe: a subscriber from since gets every later line in order,
// then the end; unsubscribe stops a workspace channel.
func TestWSSubscribe(t *testing.T) {
	t.Parallel()
	e := newStreamEnv(t)
	id := e.task(t, "ws sub [lines:20]")
	waitTaskEnd(t, e, id)
	c := mustDialWS(t, e, e.token)
	wsSend(t, c, wsMessage{Type: "subscribe", ID: "s1", Channel: "task:" + id, Since: 5})
	if m := wsRead(t, c); m.Type != "subscribed" || m.ID != "s1" || m.Channel != "task:"+id {
		t.Fatalf("got %+v, want subscribed", m)
	}
	var seqs []int64
	var end berthv1.TaskEnd
	for done := false; !done; {
		m := wsRead(t, c)
		if m.Type != "event" || m.Channel != "task:"+id {
			t.Fatalf("got %+v", m)
		}
		switch m.Action {
		case "log":
			if !strings.Contains(string(m.Data), `"task_id"`) {
				t.Fatalf("not snake_case: %s", m.Data)
			}
			var entry berthv1.LogEntry
			if err := protojson.Unmarshal(m.Data, &entry); err != nil {
				t.Fatal(err)
			}
			seqs = append(seqs, entry.GetSeq())
		case "end":
			if err := protojson.Unmarshal(m.Data, &end); err != nil {
				t.Fatal(err)
			}
			done = true
		}
	}
	if end.GetStatus() != berthv1.TaskStatus_TASK_STATUS_SUCCEEDED || end.GetLastSeq() < 6 {
		t.Fatalf("end = %v", &end)
	}
	if int64(len(seqs)) != end.GetLastSeq()-5 {
		t.Fatalf("%d lines after 5, want %d", len(seqs), end.GetLastSeq()-5)
	}
	for i, s := range seqs {
		if s != int64(i+6) {
			t.Fatalf("line %d has seq %d", i, s)
		}
	}

	// A workspace channel: its state first, then unsubscribe.
	wsSend(t, c, wsMessage{Type: "subscribe", ID: "w1", Channel: "workspace:" + e.ws})
	if m := wsRead(t, c); m.Type != "subscribed" || m.ID != "w1" {
		t.Fatalf("got %+v", m)
	}
	if m := wsRead(t, c); m.Type != "event" || m.Action != "workspace.status" {
		t.Fatalf("got %+v", m)
	}
	wsSend(t, c, wsMessage{Type: "unsubscribe", ID: "u1", Channel: "workspace:" + e.ws})
	if m := wsRead(t, c); m.Type != "unsubscribed" || m.ID != "u1" {
		t.Fatalf("got %+v", m)
	}
	// No more events of the channel: a new task's lifecycle is not sent.
	e.task(t, "after unsubscribe [lines:1]")
	wsSend(t, c, wsMessage{Type: "ping", ID: "p"})
	time.Sleep(300 * time.Millisecond)
	if m := wsRead(t, c); m.Type != "pong" {
		t.Fatalf("after unsubscribe: %+v", m)
	}
	wsSend(t, c, wsMessage{Type: "subscribe", ID: "bad", Channel: "queue:1"})
	wantWSError(t, wsRead(t, c), "invalid_argument", "")
}

// TestWSHandshake: origin, subprotocol and tickets are checked at the
// upgrade; an oversize frame closes with 1009.
func TestWSHandshake(t *testing.T) {
	t.Parallel()
	e := newStreamEnv(t, "--allowed-origins", "https://app.example.com")
	h := bearer(e.token)
	h.Set("Origin", "https://evil.example.com")
	if _, res, err := dialWS(t, e, "", h); err == nil || res == nil || res.StatusCode != http.StatusForbidden {
		t.Errorf("bad origin: %v %v", res, err)
	}
	h.Set("Origin", "https://app.example.com")
	if _, _, err := dialWS(t, e, "", h); err != nil {
		t.Errorf("allowed origin: %v", err)
	}
	if _, res, err := dialWS(t, e, "", bearer(e.token), "chat"); err == nil || res == nil || res.StatusCode != http.StatusBadRequest {
		t.Errorf("no subprotocol: %v %v", res, err)
	}

	ticket, err := e.c.Auth.CreateStreamTicket(e.ctx, &berthv1.CreateStreamTicketRequest{Target: "ws"})
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := dialWS(t, e, "?ticket="+ticket.GetTicket(), nil)
	if err != nil {
		t.Fatalf("ticket: %v", err)
	}
	if _, res, err := dialWS(t, e, "?ticket="+ticket.GetTicket(), nil); err == nil || res == nil || res.StatusCode != http.StatusUnauthorized {
		t.Errorf("reused ticket: %v %v", res, err)
	}
	other, err := e.c.Auth.CreateStreamTicket(e.ctx, &berthv1.CreateStreamTicketRequest{Target: "workspace:" + e.ws})
	if err != nil {
		t.Fatal(err)
	}
	if _, res, err := dialWS(t, e, "?ticket="+other.GetTicket(), nil); err == nil || res == nil || res.StatusCode != http.StatusUnauthorized {
		t.Errorf("ticket for another target: %v %v", res, err)
	}

	// Oversize: 1009.
	big := `{"type":"ping","id":"` + strings.Repeat("x", 70<<10) + `"}`
	_ = c.Write(t.Context(), websocket.MessageText, []byte(big))
	ctx, cancel := context.WithTimeout(t.Context(), within(t))
	defer cancel()
	_, _, err = c.Read(ctx)
	if got := websocket.CloseStatus(err); got != websocket.StatusMessageTooBig {
		t.Errorf("oversize: close %v (%v), want 1009", got, err)
	}
}

// TestWSKeepAlive: while a task floods logs to a subscriber, control pings
// and ping frames are answered and the connection stays open.
func TestWSKeepAlive(t *testing.T) {
	t.Parallel()
	e := newStreamEnv(t)
	id := e.task(t, "flood [lines:3000]")
	c := mustDialWS(t, e, e.token)
	wsSend(t, c, wsMessage{Type: "subscribe", ID: "s", Channel: "task:" + id})

	pongs := make(chan string, 16)
	ended := make(chan int64, 1)
	readErr := make(chan error, 1)
	go func() {
		var n int64
		for {
			_, b, err := c.Read(t.Context())
			if err != nil {
				readErr <- err
				return
			}
			var m wsMessage
			_ = json.Unmarshal(b, &m)
			switch {
			case m.Type == "pong":
				pongs <- m.ID
			case m.Action == "log":
				n++
			case m.Action == "end":
				ended <- n
			}
		}
	}()
	for i := 0; ; i++ {
		ctx, cancel := context.WithTimeout(t.Context(), within(t))
		err := c.Ping(ctx)
		cancel()
		if err != nil {
			t.Fatalf("ping %d: %v", i, err)
		}
		wsSend(t, c, wsMessage{Type: "ping", ID: "p"})
		select {
		case <-pongs:
		case n := <-ended:
			if n < 3000 {
				t.Fatalf("%d lines, want 3000+", n)
			}
			if i == 0 {
				t.Log("the task ended before the first ping round")
			}
			ctx, cancel := context.WithTimeout(t.Context(), within(t))
			defer cancel()
			if err := c.Ping(ctx); err != nil {
				t.Fatalf("after the flood: %v", err)
			}
			return
		case err := <-readErr:
			t.Fatalf("connection closed: %v", err)
		case <-time.After(within(t)):
			t.Fatalf("no pong within %s", within(t))
		}
	}
}
