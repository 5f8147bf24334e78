package testsvc

import (
	"runtime"
	"testing"
	"time"
)

// SettledGoroutines waits until the process's number of goroutines has
// stayed the same for a while (connections being served or torn down
// settle) and returns it. It waits until the test's deadline (two minutes
// without one), so a loaded machine slows it rather than fails it.
func SettledGoroutines(t testing.TB) int {
	t.Helper()
	end := time.Now().Add(2 * time.Minute)
	if tt, ok := t.(interface{ Deadline() (time.Time, bool) }); ok { // a *testing.T; a benchmark has none
		if d, ok := tt.Deadline(); ok {
			end = d
		}
	}
	last, same := runtime.NumGoroutine(), 0
	for same < 10 {
		if time.Now().After(end) {
			t.Fatalf("the goroutines never settled (%d)", last)
		}
		time.Sleep(20 * time.Millisecond)
		if n := runtime.NumGoroutine(); n == last {
			same++
		} else {
			last, same = n, 0
		}
	}
	return last
}
