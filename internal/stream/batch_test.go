package stream_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/berthhq/berth/internal/stream"
)

// flushCounter counts the flushes that reach the writer below a Batch.
type flushCounter struct {
	*httptest.ResponseRecorder
	flushes int
}

func (f *flushCounter) Flush() { f.flushes++ }

// TestBatch: between Hold and Release a Batch flushes only at Commit, and
// only if a flush was asked for; outside them it flushes as asked; a
// handler without one (BatchFrom of a plain request is nil) is served as
// before.
func TestBatch(t *testing.T) {
	t.Parallel()
	below := &flushCounter{ResponseRecorder: httptest.NewRecorder()}
	b, r := stream.Batched(below, httptest.NewRequest(http.MethodPost, "/", nil))
	if stream.BatchFrom(r.Context()) != b {
		t.Fatal("the request does not carry its Batch")
	}
	var w http.ResponseWriter = b
	w.(http.Flusher).Flush()
	if below.flushes != 1 {
		t.Fatalf("%d flushes before Hold, want 1", below.flushes)
	}

	b.Hold()
	for range 50 {
		_, _ = w.Write([]byte("line\n"))
		w.(http.Flusher).Flush()
	}
	if below.flushes != 1 {
		t.Fatalf("%d flushes while holding, want none past the first", below.flushes)
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(); err != nil { // nothing new: no flush
		t.Fatal(err)
	}
	if below.flushes != 2 {
		t.Fatalf("%d flushes after two commits of one batch, want 2", below.flushes)
	}
	w.(http.Flusher).Flush()
	b.Release() // flushes what waits
	if below.flushes != 3 {
		t.Fatalf("%d flushes after Release, want 3", below.flushes)
	}
	w.(http.Flusher).Flush() // after Release, as asked
	if below.flushes != 4 {
		t.Fatalf("%d flushes after a flush past Release, want 4", below.flushes)
	}
	if below.Body.Len() != 50*len("line\n") {
		t.Fatalf("wrote %d bytes", below.Body.Len())
	}
	if b.Unwrap() != below { // for http.ResponseController's deadlines
		t.Fatal("Unwrap does not return the writer below")
	}

	none := stream.BatchFrom(httptest.NewRequest(http.MethodPost, "/", nil).Context())
	if none != nil {
		t.Fatal("a plain request has a Batch")
	}
	none.Hold()
	if err := none.Commit(); err != nil {
		t.Fatal(err)
	}
	none.Release()
}
