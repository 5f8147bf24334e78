package auth

import (
	"context"
	"runtime"
	"time"

	"github.com/berthhq/berth/internal/fault"
)

// hashWait is how long a password hash waits for a free slot before its
// caller is told to come back: long enough to ride out a burst of honest
// sign-ins, short enough that a flood cannot pile up waiting requests.
const hashWait = 2 * time.Second

// hashRetryAfter is the wait suggested to a caller refused for lack of a
// slot.
const hashRetryAfter = 2 * time.Second

// hashCostMiB is what one argon2id hash is counted as against the budget:
// its 19 MiB, twice. The buffer is garbage the moment the hash ends, but
// the Go collector lets garbage grow to the size of the live heap before it
// runs (GOGC=100), so each hash in flight stands for about twice its
// buffer. Measured with `berth serve` and 200 concurrent Register/Login
// calls: 13 hashes at once peaked at 562 MB RSS, 6 at 359 MB, 3 at 200 MB
// (74 MB before the flood).
const hashCostMiB = 2 * argonMemoryKiB / 1024

// HashSlots is how many password hashes run at once for a budget of
// budgetMiB: the budget over hashCostMiB, but never more than the CPUs Go
// may use — a hash is CPU-bound on one core, so a hash beyond them would
// only hold its memory while it waits for a core — and at least one.
func HashSlots(budgetMiB int64) int {
	return max(min(int(budgetMiB/hashCostMiB), runtime.GOMAXPROCS(0)), 1)
}

// errHashBusy is the answer when every hashing slot stayed taken for
// hashWait: the server is busy, not the caller wrong, so it is Unavailable
// with a retry hint rather than a rate limit.
var errHashBusy = &fault.Error{
	Kind:       fault.ErrUnavailable,
	Message:    "the server is busy checking passwords; retry in a few seconds",
	RetryAfter: hashRetryAfter,
}

// hashGate bounds the memory password hashing takes: argon2id needs 19 MiB
// per hash, so without a bound a flood of Register or Login calls (from no
// account at all) turns into gigabytes. Each hash holds a slot; callers
// beyond the slots wait up to hashWait (or their context), then get
// errHashBusy.
type hashGate struct {
	slots chan struct{}
	wait  time.Duration
}

// newHashGate returns a gate for budgetMiB of hashing memory, with
// HashSlots slots.
func newHashGate(budgetMiB int64) *hashGate {
	return &hashGate{slots: make(chan struct{}, HashSlots(budgetMiB)), wait: hashWait}
}

// run runs f, which hashes once, in a slot. It waits up to wait for one
// (forever when wait is negative) and returns errHashBusy, or ctx's error,
// if none came.
func (g *hashGate) run(ctx context.Context, wait time.Duration, f func()) error {
	select {
	case g.slots <- struct{}{}:
	default:
		var timeout <-chan time.Time
		if wait >= 0 {
			t := time.NewTimer(wait)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case g.slots <- struct{}{}:
		case <-timeout:
			return errHashBusy
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	defer func() { <-g.slots }()
	f()
	return nil
}

// hash is HashPassword in a slot.
func (g *hashGate) hash(ctx context.Context, password string) (string, error) {
	var (
		h   string
		err error
	)
	if gerr := g.run(ctx, g.wait, func() { h, err = HashPassword(password) }); gerr != nil {
		return "", gerr
	}
	return h, err
}

// verify is VerifyPassword in a slot.
func (g *hashGate) verify(ctx context.Context, hash, password string) (bool, error) {
	var (
		ok  bool
		err error
	)
	if gerr := g.run(ctx, g.wait, func() { ok, err = VerifyPassword(hash, password) }); gerr != nil {
		return false, gerr
	}
	return ok, err
}
