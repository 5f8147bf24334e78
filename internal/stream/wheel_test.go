package stream_test

import (
	"testing"
	"time"

	"github.com/berthhq/berth/internal/stream"
)

// TestWheel: every timer of a wheel fires, again and again, each with at
// most one signal pending; a stopped timer fires no more.
func TestWheel(t *testing.T) {
	t.Parallel()
	w := stream.NewWheel(40 * time.Millisecond)
	timers := make([]*stream.Timer, 50)
	for i := range timers {
		timers[i] = w.Start()
	}
	for round := range 3 {
		for i, tm := range timers {
			select {
			case <-tm.C:
			case <-t.Context().Done():
				t.Fatalf("round %d: timer %d never fired", round, i)
			}
		}
	}
	stopped := timers[0]
	stopped.Stop()
	stopped.Stop() // twice is safe
	select {       // drain a signal sent before the stop
	case <-stopped.C:
	default:
	}
	// Two more rounds of a live timer: the stopped one got nothing.
	for range 2 {
		<-timers[1].C
	}
	select {
	case <-stopped.C:
		t.Error("a stopped timer fired")
	default:
	}
	for _, tm := range timers[1:] {
		tm.Stop()
	}
	// A wheel whose timers all stopped starts again with the next.
	again := w.Start()
	defer again.Stop()
	<-again.C
}

// TestWheelFunc: a function timer is called every period until stopped.
func TestWheelFunc(t *testing.T) {
	t.Parallel()
	w := stream.NewWheel(40 * time.Millisecond)
	calls := make(chan struct{}, 10)
	tm := w.StartFunc(func() {
		select {
		case calls <- struct{}{}:
		default:
		}
	})
	for range 3 {
		select {
		case <-calls:
		case <-t.Context().Done():
			t.Fatal("the function was never called")
		}
	}
	tm.Stop()
	for len(calls) > 0 {
		<-calls
	}
	keep := w.Start() // keeps the wheel turning
	defer keep.Stop()
	<-keep.C
	<-keep.C
	if len(calls) > 0 {
		t.Error("a stopped function timer was called")
	}
}
