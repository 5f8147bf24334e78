package sse_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"iter"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	gosse "github.com/tmaxmax/go-sse"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/berthhq/berth/internal/access"
	"github.com/berthhq/berth/internal/event"
	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
	"github.com/berthhq/berth/internal/sse"
	"github.com/berthhq/berth/internal/store"
	"github.com/berthhq/berth/internal/stream"
	"github.com/berthhq/berth/internal/testsvc"
)

// watched is a rig whose handler counts its streams: the stream metrics
// on a registry of its own, and the stream slots taken and not given back
// (Config.Admit).
type watched struct {
	*rig
	reg   *prometheus.Registry
	slots atomic.Int64
}

// newWatched is newRigWith, counting the handler's streams.
func newWatched(t *testing.T, configure func(*sse.Config)) *watched {
	t.Helper()
	w := &watched{reg: prometheus.NewRegistry()}
	w.rig = newRigWith(t, func(c *sse.Config) {
		c.Metrics = stream.NewMetrics(w.reg)
		c.Admit = func(context.Context, access.Principal, http.Header) (func(), error) {
			w.slots.Add(1)
			return sync.OnceFunc(func() { w.slots.Add(-1) }), nil
		}
		if configure != nil {
			configure(c)
		}
	})
	return w
}

// metric is the value of the series of name with labels (name=value
// pairs) on w's registry; 0 when there is none.
func (w *watched) metric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	families, err := w.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, l := range m.GetLabel() {
					if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue series
				}
			}
			if g := m.GetGauge(); g != nil {
				return g.GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// open is the number of open SSE streams, by the gauge.
func (w *watched) open(t *testing.T) float64 {
	t.Helper()
	return w.metric(t, "berth_stream_connections", "transport", stream.TransportSSE)
}

// released waits until every stream let go of everything: its slot, its
// place in the gauge, and its subscriptions to the rig's task and
// workspace.
func (w *watched) released(t *testing.T) {
	t.Helper()
	waitFor(t, "the streams to let go of everything", func() string {
		slots, open := w.slots.Load(), w.open(t)
		task, ws := w.bus.Subscribed(event.TaskTopic(w.task.ID)), w.bus.Subscribed(event.WorkspaceTopic(w.wsID))
		if slots == 0 && open == 0 && !task && !ws {
			return ""
		}
		return fmt.Sprintf("%d slots taken, gauge at %v, task subscribed %v, workspace subscribed %v", slots, open, task, ws)
	})
}

// waitFor polls until check reports nothing wrong (""), failing the test
// with the last report at the test's deadline.
func waitFor(t *testing.T, what string, check func() string) {
	t.Helper()
	end := deadline(t).Add(-5 * time.Second)
	for {
		wrong := check()
		if wrong == "" {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("waiting for %s: %s", what, wrong)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// dial opens path as who on a raw HTTP/1.1 connection and reads the
// response up to the end of its first event.
func dial(t *testing.T, url, path, who string) (net.Conn, *bufio.Reader) {
	t.Helper()
	addr := strings.TrimPrefix(url, "http://")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if err := c.SetDeadline(deadline(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n\r\n", path, addr, who); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	firstEvent(t, br)
	return c, br
}

// TestLeavingClientReleasesStream: a client that closes an idle stream
// is noticed at once, by the stream's one goroutine (its reader), though
// nothing is written to it — the heartbeat here is an hour away: its slot
// is given back, its bus subscription ends, the gauge goes down, and its
// reader goroutine ends. Not parallel: it counts the process's goroutines.
func TestLeavingClientReleasesStream(t *testing.T) {
	w := newWatched(t, func(c *sse.Config) { c.Heartbeat = time.Hour })
	before := testsvc.SettledGoroutines(t)
	const n = 10
	conns := make([]net.Conn, 0, n)
	for i := range n {
		path := "/api/v1/tasks/" + w.task.ID + "/logs/stream"
		if i%2 == 1 {
			path = "/api/v1/workspaces/" + w.wsID + "/events"
		}
		c, _ := dial(t, w.url, path, "owner")
		conns = append(conns, c)
	}
	if slots, open := w.slots.Load(), w.open(t); slots != n || open != n {
		t.Fatalf("%d streams open: %d slots taken, gauge at %v", n, slots, open)
	}
	// One reader per stream, the heartbeat wheel's goroutine, and one
	// of the runtime's coming or going.
	if grew := testsvc.SettledGoroutines(t) - before; grew > n+2 {
		t.Errorf("%d idle streams added %d goroutines, want at most %d", n, grew, n+2)
	}
	for _, c := range conns {
		_ = c.Close()
	}
	w.released(t)
	// The wheel's goroutine may outlive its last timer by a slot; one
	// of the runtime's may come or go.
	if grew := testsvc.SettledGoroutines(t) - before; grew > 2 {
		t.Errorf("%d goroutines left behind by closed streams", grew)
	}
}

// TestSlowClientDropped: a client that takes no bytes is dropped once a
// write has waited the stall timeout, counted under
// berth_stream_dropped_clients_total{transport="sse",reason="slow"}, and its
// stream lets go of everything. Not parallel: it counts the process's
// goroutines.
func TestSlowClientDropped(t *testing.T) {
	w := newWatched(t, func(c *sse.Config) { c.WriteTimeout = 200 * time.Millisecond })
	before := testsvc.SettledGoroutines(t)
	dial(t, w.url, "/api/v1/workspaces/"+w.wsID+"/events", "owner") // then never read
	// Large events fill the socket's buffers, then the write waits.
	now := time.Now().UTC()
	big := &store.Workspace{ID: w.wsID, OwnerID: w.owner.UserID, Name: "w", Description: strings.Repeat("x", 64<<10), Status: store.WorkspaceRunning, CreatedAt: now, UpdatedAt: now}
	waitFor(t, "the slow client to be dropped", func() string {
		if w.metric(t, "berth_stream_dropped_clients_total", "transport", stream.TransportSSE, "reason", "slow") == 1 {
			return ""
		}
		for range 16 {
			w.bus.Publish(event.WorkspaceTopic(w.wsID), event.WorkspaceChanged{Workspace: big, Time: now})
		}
		return "not dropped"
	})
	w.released(t)
	// The wheel's goroutine, and one of the runtime's coming or going.
	if grew := testsvc.SettledGoroutines(t) - before; grew > 2 {
		t.Errorf("%d goroutines left behind by the dropped stream", grew)
	}
}

// TestShutdownEndsDetachedStreams: Shutdown ends every open stream, each
// idle on its connection with no goroutine waiting but its reader: the
// clients see their streams end, every stream lets go of everything, and
// Wait, which the server calls before it closes the store, returns.
func TestShutdownEndsDetachedStreams(t *testing.T) {
	t.Parallel()
	w := newWatched(t, nil)
	var readers []*bufio.Reader
	for _, path := range []string{"/api/v1/tasks/" + w.task.ID + "/logs/stream", "/api/v1/workspaces/" + w.wsID + "/events"} {
		_, br := dial(t, w.url, path, "owner")
		readers = append(readers, br)
	}
	w.h.Shutdown()
	ctx, cancel := context.WithDeadline(t.Context(), deadline(t).Add(-5*time.Second))
	defer cancel()
	if err := w.h.Wait(ctx); err != nil {
		t.Fatalf("the streams did not end at shutdown: %v", err)
	}
	for _, br := range readers {
		// The rest of the stream, up to its end (the read would fail at
		// the test's deadline otherwise).
		if _, err := io.Copy(io.Discard, br); err != nil {
			t.Fatalf("the stream did not end at shutdown: %v", err)
		}
	}
	w.released(t)
}

// TestWakeupsLoseNoEvent: events published from several goroutines at
// once, each waking the streams while they are being stepped, all reach
// every subscriber, once each and in each publisher's order. The
// heartbeat is an hour away: no other wake-up makes up for a lost one.
func TestWakeupsLoseNoEvent(t *testing.T) {
	t.Parallel()
	w := newWatched(t, func(c *sse.Config) { c.Heartbeat = time.Hour })
	// Fewer than a follower's bus queue holds: no subscriber may lag
	// (and be sent the workspace's state instead of the events).
	const publishers, each, subscribers = 8, 100, 4
	type got struct {
		progress map[string][]int32 // by task id
		err      error
	}
	results := make(chan got, subscribers)
	for range subscribers {
		res := w.get(t, "/api/v1/workspaces/"+w.wsID+"/events", "owner", nil)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("status %d", res.StatusCode)
		}
		next, stop := iter.Pull2(gosse.Read(res.Body, nil))
		if ev, err, _ := next(); err != nil || ev.Type != "workspace.status" {
			stop()
			t.Fatalf("first event %+v, %v", ev, err)
		}
		go func() {
			defer stop()
			g := got{progress: map[string][]int32{}}
			for n := 0; n < publishers*each; n++ {
				ev, err, ok := next()
				if !ok || err != nil {
					g.err = fmt.Errorf("after %d events: %v", n, err)
					break
				}
				var e berthv1.WorkspaceEvent
				if err := protojson.Unmarshal([]byte(ev.Data), &e); err != nil {
					g.err = err
					break
				}
				g.progress[e.GetTaskId()] = append(g.progress[e.GetTaskId()], e.GetTaskProgress().GetCurrent())
			}
			results <- g
		}()
	}
	var wg sync.WaitGroup
	for p := range publishers {
		wg.Go(func() {
			for i := range each {
				w.bus.Publish(event.WorkspaceTopic(w.wsID), event.TaskChanged{
					TaskID: fmt.Sprint("task-", p), WorkspaceID: w.wsID, Status: store.TaskRunning,
					Progress: event.Progress{Current: int32(i), Total: each},
				})
			}
		})
	}
	wg.Wait()
	timeout := time.NewTimer(time.Until(deadline(t).Add(-5 * time.Second)))
	defer timeout.Stop()
	for range subscribers {
		var g got
		select {
		case g = <-results:
		case <-timeout.C:
			t.Fatalf("a subscriber is still waiting for some of the %d events", publishers*each)
		}
		if g.err != nil {
			t.Fatal(g.err)
		}
		for p := range publishers {
			seen := g.progress[fmt.Sprint("task-", p)]
			if len(seen) != each {
				t.Fatalf("a subscriber got %d events of publisher %d, want %d", len(seen), p, each)
			}
			for i, c := range seen {
				if c != int32(i) {
					t.Fatalf("a subscriber got publisher %d's events out of order: %v", p, seen)
				}
			}
		}
	}
	if lagged := w.metric(t, "berth_stream_lagged_total"); lagged != 0 {
		t.Errorf("a subscriber lagged %v times: the test proves nothing", lagged)
	}
}

// TestPanicEndsOneStream: a panic while a stream is stepped — here in
// the credential re-check of its heartbeat — ends that stream alone: its
// client sees it end, it is counted in berth_panics_total{where="sse"},
// it lets go of its slot and its place in the gauge, and the other stream
// of the same task goes on, heartbeats and all.
func TestPanicEndsOneStream(t *testing.T) {
	t.Parallel()
	var owner atomic.Pointer[access.Principal]
	w := newWatched(t, func(c *sse.Config) {
		c.Heartbeat = 50 * time.Millisecond
		next := c.Auth.Authenticate
		c.Auth.Authenticate = func(req *http.Request) (access.Principal, error) {
			if req.Header.Get("Authorization") != "Bearer panicky" {
				return next(req)
			}
			if req.URL == nil { // a re-check: a credential the stream holds
				panic("a bug in a credential re-check")
			}
			return *owner.Load(), nil
		}
	})
	owner.Store(&w.owner)
	path := "/api/v1/tasks/" + w.task.ID + "/logs/stream"
	_, fine := dial(t, w.url, path, "owner")
	_, panicky := dial(t, w.url, path, "panicky")
	if _, err := io.Copy(io.Discard, panicky); err != nil {
		t.Fatalf("the stream whose step panicked did not end: %v", err)
	}
	waitFor(t, "the panicking stream to let go of everything", func() string {
		panics := w.metric(t, "berth_panics_total", "where", stream.TransportSSE)
		if slots, open := w.slots.Load(), w.open(t); panics != 1 || slots != 1 || open != 1 {
			return fmt.Sprintf("%v panics counted, %d slots taken, gauge at %v; want 1, 1, 1", panics, slots, open)
		}
		return ""
	})
	// The other stream is alive: it gets heartbeats after the panic.
	for beats := 0; beats < 2; {
		line, err := fine.ReadString('\n')
		if err != nil {
			t.Fatalf("the other stream ended: %v", err)
		}
		if strings.HasPrefix(line, ":") && strings.Contains(line, "heartbeat") {
			beats++
		}
	}
	if !w.bus.Subscribed(event.TaskTopic(w.task.ID)) {
		t.Error("the other stream's subscription ended")
	}
}
