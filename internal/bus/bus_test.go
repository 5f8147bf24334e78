package bus_test

import (
	"testing"

	"github.com/berthhq/berth/internal/bus"
)

func TestBoundedFanOut(t *testing.T) {
	t.Parallel()
	b := bus.New()
	fast := b.Subscribe("t", 10)
	slow := b.Subscribe("t", 2)
	other := b.Subscribe("u", 10)
	for i := range 5 {
		b.Publish("t", i)
	}
	for i := range 5 {
		if got := <-fast.C; got != i {
			t.Fatalf("fast got %v, want %d", got, i)
		}
	}
	if fast.Lagged() {
		t.Error("fast subscriber marked lagged")
	}
	if got := []any{<-slow.C, <-slow.C}; got[0] != 0 || got[1] != 1 {
		t.Errorf("slow got %v", got)
	}
	if !slow.Lagged() || slow.Lagged() {
		t.Error("slow subscriber: Lagged must report once")
	}
	select {
	case v := <-other.C:
		t.Errorf("other topic received %v", v)
	default:
	}
	slow.Close()
	slow.Close()
	if _, ok := <-slow.C; ok {
		t.Error("closed subscription still delivers")
	}
	b.Publish("t", 99) // must not panic on the closed subscriber
	if got := <-fast.C; got != 99 {
		t.Errorf("fast got %v", got)
	}
}
