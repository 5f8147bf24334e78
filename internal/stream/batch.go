package stream

import (
	"context"
	"net/http"
)

// Batch is a ResponseWriter whose flushes a stream's handler gathers into
// one per batch. connect-go flushes its ResponseWriter after every message
// of a server stream; a follower that sends fifty lines after one wake-up
// would make fifty flushes (fifty HTTP/2 DATA frames or HTTP/1.1 chunks,
// fifty writes to the socket). Once the handler takes its Batch
// (TakeBatch), Flush only notes that something waits, and Commit, which
// the follower's Loop.Flush calls before it waits, flushes it once. What
// is written after the handler returns (connect-go's end of the stream,
// an error) is flushed by net/http, which flushes every response when its
// handler returns.
//
// A Batch is used by the handler's goroutine alone: connect-go writes and
// flushes a stream on the goroutine that runs its handler. Until it is
// taken, or when its handler never takes it (gRPC health's Watch), it
// flushes as asked. Its methods do nothing on a nil Batch, so a handler
// served without the middleware that makes one (Batched) flushes as
// connect-go does.
type Batch struct {
	http.ResponseWriter
	holding bool // taken: Flush waits for Commit
	pending bool // a flush was asked for while holding
}

type batchKey struct{}

// Batched wraps w in a Batch and returns it with r carrying it, for
// TakeBatch: the middleware in front of a server stream's handler calls it.
func Batched(w http.ResponseWriter, r *http.Request) (*Batch, *http.Request) {
	b := &Batch{ResponseWriter: w}
	return b, r.WithContext(context.WithValue(r.Context(), batchKey{}, b))
}

// TakeBatch returns the request's Batch, or nil when it has none, and
// from then on gathers its flushes: Flush flushes nothing until Commit.
func TakeBatch(ctx context.Context) *Batch {
	b, _ := ctx.Value(batchKey{}).(*Batch)
	if b != nil {
		b.holding = true
	}
	return b
}

// Commit flushes what was written since the last flush, if a flush was
// asked for. It is a Loop's Flush; its error is the flush's, when the
// writer below reports one (FlushError).
func (b *Batch) Commit() error {
	if b == nil || !b.pending {
		return nil
	}
	b.pending = false
	return b.flush()
}

// Flush implements http.Flusher: it flushes now, or at the next Commit
// once the handler took the Batch.
func (b *Batch) Flush() {
	if b.holding {
		b.pending = true
		return
	}
	_ = b.flush() // as http.Flusher's: a failed flush shows in the next write
}

func (b *Batch) flush() error {
	switch f := b.ResponseWriter.(type) {
	case interface{ FlushError() error }:
		return f.FlushError()
	case http.Flusher:
		f.Flush()
	}
	return nil
}

// Unwrap returns the wrapped ResponseWriter, for http.ResponseController.
func (b *Batch) Unwrap() http.ResponseWriter { return b.ResponseWriter }
