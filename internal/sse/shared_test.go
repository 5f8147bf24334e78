package sse_test

import (
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestSharedFramesMatchReplay: the log frames live subscribers get — each
// line encoded once and the same bytes written to every one of them — are
// byte for byte the same for every live subscriber, and the frames a
// subscriber replaying the log from the store gets, each encoded for it
// alone, but for the time's fraction of a second: a live line carries the
// time as it was taken (nanoseconds), a stored one as the store keeps it
// (microseconds), as before lines were encoded once.
func TestSharedFramesMatchReplay(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	const lines = 150
	path := "/api/v1/tasks/" + r.task.ID + "/logs/stream"
	live := []*http.Response{r.get(t, path, "owner", nil), r.get(t, path, "owner", nil)}
	for _, res := range live {
		firstFrame(t, res.Body) // the running status: following
	}
	r.finish(t, lines)
	var frames [][]string
	for _, res := range append(live, r.get(t, path, "owner", nil)) {
		b, err := io.ReadAll(res.Body) // the stream ends after its end event
		if err != nil {
			t.Fatal(err)
		}
		frames = append(frames, logFrames(string(b)))
	}
	if len(frames[0]) != lines {
		t.Fatalf("a live subscriber got %d log frames, want %d", len(frames[0]), lines)
	}
	if !slices.Equal(frames[1], frames[0]) {
		t.Errorf("the live subscribers got different log frames: %q… vs %q…", frames[1][:1], frames[0][:1])
	}
	if live, replay := wholeSeconds(frames[0]), wholeSeconds(frames[2]); !slices.Equal(replay, live) {
		t.Errorf("the replay got other log frames than the live subscribers: %q… vs %q…", replay[:1], live[:1])
	}
}

// fraction is a time's fraction of a second in protojson.
var fraction = regexp.MustCompile(`(\d\d:\d\d:\d\d)\.\d+Z`)

// wholeSeconds is frames with their times' fractions of a second cut.
func wholeSeconds(frames []string) []string {
	out := make([]string, len(frames))
	for i, f := range frames {
		out[i] = fraction.ReplaceAllString(f, "${1}Z")
	}
	return out
}

// firstFrame reads body up to the end of its first event with data.
func firstFrame(t *testing.T, body io.Reader) {
	t.Helper()
	var got strings.Builder
	b := make([]byte, 1)
	for !strings.Contains(got.String(), "data:") || !strings.HasSuffix(got.String(), "\n\n") {
		if _, err := body.Read(b); err != nil {
			t.Fatalf("before the first event: %v (%q)", err, got.String())
		}
		got.Write(b)
	}
}

// logFrames is the log events of an SSE stream, each as its raw frame.
func logFrames(stream string) []string {
	var out []string
	for f := range strings.SplitSeq(stream, "\n\n") {
		if strings.Contains(f, "\nevent: log\n") {
			out = append(out, f)
		}
	}
	return out
}
