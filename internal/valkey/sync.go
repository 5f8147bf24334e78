package valkey

import (
	"context"
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// ErrNotSynced is Sync's error when the client could not complete a round
// trip to Valkey within its SyncWindow: locally cached values must not be
// served.
var ErrNotSynced = errors.New("valkey: no round trip within the sync window")

// syncState is the lease that lets a client serve cached values without a
// round trip (see Sync).
type syncState struct {
	window time.Duration
	start  time.Time    // the origin of the monotonic times below
	synced atomic.Int64 // send time of the latest PING answered, in ns since start

	refreshing atomic.Bool // a background refresh is under way

	mu     sync.Mutex
	flight *syncFlight // the synchronous refresh under way, shared
}

// syncFlight is one synchronous refresh, waited for by every Sync that
// needs it.
type syncFlight struct {
	done chan struct{}
	err  error
}

// init starts a lease that has never been renewed.
func (s *syncState) init(window time.Duration) {
	s.window = window
	s.start = time.Now()
	s.synced.Store(math.MinInt64 / 2)
}

// now is the monotonic time since s.start.
func (s *syncState) now() int64 { return int64(time.Since(s.start)) }

// Sync returns nil when this client may serve a value from its client-side
// cache without a round trip, and ErrNotSynced (or the round trip's error)
// when it may not.
//
// Valkey sends an invalidation to every client caching a key when the key
// is written, but it travels on its own: a client may read its local copy
// after the writer's DEL has returned and before the invalidation arrived
// (measured: about half of such immediate reads on loopback). The order on
// one connection closes that gap: a reply comes after every invalidation
// Valkey sent on that connection before executing the command, and the
// client applies invalidations as it reads them. So once a PING sent at
// time s is answered, every write executed before s is reflected locally.
//
// Sync holds a lease on that: it succeeds while the last answered PING was
// sent less than SyncWindow ago, renews the lease in the background after
// half the window, and renews it in place (one PING shared by concurrent
// callers) once the window has passed. A writer calls Settle after its
// DEL: when Settle returns, any Sync that succeeds, on any client, renewed
// its lease with a PING sent after the DEL. This costs at most one PING
// per half window per busy client, and a wait of SyncWindow per write.
func (c *Client) Sync(ctx context.Context) error {
	s := &c.sync
	age := s.now() - s.synced.Load()
	switch {
	case age < int64(s.window/2):
		return nil
	case age < int64(s.window):
		if s.refreshing.CompareAndSwap(false, true) {
			// #nosec G118 -- a refresh shared by every caller outlives each one; bounded by HealthTimeout
			go func() {
				defer s.refreshing.Store(false)
				ctx, cancel := context.WithTimeout(context.Background(), c.opts.HealthTimeout)
				defer cancel()
				if err := c.ping(ctx); err != nil {
					c.ReportFailure(context.Background(), err)
				}
			}()
		}
		return nil
	}
	if err := c.syncNow(ctx); err != nil {
		return err
	}
	if s.now()-s.synced.Load() >= int64(s.window) {
		// The PING took longer than the window: the lease it renewed
		// has run out already.
		return ErrNotSynced
	}
	return nil
}

// syncNow PINGs, or waits for the PING another caller sent, and returns
// its error.
func (c *Client) syncNow(ctx context.Context) error {
	s := &c.sync
	s.mu.Lock()
	if f := s.flight; f != nil {
		s.mu.Unlock()
		select {
		case <-f.done:
			return f.err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	f := &syncFlight{done: make(chan struct{})}
	s.flight = f
	s.mu.Unlock()

	// The PING must not end with one impatient caller: others wait for it.
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.opts.HealthTimeout)
	f.err = c.ping(pctx)
	cancel()
	if f.err != nil {
		c.ReportFailure(context.Background(), f.err)
	}
	s.mu.Lock()
	s.flight = nil
	s.mu.Unlock()
	close(f.done)
	return f.err
}

// ping sends PING and, when it is answered, renews the lease from the time
// it was sent.
func (c *Client) ping(ctx context.Context) error {
	s := &c.sync
	sent := s.now()
	if err := c.vk.Do(ctx, c.vk.B().Ping().Build()).Error(); err != nil {
		return err
	}
	for {
		old := s.synced.Load()
		if old >= sent || s.synced.CompareAndSwap(old, sent) {
			return nil
		}
	}
}

// Settle waits SyncWindow. A writer calls it after its DEL (or other write)
// was answered and before it reports the write done: after that, no client
// serves a value cached before the write (see Sync).
func (c *Client) Settle() {
	time.Sleep(c.sync.window)
}

// SyncWindow is the client's coherence window (Options.SyncWindow).
func (c *Client) SyncWindow() time.Duration { return c.sync.window }
