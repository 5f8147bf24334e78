package tasklog_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/berthhq/berth/internal/store"
	"github.com/berthhq/berth/internal/tasklog"
)

// TestMaxBytes: output far past the cap stores at most the cap's bytes,
// then one truncation line, and nothing after it; the writer says so.
func TestMaxBytes(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	tr := newTask(t, s, true)
	const limit = 10_000
	w := tasklog.NewWriter(s, nil, tr.ID, 1, tasklog.Options{MaxBytes: limit, MaxLine: 100})
	line := strings.Repeat("x", 99)
	for i := range 1000 { // 100 KB, ten times the cap
		fmt.Fprintf(w.Stdout(), "%s\n", line[:99-len(fmt.Sprint(i))]+fmt.Sprint(i))
	}
	w.Log(store.LogInfo, store.LogSystem, "after the cap", nil)
	if !w.Truncated() {
		t.Error("Truncated() = false after 100 KB under a 10 KB cap")
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got := stored(t, s, tr.ID)
	if len(got) == 0 {
		t.Fatal("nothing stored")
	}
	last := got[len(got)-1]
	if last.Source != store.LogSystem || !strings.Contains(last.Message, "log truncated") || !strings.Contains(last.Message, "10000 bytes") {
		t.Fatalf("last line = %+v, want the truncation line naming the cap", last)
	}
	var n int
	for _, e := range got[:len(got)-1] {
		n += len(e.Message)
		if strings.Contains(e.Message, "truncated") || e.Message == "after the cap" {
			t.Fatalf("line %d after the cap: %q", e.Seq, e.Message)
		}
	}
	if n > limit || n < limit-100 {
		t.Errorf("stored %d message bytes before the truncation line, want at most %d and within a line of it", n, limit)
	}
	for i, e := range got {
		if e.Seq != int64(i+1) {
			t.Fatalf("line %d has seq %d: the log must stay gapless", i, e.Seq)
		}
	}
}

// TestMaxBytesNotReached: a log under its cap is stored whole and not
// marked truncated; 0 is no cap.
func TestMaxBytesNotReached(t *testing.T) {
	t.Parallel()
	for _, limit := range []int64{0, 1000} {
		s := openStore(t)
		tr := newTask(t, s, true)
		w := tasklog.NewWriter(s, nil, tr.ID, 1, tasklog.Options{MaxBytes: limit})
		for range 10 {
			w.Log(store.LogInfo, store.LogStdout, strings.Repeat("y", 100), nil) // exactly 1000
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if w.Truncated() {
			t.Errorf("cap %d: Truncated() = true for 1000 bytes", limit)
		}
		if got := stored(t, s, tr.ID); len(got) != 10 {
			t.Errorf("cap %d: %d lines stored, want 10", limit, len(got))
		}
	}
}
