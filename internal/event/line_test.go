package event_test

import (
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/berthhq/berth/internal/event"
	"github.com/berthhq/berth/internal/store"
)

// message stands in for an API message: a pointer, as protobuf messages
// are.
type message struct{ seq int64 }

// TestSharedMessage: every subscriber of a line gets the one message built
// for it, a codec finds the line again from that message, and the
// registry lets the line go once nothing else holds it.
func TestSharedMessage(t *testing.T) {
	t.Parallel()
	l := event.NewLine(store.LogEntry{TaskID: "t", Seq: 7})
	builds := 0
	build := func(e store.LogEntry) any { builds++; return &message{seq: e.Seq} }
	var wg sync.WaitGroup
	got := make([]any, 50)
	for i := range got {
		wg.Go(func() { got[i] = l.Shared(build) })
	}
	wg.Wait()
	for _, m := range got {
		if m != got[0] {
			t.Fatalf("subscribers got different messages: %p and %p", m, got[0])
		}
	}
	if builds != 1 || got[0].(*message).seq != 7 {
		t.Fatalf("built %d times, message %+v; want once, seq 7", builds, got[0])
	}
	if found, ok := event.SharedLine(got[0]); !ok || found != l {
		t.Fatalf("SharedLine = %p, %v; want the line", found, ok)
	}
	if _, ok := event.SharedLine(&message{seq: 7}); ok {
		t.Fatal("SharedLine found an equal message that no line made")
	}

	// Only the message is kept now: the line goes, and so does its entry.
	m := got[0]
	l, got = nil, nil
	deadline := time.Now().Add(time.Minute) // cleanups run soon after a collection
	if d, ok := t.Deadline(); ok && d.Add(-5*time.Second).Before(deadline) {
		deadline = d.Add(-5 * time.Second)
	}
	for {
		runtime.GC()
		if _, ok := event.SharedLine(m); !ok && event.SharedEntries() == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the registry still holds %d entries for lines nothing holds", event.SharedEntries())
		}
		time.Sleep(10 * time.Millisecond)
	}
	runtime.KeepAlive(l)
}
