package ws_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/berthhq/berth/internal/event"
	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
	"github.com/berthhq/berth/internal/store"
	"github.com/berthhq/berth/internal/task"
	"github.com/berthhq/berth/internal/tasklog"
	"github.com/berthhq/berth/internal/testsvc"
	"github.com/berthhq/berth/internal/ws"
)

// TestIdleSubscriptionsWake: idle task subscriptions hold no goroutine of
// their own, yet each gets the lines its task then writes, once and in
// order, and the end; once ended they leave no goroutine behind. Not
// parallel: it counts the process's goroutines.
func TestIdleSubscriptionsWake(t *testing.T) {
	const conns, lines = 20, 300
	floor := bareFloor(t, conns)
	f := newFixture(t)
	before := testsvc.SettledGoroutines(t)
	clients := dialIdle(t, f.srv.URL, f.channel, conns) // each has had the running status
	const constant = 3                                  // the keep-alive wheel's goroutine, and slack
	if got := testsvc.SettledGoroutines(t) - before; got > floor+constant {
		t.Fatalf("%d idle subscribed WebSockets add %d goroutines, bare ones %d: %.1f of berth's own per connection, want none",
			conns, got, floor, float64(got-floor)/conns)
	}

	lw := tasklog.NewWriter(f.st, f.events, f.task.ID, 1, tasklog.Options{FlushLines: 16, FlushEvery: time.Millisecond})
	for i := range lines {
		lw.Log(store.LogInfo, store.LogStdout, fmt.Sprintf("line %d", i+1), nil)
	}
	if err := lw.Close(); err != nil {
		t.Fatal(err)
	}
	done, err := f.st.FinishTask(t.Context(), f.task.ID, []store.TaskStatus{store.TaskRunning}, store.TaskSucceeded, store.TaskFinish{CompletedAt: new(time.Now().UTC())})
	if err != nil {
		t.Fatal(err)
	}
	f.events.Publish(f.channel, task.Changed(done))

	for i, c := range clients {
		want := int64(1)
		for {
			m := readFrame(t, c)
			if m.Type != "event" || m.Channel != f.channel {
				t.Fatalf("connection %d: frame %+v", i, m)
			}
			if m.Action == "status" {
				continue
			}
			if m.Action == "end" {
				var end berthv1.TaskEnd
				if err := protojson.Unmarshal(m.Data, &end); err != nil || end.GetLastSeq() != lines || want != lines+1 {
					t.Fatalf("connection %d: end %s after seq %d (%v), want the end after seq %d", i, m.Data, want-1, err, lines)
				}
				break
			}
			var e berthv1.LogEntry
			if err := protojson.Unmarshal(m.Data, &e); err != nil || m.Action != "log" || e.GetSeq() != want {
				t.Fatalf("connection %d: %s %s, want seq %d (%v)", i, m.Action, m.Data, want, err)
			}
			want++
		}
	}
	if got := testsvc.SettledGoroutines(t) - before; got > floor+constant {
		t.Errorf("after their task ended, %d WebSockets add %d goroutines, bare ones %d", conns, got, floor)
	}
	if f.events.Subscribed(f.channel) {
		t.Error("the task's bus topic still has a subscriber after its end")
	}
}

// TestWakesRacingSteps: events published from several goroutines at once,
// to subscribers whose follow is being stepped while they come, all
// arrive, each once: a wake-up that comes during a step is never lost,
// even when nothing is published after it. Run it with -race.
func TestWakesRacingSteps(t *testing.T) {
	t.Parallel()
	// Fewer than a bus queue holds (1024) in all, so none lags and every
	// event must arrive as itself.
	const subscribers, publishers, each = 4, 8, 100
	f := newFixture(t)
	channel := event.WorkspaceTopic(f.ws.ID)
	clients := dialIdle(t, f.srv.URL, channel, subscribers) // each has had the workspace's state

	var wg sync.WaitGroup
	for p := range publishers {
		wg.Go(func() {
			for i := range each {
				// A task of its own per event: each is sent as it is.
				f.events.Publish(channel, event.TaskChanged{TaskID: fmt.Sprintf("task-%d-%d", p, i), WorkspaceID: f.ws.ID, Status: store.TaskRunning})
			}
		})
	}
	wg.Wait()
	for i, c := range clients {
		seen := map[string]bool{}
		for len(seen) < publishers*each {
			m := readFrame(t, c)
			var ev berthv1.WorkspaceEvent
			if m.Type != "event" || m.Action != "task.status" || protojson.Unmarshal(m.Data, &ev) != nil {
				t.Fatalf("subscriber %d, after %d events: frame %+v", i, len(seen), m)
			}
			if seen[ev.GetTaskId()] {
				t.Fatalf("subscriber %d: %s twice", i, ev.GetTaskId())
			}
			seen[ev.GetTaskId()] = true
		}
		// Nothing more: the next frame answers a ping.
		if m := roundTrip(t, c, ws.Message{Type: "ping", ID: "p"}); m.Type != "pong" {
			t.Fatalf("subscriber %d: after every event, %+v", i, m)
		}
	}
}

// TestUnsubscribeWhileEventsFlow: unsubscribing from a channel whose events
// keep coming stops them — nothing of the channel after the ack, and the
// bus holds no subscription of it — and leaves no goroutine behind. Not
// parallel: it counts the process's goroutines.
func TestUnsubscribeWhileEventsFlow(t *testing.T) {
	f := newFixture(t)
	channel := event.WorkspaceTopic(f.ws.ID)
	conn := dialIdle(t, f.srv.URL, "", 1)[0]
	before := testsvc.SettledGoroutines(t) // the connection, with no subscription
	writeFrame(t, conn, ws.Message{Type: "subscribe", ID: "s", Channel: channel})
	if m := readFrame(t, conn); m.Type != "subscribed" {
		t.Fatalf("frame %+v, want subscribed", m)
	}

	ctx, stop := context.WithCancel(t.Context())
	var publishing sync.WaitGroup
	publishing.Go(func() {
		for i := 0; ctx.Err() == nil; i++ {
			f.events.Publish(channel, event.TaskChanged{TaskID: fmt.Sprintf("task-%d", i), WorkspaceID: f.ws.ID, Status: store.TaskRunning})
			time.Sleep(100 * time.Microsecond) // a steady flow, not a flood that lags
		}
	})
	defer func() { stop(); publishing.Wait() }()
	for range 50 { // events flow
		if m := readFrame(t, conn); m.Type != "event" {
			t.Fatalf("frame %+v", m)
		}
	}
	writeFrame(t, conn, ws.Message{Type: "unsubscribe", ID: "u", Channel: channel})
	for {
		m := readFrame(t, conn)
		if m.Type == "unsubscribed" && m.ID == "u" {
			break
		}
		if m.Type != "event" {
			t.Fatalf("before the unsubscribed ack: %+v", m)
		}
	}
	if f.events.Subscribed(channel) {
		t.Error("the bus still holds the channel's subscription after the unsubscribed ack")
	}
	if m := roundTrip(t, conn, ws.Message{Type: "ping", ID: "p"}); m.Type != "pong" {
		t.Fatalf("after the unsubscribed ack, with events still published: %+v", m)
	}
	stop()
	publishing.Wait()
	if got := testsvc.SettledGoroutines(t) - before; got > 1 {
		t.Errorf("a connection that unsubscribed holds %d more goroutines than one that never subscribed, want none (1 of slack)", got)
	}
	if m := roundTrip(t, conn, ws.Message{Type: "ping", ID: "q"}); m.Type != "pong" {
		t.Fatalf("after the flow stopped: %+v", m)
	}
}

// writeFrame sends m on c.
func writeFrame(t *testing.T, c *websocket.Conn, m ws.Message) {
	t.Helper()
	b, _ := json.Marshal(m)
	if err := c.Write(t.Context(), websocket.MessageText, b); err != nil {
		t.Fatal(err)
	}
}

// readFrame reads c's next frame. It waits up to most of what is left of
// the test's deadline, so that a frame that never comes fails the test
// with what it waited for rather than hanging it.
func readFrame(t *testing.T, c *websocket.Conn) ws.Message {
	t.Helper()
	ctx := t.Context()
	if d, ok := t.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, d.Add(-time.Until(d)/10))
		defer cancel()
	}
	_, b, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("no frame: %v", err)
	}
	var m ws.Message
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("frame %s: %v", b, err)
	}
	return m
}

// roundTrip sends m on c and returns the next frame.
func roundTrip(t *testing.T, c *websocket.Conn, m ws.Message) ws.Message {
	t.Helper()
	writeFrame(t, c, m)
	return readFrame(t, c)
}

// TestPanicInAStep: a panic while a subscription is stepped on a wake-up's
// goroutine — here a workspace change published with no workspace, a bug
// — closes that connection with 1011, and the subscription lets go of all
// it holds, so the connection's handler returns: the goroutines come back
// to what they were before it was opened. Not parallel: it counts the
// process's goroutines.
func TestPanicInAStep(t *testing.T) {
	f := newFixture(t)
	channel := event.WorkspaceTopic(f.ws.ID)
	before := testsvc.SettledGoroutines(t)
	conn := dialIdle(t, f.srv.URL, channel, 1)[0] // has had the workspace's state
	f.events.Publish(channel, event.WorkspaceChanged{Time: time.Now()})
	ctx := t.Context()
	if d, ok := t.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, d.Add(-time.Until(d)/10))
		defer cancel()
	}
	if _, b, err := conn.Read(ctx); err == nil {
		t.Fatalf("frame %s after the panic, want the close", b)
	} else if got := websocket.CloseStatus(err); got != websocket.StatusInternalError {
		t.Fatalf("the connection ended with %v (%v), want 1011", got, err)
	}
	_ = conn.CloseNow()
	// The keep-alive wheel's goroutine may still turn: it stops at its
	// next tick with no timer left.
	if got := testsvc.SettledGoroutines(t) - before; got > 1 {
		t.Errorf("%d goroutines more than before the connection, once it closed after a panic; want none (1 of slack)", got)
	}
	if f.events.Subscribed(channel) {
		t.Error("the bus still holds the subscription of a connection closed after a panic")
	}
}
