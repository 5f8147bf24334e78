package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// openers is how many streams are being opened at once.
const openers = 32

// streamResult is the resident-set cost of idle streams on one server.
type streamResult struct {
	Streams      int     `json:"streams"`
	RSSBeforeKiB int64   `json:"rss_before_kib"`
	RSSAfterKiB  int64   `json:"rss_after_kib"`
	KiBPerStream float64 `json:"kib_per_stream"`
	OpenSeconds  float64 `json:"open_seconds"`
}

// opener opens one stream and returns once the server holds it; the
// closer it returns ends it.
type opener func(ctx context.Context) (closer func(), err error)

// idleStreams opens k streams with open, reads pid's resident set before
// and after (once it has settled), calls whileOpen (if not nil), and
// closes them all again.
func idleStreams(ctx context.Context, pid, k int, open opener, whileOpen func(context.Context) error) (streamResult, error) {
	before, err := settledRSS(ctx, pid)
	if err != nil {
		return streamResult{}, err
	}
	closers := make([]func(), k)
	defer closeAll(closers)
	start := time.Now()
	if err := openAll(ctx, closers, open); err != nil {
		return streamResult{}, err
	}
	opened := time.Since(start)
	after, err := settledRSS(ctx, pid)
	if err != nil {
		return streamResult{}, err
	}
	if whileOpen != nil {
		if err := whileOpen(ctx); err != nil {
			return streamResult{}, err
		}
	}
	return streamResult{
		Streams: k, RSSBeforeKiB: before >> 10, RSSAfterKiB: after >> 10,
		KiBPerStream: float64(after-before) / 1024 / float64(k),
		OpenSeconds:  opened.Seconds(),
	}, nil
}

// openAll fills closers with streams opened by openers goroutines; it
// stops at the first failure. The streams live on ctx, not on a context of
// openAll's own: they must outlast it.
func openAll(ctx context.Context, closers []func(), open opener) error {
	var next atomic.Int64
	var failed atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan error, openers)
	for range openers {
		wg.Go(func() {
			for ctx.Err() == nil && !failed.Load() {
				i := int(next.Add(1)) - 1
				if i >= len(closers) {
					return
				}
				c, err := openWithin(ctx, open, openTimeout)
				if err != nil {
					errs <- fmt.Errorf("stream %d of %d: %w", i+1, len(closers), err)
					failed.Store(true)
					return
				}
				closers[i] = c
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err // the first; the others failed alike
	}
	return ctx.Err()
}

// openTimeout bounds the opening of one stream: a server that takes
// longer fails the run instead of holding it.
const openTimeout = time.Minute

// openWithin opens a stream with open on a context of its own, which it
// cancels if the stream is not open within d, or when the stream closes.
func openWithin(ctx context.Context, open opener, d time.Duration) (func(), error) {
	sctx, cancel := context.WithCancel(ctx)
	timer := time.AfterFunc(d, cancel)
	c, err := open(sctx)
	if !timer.Stop() { // it fired: whatever open returned is cancelled
		if err == nil {
			c()
		}
		cancel()
		return nil, fmt.Errorf("not open within %s", d)
	}
	if err != nil {
		cancel()
		return nil, err
	}
	return func() { c(); cancel() }, nil
}

// closeAll ends every stream that was opened, a few at a time.
func closeAll(closers []func()) {
	var wg sync.WaitGroup
	var next atomic.Int64
	for range openers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(closers) {
					return
				}
				if closers[i] != nil {
					closers[i]()
				}
			}
		})
	}
	wg.Wait()
}

// settledRSS reads pid's resident set every 250 ms until two readings in
// a row differ by under 1% (or 5 s pass), and returns the last.
func settledRSS(ctx context.Context, pid int) (int64, error) {
	last, err := rss(pid)
	if err != nil {
		return 0, err
	}
	for range 20 {
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
		now, err := rss(pid)
		if err != nil {
			return 0, err
		}
		if diff := now - last; diff*100 < now && -diff*100 < now {
			return now, nil
		}
		last = now
	}
	return last, nil
}

// errStatus is an answer that is not 200.
var errStatus = errors.New("unexpected status")
