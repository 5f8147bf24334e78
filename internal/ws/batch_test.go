package ws_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

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

// BenchmarkWakeUp: a task's lines reach a WebSocket subscriber in
// wake-ups of 50 (the task log's commits of 50 lines, on SQLite). It
// reports the server's writes to the socket per line (one frame each) and
// the time per line, store included.
//
//	go test -run '^$' -bench WakeUp ./internal/ws/
func BenchmarkWakeUp(b *testing.B) {
	const perWakeUp = 50
	f := newFixture(b)
	c := dialIdle(b, f.srv.URL, f.channel, 1)[0] // has had the running status
	c.SetReadLimit(1 << 20)
	lw := tasklog.NewWriter(f.st, f.events, f.task.ID, 1, tasklog.Options{FlushLines: perWakeUp, FlushEvery: time.Hour})
	defer lw.Close()
	ctx := b.Context()
	line := "a line of an agent's output, as long as many are: " + strings.Repeat("x", 100)
	before := f.writes.Load()
	lines := 0
	for b.Loop() {
		for range perWakeUp {
			lw.Log(store.LogInfo, store.LogStdout, line, nil)
		}
		for range perWakeUp {
			if _, _, err := c.Read(ctx); err != nil {
				b.Fatal(err)
			}
		}
		lines += perWakeUp
	}
	b.ReportMetric(float64(f.writes.Load()-before)/float64(lines), "writes/line")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(lines), "ns/line")
}
