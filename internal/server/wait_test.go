package server_test

import (
	"testing"
	"time"
)

// within is how long a test may wait for a task: most of what is left of
// the test's deadline, so a loaded machine slows the test, not fails it.
func within(t testing.TB) time.Duration {
	dt, ok := t.(interface{ Deadline() (time.Time, bool) }) // a benchmark has none
	if !ok {
		return 5 * time.Minute
	}
	if d, ok := dt.Deadline(); ok {
		return max(time.Until(d)*3/4, 30*time.Second)
	}
	return 5 * time.Minute
}

// eventually polls check until it returns true or the wait derived from
// the test's deadline (within) passes.
func eventually(t testing.TB, what string, check func() bool) {
	t.Helper()
	wait := within(t)
	deadline := time.Now().Add(wait)
	for !check() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", wait, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
