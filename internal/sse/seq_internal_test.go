package sse

import (
	"strconv"
	"strings"
	"testing"

	"github.com/berthhq/berth/internal/stream"
)

// FuzzSeq: a since query value or Last-Event-ID is either refused, or a
// seq from 0 after which the stream resumes at a positive seq (no
// overflow: a seq of 9223372036854775807 once replayed the whole log), and
// which is the number the client wrote: its decimal form reads back as the
// same seq, and the input is that form with at most a sign and leading
// zeros in front. The end event's id is never a seq.
func FuzzSeq(f *testing.F) {
	for _, s := range []string{
		"", "0", "1", "41", "007", "+5", "-0", "-1", " 1", "1 ", "1\n", "0x10", "1e3", "1.0", "١",
		endID, "END", "end\n", "null", "NaN", "∞",
		"9223372036854775806", "9223372036854775807", "9223372036854775808", "-9223372036854775808",
		"99999999999999999999999999999", strings.Repeat("9", 4096), "\x00", "\xff",
	} {
		f.Add(s)
	}
	if _, err := seq(endID); err == nil {
		f.Fatalf("seq(%q) is a number: the end's id would resume a stream", endID)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := seq(s)
		if err != nil {
			if n != 0 {
				t.Fatalf("seq(%q) = %d with error %v", s, n, err)
			}
			return
		}
		if n < 0 {
			t.Fatalf("seq(%q) = %d: a seq is from 0", s, n)
		}
		if from := stream.After(n); from < 1 || from < n {
			t.Fatalf("seq(%q) = %d: the stream would resume at %d", s, n, from)
		}
		canon := strconv.FormatInt(n, 10)
		if back, err := seq(canon); err != nil || back != n {
			t.Fatalf("seq(%q) = %d, but seq(%q) = %d, %v", s, n, canon, back, err)
		}
		// The input is that number, written with at most a sign and
		// leading zeros in front ("" is 0).
		digits := strings.TrimLeft(strings.TrimLeft(s, "+-"), "0")
		if digits == "" {
			digits = "0"
		}
		if digits != canon || len(s)-len(strings.TrimLeft(s, "+-")) > 1 {
			t.Fatalf("seq(%q) = %d: the input is not that number", s, n)
		}
	})
}
