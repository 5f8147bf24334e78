package cache

import (
	"context"
	"errors"
	"sync"
)

// flight is one load in progress: the Gets that miss the same key while it
// runs wait for it instead of calling the loader again (single-flight).
type flight struct {
	done chan struct{} // closed when val and err are set
	val  []byte
	err  error
}

func newFlight() *flight { return &flight{done: make(chan struct{})} }

// finish records the load's outcome and releases the waiters.
func (f *flight) finish(v []byte, err error) {
	f.val, f.err = v, err
	close(f.done)
}

// wait returns the load's outcome, or ctx's error if ctx ends first. ok is
// false when the load ended only because its own caller's context did
// while ctx still holds: the waiter then loads for itself rather than
// inherit another request's cancellation.
func (f *flight) wait(ctx context.Context) (v []byte, ok bool, err error) {
	select {
	case <-ctx.Done():
		return nil, true, ctx.Err()
	case <-f.done:
	}
	if f.err != nil && ctx.Err() == nil && (errors.Is(f.err, context.Canceled) || errors.Is(f.err, context.DeadlineExceeded)) {
		return nil, false, nil
	}
	return f.val, true, f.err
}

// flights are the loads in progress of the Valkey mode, by the key and the
// generation read before loading: a Get joins a load only if it read the
// same generation, so a load that began before an invalidation (on any
// instance) is never joined by a Get that began after it.
type flights struct {
	mu sync.Mutex
	m  map[string]*flight
}

// join returns the flight of id, and whether the caller leads it (and must
// call done when its load ends).
func (fs *flights) join(id string) (f *flight, lead bool) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if f, ok := fs.m[id]; ok {
		return f, false
	}
	if fs.m == nil {
		fs.m = make(map[string]*flight)
	}
	f = newFlight()
	fs.m[id] = f
	return f, true
}

// done ends the flight of id with the load's outcome.
func (fs *flights) done(id string, f *flight, v []byte, err error) {
	fs.mu.Lock()
	delete(fs.m, id)
	fs.mu.Unlock()
	f.finish(v, err)
}
