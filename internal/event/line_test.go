package event_test

import (
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/berthhq/berth/internal/event"
	"github.com/berthhq/berth/internal/store"
)

// TestLineEncodedOnce: however many subscribers ask at once, a line is
// encoded once per format, and every one of them gets those same bytes;
// each format keeps its own.
func TestLineEncodedOnce(t *testing.T) {
	t.Parallel()
	l := event.NewLine(store.LogEntry{TaskID: "t", Seq: 7, Message: "hello"})
	var calls [2]atomic.Int32
	encode := func(f event.Format) func(store.LogEntry) ([]byte, error) {
		return func(e store.LogEntry) ([]byte, error) {
			calls[f].Add(1)
			return []byte(strconv.Itoa(int(f)) + ":" + e.Message), nil
		}
	}
	const subscribers = 64
	got := make([][2][]byte, subscribers)
	var wg sync.WaitGroup
	for i := range subscribers {
		wg.Go(func() {
			for _, f := range []event.Format{event.FormatSSE, event.FormatWebSocket} {
				b, err := l.Encoded(f, encode(f))
				if err != nil {
					t.Error(err)
				}
				got[i][f] = b
			}
		})
	}
	wg.Wait()
	for f := range 2 {
		if n := calls[f].Load(); n != 1 {
			t.Errorf("format %d encoded %d times, want once", f, n)
		}
	}
	for i := range got {
		if string(got[i][0]) != "0:hello" || string(got[i][1]) != "1:hello" || &got[i][0][0] != &got[0][0][0] {
			t.Fatalf("subscriber %d got %q, %q (not the shared bytes)", i, got[i][0], got[i][1])
		}
	}
}
