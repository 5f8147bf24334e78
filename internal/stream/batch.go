package stream

import (
	"context"
	"net/http"
)

// Batch is a ResponseWriter whose flushes a stream's handler gathers into
// one per batch. connect-go flushes its ResponseWriter after every message
// of a server stream; a follower that sends fifty lines after one wake-up
// would make fifty flushes (fifty HTTP/2 DATA frames or HTTP/1.1 chunks,
// fifty writes to the socket). Between Hold and Release, Flush only notes
// that something waits; Commit, which the follower's Loop.Flush calls
// before it waits, flushes it once.
//
// A Batch is used by the handler's goroutine alone: connect-go writes and
// flushes a stream on the goroutine that runs its handler. Its methods do
// nothing on a nil Batch, so a handler served without the middleware that
// makes one (Batched) flushes as connect-go does.
type Batch struct {
	http.ResponseWriter
	holding bool // between Hold and Release
	pending bool // a flush was asked for while holding
}

type batchKey struct{}

// Batched wraps w in a Batch and returns it with r carrying it, for
// BatchFrom: the middleware in front of a server stream's handler calls it.
func Batched(w http.ResponseWriter, r *http.Request) (*Batch, *http.Request) {
	b := &Batch{ResponseWriter: w}
	return b, r.WithContext(context.WithValue(r.Context(), batchKey{}, b))
}

// BatchFrom returns the request's Batch, or nil when it has none.
func BatchFrom(ctx context.Context) *Batch {
	b, _ := ctx.Value(batchKey{}).(*Batch)
	return b
}

// Hold starts gathering flushes: until Release, Flush flushes nothing.
func (b *Batch) Hold() {
	if b != nil {
		b.holding = true
	}
}

// Commit flushes what was written since the last flush, if a flush was
// asked for, and keeps holding. It is a Loop's Flush; its error is the
// flush's, when the writer below reports one (FlushError).
func (b *Batch) Commit() error {
	if b == nil || !b.pending {
		return nil
	}
	b.pending = false
	return b.flush()
}

// Release flushes what waits and stops holding: what the handler's caller
// writes after it (connect-go's end of the stream, an error) is flushed as
// it comes.
func (b *Batch) Release() {
	if b != nil {
		_ = b.Commit()
		b.holding = false
	}
}

// Flush implements http.Flusher: it flushes now, or at the next Commit
// while the handler holds.
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
