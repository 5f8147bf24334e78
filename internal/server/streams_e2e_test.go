package server_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	sse "github.com/tmaxmax/go-sse"
	"google.golang.org/protobuf/encoding/protojson"

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

// sseStream is an open event stream. A test's cleanup may close it while
// a reader goroutine is still inside next: close marks the stream closing,
// cancels its request (which ends the blocked read), then takes mu, which
// next holds for the whole read, before it stops the iterator, so the two
// never touch the iterator or the body at once.
type sseStream struct {
	res     *http.Response
	cancel  context.CancelFunc
	closing atomic.Bool
	once    sync.Once
	mu      sync.Mutex // held by next for a whole read; close takes it to stop pull
	pull    func() (sse.Event, error, bool)
	stop    func()
	stopped bool // guarded by mu
}

var sseClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2000, MaxConnsPerHost: 0}}

// openSSE opens an event stream; header may be nil.
func openSSE(t testing.TB, ctx context.Context, url string, header http.Header) (*sseStream, int) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	res, err := sseClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, res.Body)
		_ = res.Body.Close()
		cancel()
		return nil, res.StatusCode
	}
	pull, stop := iter.Pull2(sse.Read(res.Body, nil))
	s := &sseStream{res: res, cancel: cancel, pull: pull, stop: stop}
	t.Cleanup(s.close)
	return s, res.StatusCode
}

// next reads the stream's next event; once the stream is closed it reports
// the end (ok false).
func (s *sseStream) next() (sse.Event, error, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return sse.Event{}, nil, false
	}
	return s.pull()
}

// closed reports whether close has begun: a read that fails after that was
// ended by the test, not by the server.
func (s *sseStream) closed() bool { return s.closing.Load() }

// close ends the stream once; it is safe while another goroutine reads.
func (s *sseStream) close() {
	s.once.Do(func() {
		s.closing.Store(true)
		s.cancel()
		s.mu.Lock()
		defer s.mu.Unlock()
		s.stopped = true
		s.stop()
		_ = s.res.Body.Close()
	})
}

func bearer(token string) http.Header {
	return http.Header{"Authorization": {"Bearer " + token}}
}

// readSSETask reads a task's event stream until end (or until take log
// lines when take > 0) and returns the seqs and the end.
func readSSETask(t testing.TB, s *sseStream, take int) ([]int64, *berthv1.TaskEnd) {
	t.Helper()
	var seqs []int64
	for {
		ev, err, ok := s.next()
		if (!ok || err != nil) && s.closed() {
			// The test closed the stream (it has ended or is cleaning up)
			// while this reader was still reading: nothing to report.
			return seqs, nil
		}
		if !ok {
			t.Fatalf("stream ended without end after %d lines", len(seqs))
		}
		if err != nil {
			t.Fatalf("reading the stream: %v", err)
		}
		switch ev.Type {
		case "log":
			var entry berthv1.LogEntry
			if err := protojson.Unmarshal([]byte(ev.Data), &entry); err != nil {
				t.Fatalf("log data %q: %v", ev.Data, err)
			}
			if ev.LastEventID != strconv.FormatInt(entry.GetSeq(), 10) {
				t.Fatalf("id %q for seq %d", ev.LastEventID, entry.GetSeq())
			}
			if !strings.Contains(ev.Data, `"task_id"`) {
				t.Fatalf("log data not snake_case: %s", ev.Data)
			}
			seqs = append(seqs, entry.GetSeq())
			if take > 0 && len(seqs) >= take {
				return seqs, nil
			}
		case "end":
			var end berthv1.TaskEnd
			if err := protojson.Unmarshal([]byte(ev.Data), &end); err != nil {
				t.Fatalf("end data %q: %v", ev.Data, err)
			}
			return seqs, &end
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

// TestSlowStreamConsumer: a reader that reads nothing while a task floods
// its log neither delays a fast reader nor the task, and then gets every
// line. (That a reader whose queue overflows catches up from the store with
// no gap is proved in internal/stream, TestFollowLaggedReader;
// BenchmarkSlowStreamConsumer floods with 20,000 lines.)
func TestSlowStreamConsumer(t *testing.T) {
	t.Parallel()
	e := newStreamEnv(t)
	const lines = 3000
	id := e.task(t, fmt.Sprintf("flood [lines:%d]", lines))
	slow, fast := slowAndFast(t, e, id)
	var fastSeqs []int64
	var fastEnd *berthv1.TaskEnd
	select {
	case r := <-fast:
		fastSeqs, fastEnd = r.seqs, r.end
	case <-time.After(within(t)):
		t.Fatal("the fast reader did not finish while the slow one stalled")
	}
	checkSeqs(t, "fast", fastSeqs, fastEnd.GetLastSeq())
	if fastEnd.GetLastSeq() < lines {
		t.Fatalf("only %d lines", fastEnd.GetLastSeq())
	}
	task := waitTask(t, e.c, e.ctx, id, nil)
	if task.GetStatus() != berthv1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("task %v", task.GetStatus())
	}
	slowSeqs, slowEnd := readSSETask(t, slow, 0)
	checkSeqs(t, "slow", slowSeqs, slowEnd.GetLastSeq())
	if slowEnd.GetLastSeq() != fastEnd.GetLastSeq() {
		t.Errorf("slow got %d lines, fast %d", slowEnd.GetLastSeq(), fastEnd.GetLastSeq())
	}
}

// BenchmarkSlowStreamConsumer is TestSlowStreamConsumer at flood size: a
// task writes 20,000 lines while one SSE reader stalls; it reports how long
// the fast reader took to get them all, and the stalled one after it.
func BenchmarkSlowStreamConsumer(b *testing.B) {
	const lines = 20000
	e := newStreamEnv(b)
	for b.Loop() {
		start := time.Now()
		id := e.task(b, fmt.Sprintf("flood [lines:%d]", lines))
		slow, fast := slowAndFast(b, e, id)
		r := <-fast
		fastTook := time.Since(start)
		checkSeqs(b, "fast", r.seqs, r.end.GetLastSeq())
		if r.end.GetLastSeq() < lines || r.end.GetStatus() != berthv1.TaskStatus_TASK_STATUS_SUCCEEDED {
			b.Fatalf("fast: %d lines, %v", r.end.GetLastSeq(), r.end.GetStatus())
		}
		slowSeqs, slowEnd := readSSETask(b, slow, 0)
		checkSeqs(b, "slow", slowSeqs, slowEnd.GetLastSeq())
		if slowEnd.GetLastSeq() != r.end.GetLastSeq() {
			b.Fatalf("slow got %d lines, fast %d", slowEnd.GetLastSeq(), r.end.GetLastSeq())
		}
		b.ReportMetric(float64(r.end.GetLastSeq()), "lines")
		b.ReportMetric(float64(fastTook.Milliseconds()), "ms-fast-reader")
		b.ReportMetric(float64(time.Since(start).Milliseconds()), "ms-slow-reader")
	}
}

// taskRead is what a reader of a task's SSE stream got.
type taskRead struct {
	seqs []int64
	end  *berthv1.TaskEnd
}

// slowAndFast opens two SSE streams of task id: slow, which the caller
// reads later (or never), and one read to its end at once, whose result
// fast delivers.
func slowAndFast(t testing.TB, e *streamEnv, id string) (slow *sseStream, fast <-chan taskRead) {
	t.Helper()
	url := e.srv.URL + "/api/v1/tasks/" + id + "/logs/stream"
	slow, code := openSSE(t, e.ctx, url, bearer(e.token))
	if code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	f, code := openSSE(t, e.ctx, url, bearer(e.token))
	if code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	done := make(chan taskRead, 1)
	go func() {
		seqs, end := readSSETask(t, f, 0)
		done <- taskRead{seqs, end}
	}()
	return slow, done
}

// sseSubscribers is how many SSE clients follow one task at once in the
// test; BenchmarkManySSESubscribers floods with ten times as many.
const sseSubscribers = 100

// TestManySSESubscribers: many clients follow one task at once and every
// one gets every line, in order, then the end.
func TestManySSESubscribers(t *testing.T) {
	t.Parallel()
	e := newStreamEnv(t)
	ctx, cancel := context.WithTimeout(e.ctx, within(t))
	defer cancel()
	start := time.Now()
	last, err := followMany(ctx, e, e.task(t, "many [slow] [lines:20]"), sseSubscribers)
	if err != nil {
		t.Fatal(err)
	}
	if last < 20 {
		t.Fatalf("last seq %d", last)
	}
	t.Logf("%d subscribers got %d lines each in %s", sseSubscribers, last, time.Since(start).Round(time.Millisecond))
}

// BenchmarkManySSESubscribers is TestManySSESubscribers at flood size:
// 1,000 SSE clients follow one task; it reports how long until every one
// had every line and the end.
func BenchmarkManySSESubscribers(b *testing.B) {
	const subscribers = 1000
	e := newStreamEnv(b)
	for b.Loop() {
		start := time.Now()
		last, err := followMany(e.ctx, e, e.task(b, "many [slow] [lines:20]"), subscribers)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(subscribers), "subscribers")
		b.ReportMetric(float64(last), "lines")
		b.ReportMetric(float64(time.Since(start).Milliseconds()), "ms-all-delivered")
	}
}

// followMany has n SSE clients follow task id from its start to its end at
// once, each checking that it gets seqs 1, 2, 3 … with no gap and no
// duplicate and an end that names its last line. It returns that last seq,
// on which they must all agree, or the first subscriber's failure.
func followMany(ctx context.Context, e *streamEnv, id string, n int) (int64, error) {
	url := e.srv.URL + "/api/v1/tasks/" + id + "/logs/stream"
	var wg sync.WaitGroup
	errs := make(chan error, n)
	lasts := make(chan int64, n)
	for i := range n {
		wg.Go(func() {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			req.Header = bearer(e.token)
			res, err := sseClient.Do(req)
			if err != nil {
				errs <- err
				return
			}
			defer res.Body.Close()
			want := int64(1)
			for ev, err := range sse.Read(res.Body, nil) {
				if err != nil {
					errs <- fmt.Errorf("subscriber %d: %w", i, err)
					return
				}
				switch ev.Type {
				case "log":
					if ev.LastEventID != strconv.FormatInt(want, 10) {
						errs <- fmt.Errorf("subscriber %d: id %s, want %d", i, ev.LastEventID, want)
						return
					}
					want++
				case "end":
					var end berthv1.TaskEnd
					_ = protojson.Unmarshal([]byte(ev.Data), &end)
					if end.GetLastSeq() != want-1 {
						errs <- fmt.Errorf("subscriber %d: %d lines, end says %d", i, want-1, end.GetLastSeq())
					}
					if end.GetStatus() != berthv1.TaskStatus_TASK_STATUS_SUCCEEDED {
						errs <- fmt.Errorf("subscriber %d: end %v", i, &end)
					}
					lasts <- end.GetLastSeq()
					return
				}
			}
			errs <- fmt.Errorf("subscriber %d: no end after %d lines", i, want-1)
		})
	}
	wg.Wait()
	close(errs)
	close(lasts)
	for err := range errs {
		return 0, err
	}
	var last int64 = -1
	for l := range lasts {
		if last >= 0 && l != last {
			return 0, fmt.Errorf("subscribers disagree on the last seq: %d and %d", l, last)
		}
		last = l
	}
	return last, nil
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

// TestWatchWorkspace: the watch starts with the workspace's state, then
// reports a task's lifecycle.
func TestWatchWorkspace(t *testing.T) {
	t.Parallel()
	e := newStreamEnv(t)
	ctx, cancel := context.WithTimeout(e.ctx, within(t))
	defer cancel()
	w, err := e.c.Workspace.WatchWorkspace(ctx, &berthv1.WatchWorkspaceRequest{WorkspaceId: e.ws})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	res, err := w.Receive()
	if err != nil {
		t.Fatal(err)
	}
	if ev := res.GetEvent(); ev.GetKind() != "workspace.status" || ev.GetWorkspace().GetId() != e.ws {
		t.Fatalf("first event %v", ev)
	}
	events, code := openSSE(t, ctx, e.srv.URL+"/api/v1/workspaces/"+e.ws+"/events", bearer(e.token))
	if code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	// The SSE stream is subscribed once its first event (the workspace's
	// state) arrives; the headers come before that.
	if ev, err, ok := events.next(); !ok || err != nil || ev.Type != "workspace.status" {
		t.Fatalf("first sse event %v %v", ev, err)
	}
	id := e.task(t, "watched")
	for _, next := range []func() *berthv1.WorkspaceEvent{
		func() *berthv1.WorkspaceEvent {
			res, err := w.Receive()
			if err != nil {
				t.Fatal(err)
			}
			return res.GetEvent()
		},
		func() *berthv1.WorkspaceEvent {
			ev, err, ok := events.next()
			if !ok || err != nil {
				t.Fatalf("sse: %v", err)
			}
			var out berthv1.WorkspaceEvent
			if err := protojson.Unmarshal([]byte(ev.Data), &out); err != nil {
				t.Fatal(err)
			}
			if out.GetKind() != ev.Type {
				t.Fatalf("event %q carries kind %q", ev.Type, out.GetKind())
			}
			return &out
		},
	} {
		// Every kind of event a workspace stream carries is really sent
		// (workspace.status came first), each with what it promises.
		seen := map[string]bool{}
		for {
			ev := next()
			if ev.GetTaskId() != id {
				continue
			}
			seen[ev.GetKind()] = true
			switch ev.GetKind() {
			case "task.created":
				if ev.GetTask().GetId() != id || ev.GetTask().GetStatus() != berthv1.TaskStatus_TASK_STATUS_QUEUED || ev.GetTask().GetPrompt() != "watched" {
					t.Errorf("task.created carries %v", ev.GetTask())
				}
			case "task.progress":
				if ev.GetTaskProgress() == nil || ev.GetTaskProgress().GetCurrent() == 0 {
					t.Errorf("task.progress carries no progress: %v", ev)
				}
			case "task.status":
			default:
				t.Errorf("unknown event kind %q", ev.GetKind())
			}
			if ev.GetTaskStatus() == berthv1.TaskStatus_TASK_STATUS_SUCCEEDED {
				if ev.GetKind() != "task.status" {
					t.Errorf("kind %q", ev.GetKind())
				}
				break
			}
		}
		for _, kind := range []string{"task.created", "task.status", "task.progress"} {
			if !seen[kind] {
				t.Errorf("no %s event (saw %v)", kind, seen)
			}
		}
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
