package auth

import (
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/berthhq/berth/internal/fault"
)

// ThrottledError is a sign-in refused because the account has failed too
// often lately: Free failures were allowed, and the next attempt is checked
// only after Wait. The server answers it like a rate limit of the failed
// sign-ins to the account (429 / ResourceExhausted with Retry-After and
// RateLimit-* headers describing this throttle).
type ThrottledError struct {
	Free int
	Wait time.Duration
}

// Error implements error.
func (e *ThrottledError) Error() string {
	return fmt.Sprintf("too many failed sign-ins to this account; try again in %ds", max(int64(math.Ceil(e.Wait.Seconds())), 1))
}

// Unwrap returns the fault it is: ResourceExhausted, with the wait as its
// retry hint.
func (e *ThrottledError) Unwrap() error {
	return &fault.Error{Kind: fault.ErrResourceExhausted, Message: e.Error(), RetryAfter: e.Wait}
}

// throttle slows down guessing. Each key (an account, a source address)
// gets some failures free; after that every further failure doubles the time
// before the next attempt is even checked, up to a cap. Failures are
// forgotten a while after the last one.
type throttle struct {
	free   int
	base   time.Duration
	max    time.Duration
	forget time.Duration
	now    func() time.Time

	mu      sync.Mutex
	entries map[string]*throttleEntry
}

type throttleEntry struct {
	failures int
	until    time.Time // no attempt is checked before this
	last     time.Time
}

// maxThrottleEntries bounds the memory a flood of distinct keys can take;
// past it, expired entries are swept, and then the oldest go.
const maxThrottleEntries = 100_000

func newThrottle(free int, base, max, forget time.Duration, now func() time.Time) *throttle {
	return &throttle{free: free, base: base, max: max, forget: forget, now: now, entries: make(map[string]*throttleEntry)}
}

// wait returns how long key must still wait before an attempt is checked.
func (t *throttle) wait(key string) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.entries[key]
	if !ok {
		return 0
	}
	now := t.now()
	if now.Sub(e.last) > t.forget {
		delete(t.entries, key)
		return 0
	}
	return max(e.until.Sub(now), 0)
}

// fail records a failed attempt for key.
func (t *throttle) fail(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	e, ok := t.entries[key]
	if !ok || now.Sub(e.last) > t.forget {
		if len(t.entries) >= maxThrottleEntries {
			t.sweep(now)
		}
		e = &throttleEntry{}
		t.entries[key] = e
	}
	e.failures++
	e.last = now
	if over := e.failures - t.free; over > 0 {
		delay := t.max
		if over < 32 {
			delay = min(t.base<<(over-1), t.max)
		}
		e.until = now.Add(delay)
	}
}

// reset forgets key's failures (after a success).
func (t *throttle) reset(key string) {
	t.mu.Lock()
	delete(t.entries, key)
	t.mu.Unlock()
}

// sweep drops expired entries, and if that is not enough, the half with the
// oldest last failure.
func (t *throttle) sweep(now time.Time) {
	for k, e := range t.entries {
		if now.Sub(e.last) > t.forget {
			delete(t.entries, k)
		}
	}
	if len(t.entries) < maxThrottleEntries {
		return
	}
	cut := now.Add(-t.forget / 2)
	for k, e := range t.entries {
		if e.last.Before(cut) {
			delete(t.entries, k)
		}
	}
	if len(t.entries) >= maxThrottleEntries {
		clear(t.entries)
	}
}
