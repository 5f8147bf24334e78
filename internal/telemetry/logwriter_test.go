package telemetry_test

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berthhq/berth/internal/telemetry"
)

// sink is a writer that records what it gets, one Write at a time, and can
// be held shut to play a slow disk.
type sink struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	writes int
	gate   chan struct{} // when not nil, each Write waits for a receive
	fail   error
}

func (s *sink) Write(p []byte) (int, error) {
	if s.gate != nil {
		<-s.gate
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writes++
	if s.fail != nil {
		return 0, s.fail
	}
	return s.buf.Write(p)
}

func (s *sink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// TestLogWriterKeepsEveryLineInOrder: lines from many goroutines all reach
// the sink, each goroutine's in the order it wrote them, whole, and in
// fewer writes than lines (they are grouped); a line written after Close
// comes after all of them.
func TestLogWriterKeepsEveryLineInOrder(t *testing.T) {
	t.Parallel()
	s := &sink{}
	l := telemetry.NewLogWriter(s, 4096)
	const writers, each = 8, 2000
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			for i := range each {
				if _, err := fmt.Fprintf(l, "w%d %d\n", g, i); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Write([]byte("after close\n")); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(s.String(), "\n"), "\n")
	if len(lines) != writers*each+1 || lines[len(lines)-1] != "after close" {
		t.Fatalf("%d lines, the last %q; want %d and the line written after Close", len(lines), lines[len(lines)-1], writers*each+1)
	}
	next := make([]int, writers)
	for _, line := range lines[:len(lines)-1] {
		var g, i int
		if _, err := fmt.Sscanf(line, "w%d %d", &g, &i); err != nil || g < 0 || g >= writers || i != next[g] {
			t.Fatalf("line %q out of order or torn (next of its writer: %v)", line, next)
		}
		next[g]++
	}
	if s.writes >= writers*each {
		t.Errorf("%d writes for %d lines: nothing was grouped", s.writes, writers*each)
	}
}

// TestLogWriterHoldsBackOnASlowSink: while the sink takes nothing, a
// writer can buffer up to the limit and then waits; nothing is dropped,
// and all of it arrives once the sink moves again.
func TestLogWriterHoldsBackOnASlowSink(t *testing.T) {
	t.Parallel()
	s := &sink{gate: make(chan struct{})}
	line := []byte(strings.Repeat("x", 99) + "\n")
	l := telemetry.NewLogWriter(s, 10*len(line))
	var written atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 100 {
			if _, err := l.Write(line); err != nil {
				t.Error(err)
				return
			}
			written.Add(1)
		}
	}()
	// What the writer goroutine took before the sink stuck (one line to a
	// full buffer's ten) is in the sink's blocked Write; ten more fill the
	// buffer; the writer then waits, however long the sink takes.
	deadline := time.Now().Add(time.Minute)
	if d, ok := t.Deadline(); ok {
		deadline = d
	}
	for written.Load() < 11 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	if n := written.Load(); n < 11 || n > 20 {
		t.Fatalf("%d lines accepted while the sink was stuck, want 11 to 20 (what is being written, and ten buffered)", n)
	}
	close(s.gate) // the disk wakes up
	<-done
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(s.String(), "\n"); got != 100 {
		t.Fatalf("%d lines reached the sink, want 100", got)
	}
}

// TestLogWriterReportsTheSinksError: a failing sink's error comes back
// from Close.
func TestLogWriterReportsTheSinksError(t *testing.T) {
	t.Parallel()
	broken := errors.New("disk full")
	l := telemetry.NewLogWriter(&sink{fail: broken}, 1024)
	if _, err := l.Write([]byte("lost\n")); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); !errors.Is(err, broken) {
		t.Fatalf("Close = %v, want the sink's error", err)
	}
	if err := l.Close(); !errors.Is(err, broken) {
		t.Fatalf("second Close = %v", err)
	}
}
