package sse_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	gosse "github.com/tmaxmax/go-sse"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/berthhq/berth/internal/access"
	"github.com/berthhq/berth/internal/bus"
	"github.com/berthhq/berth/internal/event"
	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
	"github.com/berthhq/berth/internal/sse"
	"github.com/berthhq/berth/internal/store"
	"github.com/berthhq/berth/internal/stream"
	"github.com/berthhq/berth/internal/task"
	"github.com/berthhq/berth/internal/tasklog"
	"github.com/berthhq/berth/internal/workspace"
)

// rig is an SSE handler over the real task and workspace services on a
// real SQLite store, with a running task of the owner's.
type rig struct {
	st     *store.Store
	bus    *bus.Bus
	url    string
	owner  access.Principal
	task   *store.TaskRecord
	wsID   string
	tokens map[string]access.Principal // bearer token → principal
	h      *sse.Handler
}

func newRig(t *testing.T) *rig {
	t.Helper()
	return newRigWith(t, nil)
}

// newRigWith is newRig with the handler's config changed by configure
// (when not nil) before the handler is built.
func newRigWith(t *testing.T, configure func(*sse.Config)) *rig {
	t.Helper()
	ctx := t.Context()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "berth.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	now := time.Now().UTC()
	r := &rig{st: st, bus: bus.New(), tokens: map[string]access.Principal{}}
	for _, name := range []string{"owner", "stranger"} {
		u := &store.User{ID: uuid.NewString(), Email: name + "@example.com", Name: name, Role: store.RoleMember, CreatedAt: now, UpdatedAt: now}
		if err := st.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
		r.tokens[name] = access.Principal{UserID: u.ID, Role: u.Role}
	}
	r.owner = r.tokens["owner"]
	w := &store.Workspace{ID: uuid.NewString(), OwnerID: r.owner.UserID, Name: "w", Path: t.TempDir(), Status: store.WorkspaceRunning, CreatedAt: now, UpdatedAt: now}
	if err := st.CreateWorkspace(ctx, w); err != nil {
		t.Fatal(err)
	}
	r.wsID = w.ID
	r.task = &store.TaskRecord{ID: uuid.NewString(), WorkspaceID: w.ID, CreatedBy: r.owner.UserID, Type: store.TaskClaudeChat, Status: store.TaskRunning, Priority: store.TaskPriorityMedium, CreatedAt: now, StartedAt: &now}
	if err := st.CreateTaskRecord(ctx, r.task); err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.DiscardHandler)
	workspaces := workspace.NewService(workspace.Deps{Store: st, Bus: r.bus, Logger: logger, Now: time.Now, TaskProto: task.ToProto})
	runner := task.NewRunner(st, nil, workspaces, r.bus, prometheus.NewRegistry(), logger, time.Now, task.RunnerConfig{})
	tasks := task.NewService(st, runner, task.Budget{}, task.Limits{}, time.Now, nil)
	cfg := sse.Config{
		Auth: stream.Auth{Authenticate: func(req *http.Request) (access.Principal, error) {
			return r.tokens[strings.TrimPrefix(req.Header.Get("Authorization"), "Bearer ")], nil
		}},
		Tasks: tasks, Workspaces: workspaces, Logger: logger,
	}
	if configure != nil {
		configure(&cfg)
	}
	h := sse.New(cfg)
	r.h = h
	mux := http.NewServeMux()
	h.Mount(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	t.Cleanup(h.Shutdown)
	r.url = srv.URL
	return r
}

// finish writes n lines through a real tasklog.Writer, then ends the task
// as the runner does: log closed, status stored, then published.
func (r *rig) finish(t *testing.T, n int) {
	t.Helper()
	w := tasklog.NewWriter(r.st, r.bus, r.task.ID, 1, tasklog.Options{FlushLines: 64, FlushEvery: time.Millisecond})
	for i := range n {
		w.Log(store.LogInfo, store.LogStdout, fmt.Sprintf("line %d", i+1), nil)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	done, err := r.st.FinishTask(context.Background(), r.task.ID, []store.TaskStatus{store.TaskRunning}, store.TaskSucceeded, store.TaskFinish{CompletedAt: new(time.Now().UTC())})
	if err != nil {
		t.Fatal(err)
	}
	r.bus.Publish(event.TaskTopic(done.ID), task.Changed(done))
}

// get opens path as who, with extra headers.
func (r *rig) get(t *testing.T, path, who string, header map[string]string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, r.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+who)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = res.Body.Close() })
	return res
}

// TestTaskStreamResume: the task's log streams from where the client says
// it is (?since= or Last-Event-ID), with no gap and no duplicate, then the
// end; a reconnect after the end gets 204. Events are the API's messages
// in the shared JSON (proto names, zero values present).
func TestTaskStreamResume(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	const lines = 700
	path := "/api/v1/tasks/" + r.task.ID + "/logs/stream"
	live := r.get(t, path, "owner", nil)
	if live.StatusCode != http.StatusOK {
		t.Fatalf("status %d", live.StatusCode)
	}
	next, stop := iter.Pull2(gosse.Read(live.Body, nil))
	defer stop()
	// The running status comes once the stream follows the task.
	if ev, err, _ := next(); err != nil || ev.Type != "status" || !strings.Contains(ev.Data, `"TASK_STATUS_RUNNING"`) {
		t.Fatalf("first event %+v, %v", ev, err)
	}
	r.finish(t, lines)
	seqs, end := read(t, next)
	check(t, "live", seqs, 1, lines)
	if end.GetLastSeq() != lines || end.GetStatus() != berthv1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("end %v", end)
	}

	for _, tc := range []struct {
		name   string
		query  string
		header map[string]string
		from   int64
	}{
		{"since", "?since=250", nil, 251},
		{"Last-Event-ID", "", map[string]string{"Last-Event-ID": "600"}, 601},
		{"Last-Event-ID wins over since", "?since=5", map[string]string{"Last-Event-ID": "699"}, 700},
		{"beyond the end", "?since=9999", nil, lines + 1},
	} {
		res := r.get(t, path+tc.query, "owner", tc.header)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("%s: status %d", tc.name, res.StatusCode)
		}
		next, stop := iter.Pull2(gosse.Read(res.Body, nil))
		seqs, end := read(t, next)
		stop()
		check(t, tc.name, seqs, tc.from, lines)
		if end.GetLastSeq() != lines {
			t.Errorf("%s: end %v", tc.name, end)
		}
	}
	if res := r.get(t, path, "owner", map[string]string{"Last-Event-ID": "end"}); res.StatusCode != http.StatusNoContent {
		t.Errorf("reconnect after the end: status %d, want 204", res.StatusCode)
	}
}

// TestStreamAccess: a task or workspace the caller may not see is not
// found, by the same rule as the RPCs (task.Service, workspace.Service);
// a bad since is invalid.
func TestStreamAccess(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	for path, want := range map[string]int{
		"/api/v1/tasks/" + r.task.ID + "/logs/stream":        http.StatusNotFound,
		"/api/v1/tasks/" + uuid.NewString() + "/logs/stream": http.StatusNotFound,
		"/api/v1/workspaces/" + r.wsID + "/events":           http.StatusNotFound,
	} {
		res := r.get(t, path, "stranger", nil)
		body, _ := io.ReadAll(res.Body)
		var e struct{ Code string }
		if res.StatusCode != want || json.Unmarshal(body, &e) != nil || e.Code != "not_found" {
			t.Errorf("%s: %d %s, want %d not_found", path, res.StatusCode, body, want)
		}
	}
	res := r.get(t, "/api/v1/tasks/"+r.task.ID+"/logs/stream?since=-3", "owner", nil)
	if res.StatusCode != http.StatusBadRequest {
		t.Errorf("since=-3: status %d, want 400", res.StatusCode)
	}
}

// TestWorkspaceEvents: the workspace's stream starts with its state, then
// carries its tasks' changes with the status and progress of the event.
func TestWorkspaceEvents(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	res := r.get(t, "/api/v1/workspaces/"+r.wsID+"/events", "owner", nil)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status %d", res.StatusCode)
	}
	next, stop := iter.Pull2(gosse.Read(res.Body, nil))
	defer stop()
	ev, err, _ := next()
	if err != nil || ev.Type != workspace.KindStatus {
		t.Fatalf("first event %+v, %v", ev, err)
	}
	changed := event.TaskChanged{TaskID: r.task.ID, WorkspaceID: r.wsID, Status: store.TaskRunning, Progress: event.Progress{Current: 0, Total: 4, Message: "starting"}}
	r.bus.Publish(event.WorkspaceTopic(r.wsID), changed)
	ev, err, _ = next()
	if err != nil || ev.Type != "task.status" {
		t.Fatalf("task event %+v, %v", ev, err)
	}
	var got berthv1.WorkspaceEvent
	if err := protojson.Unmarshal([]byte(ev.Data), &got); err != nil {
		t.Fatal(err)
	}
	if got.GetTaskId() != r.task.ID || got.GetTaskStatus() != berthv1.TaskStatus_TASK_STATUS_RUNNING || got.GetTaskProgress().GetTotal() != 4 || got.GetTaskProgress().GetMessage() != "starting" {
		t.Errorf("task event %s", ev.Data)
	}
	// Zero values are written, as on the WebSocket.
	if !strings.Contains(ev.Data, `"current":0`) {
		t.Errorf("zero values left out: %s", ev.Data)
	}
}

// read reads a task stream to its end.
func read(t *testing.T, next func() (gosse.Event, error, bool)) ([]int64, *berthv1.TaskEnd) {
	t.Helper()
	var seqs []int64
	for {
		ev, err, ok := next()
		if !ok || err != nil {
			t.Fatalf("the stream ended without an end after %d lines: %v", len(seqs), err)
		}
		switch ev.Type {
		case "log":
			var e berthv1.LogEntry
			if err := protojson.Unmarshal([]byte(ev.Data), &e); err != nil {
				t.Fatal(err)
			}
			if ev.LastEventID != strconv.FormatInt(e.GetSeq(), 10) {
				t.Fatalf("id %q for seq %d", ev.LastEventID, e.GetSeq())
			}
			seqs = append(seqs, e.GetSeq())
		case "end":
			if ev.LastEventID != "end" {
				t.Fatalf("end id %q", ev.LastEventID)
			}
			var end berthv1.TaskEnd
			if err := protojson.Unmarshal([]byte(ev.Data), &end); err != nil {
				t.Fatal(err)
			}
			return seqs, &end
		}
	}
}

// check checks that seqs is exactly from…last.
func check(t *testing.T, what string, seqs []int64, from, last int64) {
	t.Helper()
	if int64(len(seqs)) != last-from+1 {
		t.Fatalf("%s: %d lines, want %d", what, len(seqs), last-from+1)
	}
	for i, s := range seqs {
		if s != from+int64(i) {
			t.Fatalf("%s: line %d is seq %d, want %d", what, i, s, from+int64(i))
		}
	}
}
