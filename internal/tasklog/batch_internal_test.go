package tasklog

import (
	"strings"
	"testing"

	"github.com/berthhq/berth/internal/store"
)

// TestBatchLen: a batch stops at maxBatch entries or once its messages
// pass maxBatchBytes, and always takes at least one entry, however large.
func TestBatchLen(t *testing.T) {
	t.Parallel()
	entries := func(n, size int) []store.LogEntry {
		out := make([]store.LogEntry, n)
		for i := range out {
			out[i].Message = strings.Repeat("x", size)
		}
		return out
	}
	for _, c := range []struct {
		name string
		buf  []store.LogEntry
		want int
	}{
		{"one", entries(1, 10), 1},
		{"under both caps", entries(300, 100), 300},
		{"lines cap", entries(maxBatch+5, 10), maxBatch},
		{"bytes cap", entries(10, maxBatchBytes/4), 4},
		{"one entry over the bytes cap", entries(3, maxBatchBytes+1), 1},
	} {
		if got := batchLen(c.buf); got != c.want {
			t.Errorf("%s: batchLen = %d, want %d", c.name, got, c.want)
		}
	}
}
