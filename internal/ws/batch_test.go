package ws_test

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/berthhq/berth/internal/event"
	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
	"github.com/berthhq/berth/internal/store"
	"github.com/berthhq/berth/internal/tasklog"
	"github.com/berthhq/berth/internal/ws"
)

// TestWakeUpWritesOneBatch: lines that reach a subscription in one
// wake-up (one commit of the task's log, published at once) go out in a
// handful of writes to the socket, not one (or two) per frame, and the
// client still gets each line as a frame of its own, once and in order.
// 500 lines of ~200 bytes pass batchBytes (64 KiB): the batch is written
// early as it fills, a few times.
func TestWakeUpWritesOneBatch(t *testing.T) {
	t.Parallel()
	const lines = 500
	f := newFixture(t)
	c := dialIdle(t, f.srv.URL, f.channel, 1)[0] // has had the running status
	c.SetReadLimit(1 << 20)
	// The pong comes after every frame the subscription sent so far, and
	// its write was counted before the client could read it.
	if m := roundTrip(t, c, ws.Message{Type: "ping", ID: "p"}); m.Type != "pong" {
		t.Fatalf("frame %+v, want the pong", m)
	}
	before := f.writes.Load()

	lw := tasklog.NewWriter(f.st, f.events, f.task.ID, 1, tasklog.Options{FlushLines: lines, FlushEvery: time.Hour})
	for i := range lines {
		lw.Log(store.LogInfo, store.LogStdout, fmt.Sprintf("line %d of a wake-up's batch, long enough to be a frame of a few hundred bytes", i+1), nil)
	}
	if err := lw.Close(); err != nil {
		t.Fatal(err)
	}
	for want := int64(1); want <= lines; want++ {
		m := readFrame(t, c)
		var e berthv1.LogEntry
		if m.Type != "event" || m.Action != "log" || protojson.Unmarshal(m.Data, &e) != nil || e.GetSeq() != want {
			t.Fatalf("frame %+v, want the line of seq %d", m, want)
		}
	}
	// A keep-alive ping (every 20 s) may add a write or two.
	got := f.writes.Load() - before
	t.Logf("%d lines in one wake-up: %d writes to the socket", lines, got)
	if got > lines/20 {
		t.Errorf("%d lines in one wake-up took %d writes to the socket, want at most %d", lines, got, lines/20)
	}
}

// BenchmarkWakeUp: events reach a WebSocket subscriber in wake-ups of 50
// (a workspace's task changes, published at once: no store in the way).
// It reports the server's writes to the socket per event (one frame
// each) and the time per event, the client's reading included.
//
//	go test -run '^$' -bench WakeUp ./internal/ws/
func BenchmarkWakeUp(b *testing.B) {
	const perWakeUp = 50
	f := newFixture(b)
	channel := event.WorkspaceTopic(f.ws.ID)
	c := dialIdle(b, f.srv.URL, channel, 1)[0] // has had the workspace's state
	c.SetReadLimit(1 << 20)
	batch := make([]any, perWakeUp)
	for i := range batch {
		batch[i] = event.TaskChanged{TaskID: fmt.Sprintf("task-%d", i), WorkspaceID: f.ws.ID, Status: store.TaskRunning}
	}
	ctx := b.Context()
	before := f.writes.Load()
	events := 0
	for b.Loop() {
		f.events.PublishAll(channel, batch)
		for range perWakeUp {
			if _, _, err := c.Read(ctx); err != nil {
				b.Fatal(err)
			}
		}
		events += perWakeUp
	}
	b.ReportMetric(float64(f.writes.Load()-before)/float64(events), "writes/event")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(events), "ns/event")
}
