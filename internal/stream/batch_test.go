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

// TestBatch: a Batch flushes as asked until its handler takes it; then
// only at Commit, and only if a flush was asked for since the last one. A
// request without one (TakeBatch gives nil) is served as before.
func TestBatch(t *testing.T) {
	t.Parallel()
	below := &flushCounter{ResponseRecorder: httptest.NewRecorder()}
	b, r := stream.Batched(below, httptest.NewRequest(http.MethodPost, "/", nil))
	var w http.ResponseWriter = b
	w.(http.Flusher).Flush()
	if below.flushes != 1 {
		t.Fatalf("%d flushes before the Batch was taken, want 1", below.flushes)
	}

	if stream.TakeBatch(r.Context()) != b {
		t.Fatal("the request does not carry its Batch")
	}
	for range 50 {
		_, _ = w.Write([]byte("line\n"))
		w.(http.Flusher).Flush()
	}
	if below.flushes != 1 {
		t.Fatalf("%d flushes while taken, want none past the first", below.flushes)
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
	if below.Body.Len() != 50*len("line\n") {
		t.Fatalf("wrote %d bytes", below.Body.Len())
	}
	if b.Unwrap() != below { // for http.ResponseController's deadlines
		t.Fatal("Unwrap does not return the writer below")
	}

	none := stream.TakeBatch(httptest.NewRequest(http.MethodPost, "/", nil).Context())
	if none != nil {
		t.Fatal("a plain request has a Batch")
	}
	if err := none.Commit(); err != nil {
		t.Fatal(err)
	}
}
