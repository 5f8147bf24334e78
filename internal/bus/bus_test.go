package bus_test

import (
	"slices"
	"sync"
	"testing"
	"time"

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

// remote records what a Bus hands to its Remote.
type remote struct {
	mu     sync.Mutex
	topics []string
	values []any
}

func (r *remote) Publish(topic string, v any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.topics = append(r.topics, topic)
	r.values = append(r.values, v)
}

func TestRemoteSeam(t *testing.T) {
	t.Parallel()
	b := bus.New()
	r := &remote{}
	b.SetRemote(r)
	sub := b.Subscribe("t", 10)
	defer sub.Close()

	b.Publish("t", 1)
	b.Deliver("t", 2) // from another instance: local subscribers only
	b.Publish("u", 3) // no subscriber here, still sent to the others
	if got := []any{<-sub.C, <-sub.C}; got[0] != 1 || got[1] != 2 {
		t.Errorf("subscriber got %v, want [1 2]", got)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !slices.Equal(r.topics, []string{"t", "u"}) || !slices.Equal(r.values, []any{1, 3}) {
		t.Errorf("remote got %v %v, want [t u] [1 3]", r.topics, r.values)
	}
	if !b.Subscribed("t") || b.Subscribed("u") {
		t.Error("Subscribed: want t only")
	}
}

func TestLagAll(t *testing.T) {
	t.Parallel()
	b := bus.New()
	idle := b.Subscribe("a", 4)
	full := b.Subscribe("b", 1)
	b.Publish("b", "queued")

	// An idle subscriber blocked on its empty queue is woken.
	woke := make(chan bool)
	go func() {
		v := <-idle.C
		_, isLag := v.(bus.Lag)
		woke <- isLag && idle.Lagged()
	}()
	b.LagAll()
	select {
	case ok := <-woke:
		if !ok {
			t.Error("idle subscriber: want a Lag value and Lagged true")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("LagAll did not wake an idle subscriber")
	}
	// A full queue keeps its events; the subscriber finds Lagged true.
	if v := <-full.C; v != "queued" || !full.Lagged() {
		t.Errorf("full subscriber got %v, lagged must be true", v)
	}
	// A second LagAll before the subscriber looked queues no second Lag.
	b.LagAll()
	b.LagAll()
	if v := <-idle.C; v != (bus.Lag{}) {
		t.Errorf("got %v, want one Lag", v)
	}
	select {
	case v := <-idle.C:
		t.Errorf("second value %v queued", v)
	default:
	}
	idle.Close()
	full.Close()
	b.LagAll() // must not panic on closed subscriptions
}
