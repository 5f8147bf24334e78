package auth

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/berthhq/berth/internal/fault"
)

// TestHashSlots: the budget over 38 MiB, at most the CPUs, at least one.
func TestHashSlots(t *testing.T) {
	t.Parallel()
	cpus := runtime.GOMAXPROCS(0)
	for budget, want := range map[int64]int{0: 1, 37: 1, 38: 1, 76: min(2, cpus), 160: min(4, cpus), 1 << 20: cpus} {
		if got := HashSlots(budget); got != want {
			t.Errorf("HashSlots(%d) = %d, want %d (%d CPUs)", budget, got, want, cpus)
		}
	}
}

// TestHashGate: with every slot taken, a hash waits up to the gate's wait
// and is then refused as busy (Unavailable, with a retry hint), or gives up
// with its context; once the slot is free, hashes run again.
func TestHashGate(t *testing.T) {
	t.Parallel()
	g := &hashGate{slots: make(chan struct{}, 1), wait: 50 * time.Millisecond}
	holding, release := make(chan struct{}), make(chan struct{})
	done := make(chan error)
	go func() {
		done <- g.run(t.Context(), g.wait, func() { close(holding); <-release })
	}()
	<-holding

	ran := false
	err := g.run(t.Context(), g.wait, func() { ran = true })
	if !errors.Is(err, errHashBusy) || !errors.Is(err, fault.ErrUnavailable) || ran {
		t.Fatalf("with the slot taken: %v (ran %v), want errHashBusy", err, ran)
	}
	if f, ok := errors.AsType[*fault.Error](err); !ok || f.RetryAfter <= 0 {
		t.Errorf("busy answer %v has no retry hint", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := g.run(ctx, -1, func() { ran = true }); !errors.Is(err, context.Canceled) || ran {
		t.Fatalf("with a cancelled context: %v (ran %v)", err, ran)
	}

	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := g.run(t.Context(), g.wait, func() { ran = true }); err != nil || !ran {
		t.Fatalf("with the slot free: %v (ran %v)", err, ran)
	}
}
