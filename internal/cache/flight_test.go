package cache_test

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berthhq/berth/internal/cache"
	"github.com/berthhq/berth/internal/testsvc"
)

// TestSingleFlight starts many Gets of one missing key while its load is
// held: the loader runs once and every Get returns its value. A Get that
// begins after an Invalidate of the key does not join the load in
// progress: it loads the new value itself.
func TestSingleFlight(t *testing.T) {
	t.Parallel()
	r := testsvc.StartRedis(t)
	for _, mode := range []string{"local", "valkey"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			var c *cache.Cache
			if mode == "local" {
				c = newCache(t, "flight", nil, cache.Options{})
			} else {
				// A window far above any PING on a loaded machine: a read
				// whose lease ran out bypasses the cache (and any shared
				// load) by design, which is not what this test is about.
				c = newCache(t, "flight", openValkeyWindow(t, r.URL(), time.Second), cache.Options{})
			}
			const readers = 32
			var calls atomic.Int64
			release := make(chan struct{})
			held := func(ctx context.Context) ([]byte, error) {
				calls.Add(1)
				select {
				case <-release:
				case <-ctx.Done():
					return nil, ctx.Err()
				}
				return []byte("1"), nil
			}
			var wg sync.WaitGroup
			got := make([]string, readers)
			errs := make([]error, readers)
			for i := range readers {
				wg.Go(func() {
					v, err := c.Get(t.Context(), "k", held)
					got[i], errs[i] = string(v), err
				})
			}
			// Every reader has missed (a reader counts its miss before it
			// loads or joins the load).
			waitFor(t, "every reader to miss", func() bool { _, m := c.Stats(); return m == readers })

			// A write meanwhile: the next Get must not join the old load.
			c.Invalidate(t.Context(), "k")
			v, err := c.Get(t.Context(), "k", func(context.Context) ([]byte, error) {
				calls.Add(1)
				return []byte("2"), nil
			})
			if err != nil || string(v) != "2" {
				t.Errorf("Get after Invalidate: %q, %v; want the new value 2", v, err)
			}

			close(release)
			wg.Wait()
			for i := range readers {
				if errs[i] != nil || got[i] != "1" {
					t.Errorf("reader %d: %q, %v; want 1", i, got[i], errs[i])
				}
			}
			if n := calls.Load(); n != 2 {
				t.Errorf("the loader ran %d times; want 2 (once for the %d concurrent readers, once after the invalidation)", n, readers)
			}
		})
	}
}

// TestSingleFlightLeaderCancelled: a Get that joined a load whose own
// caller gave up loads for itself instead of failing with that caller's
// cancellation.
func TestSingleFlightLeaderCancelled(t *testing.T) {
	t.Parallel()
	c := newCache(t, "cancel", nil, cache.Options{})
	leaderCtx, cancel := context.WithCancel(t.Context())
	started := make(chan struct{})
	leaderDone := make(chan error, 1)
	go func() {
		_, err := c.Get(leaderCtx, "k", func(ctx context.Context) ([]byte, error) {
			close(started)
			<-ctx.Done()
			return nil, ctx.Err()
		})
		leaderDone <- err
	}()
	<-started
	var calls atomic.Int64
	joined := make(chan []byte, 1)
	go func() {
		v, err := c.Get(t.Context(), "k", func(context.Context) ([]byte, error) {
			return []byte(strconv.FormatInt(calls.Add(1), 10)), nil
		})
		if err != nil {
			t.Error(err)
		}
		joined <- v
	}()
	waitFor(t, "the second reader to join", func() bool { _, m := c.Stats(); return m == 2 })
	cancel()
	if err := <-leaderDone; err == nil {
		t.Error("the cancelled leader got no error")
	}
	if v := <-joined; string(v) != "1" {
		t.Errorf("the joined reader got %q; want its own load's 1", v)
	}
}
