package bus_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/berthhq/berth/internal/bus"
)

// recv takes sub's next event, failing the test when none comes before its
// deadline.
func recv(t *testing.T, sub *bus.Subscription) any {
	t.Helper()
	v, err := sub.Recv(t.Context())
	if err != nil {
		t.Fatalf("Recv: %v", err)
	}
	return v
}

// empty fails the test when sub has an event queued.
func empty(t *testing.T, name string, sub *bus.Subscription) {
	t.Helper()
	if v, ok := sub.Next(); ok {
		t.Errorf("%s: unexpected %v queued", name, v)
	}
}

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
		if got := recv(t, fast); got != i {
			t.Fatalf("fast got %v, want %d", got, i)
		}
	}
	if fast.Lagged() {
		t.Error("fast subscriber marked lagged")
	}
	if got := []any{recv(t, slow), recv(t, slow)}; got[0] != 0 || got[1] != 1 {
		t.Errorf("slow got %v", got)
	}
	if !slow.Lagged() || slow.Lagged() {
		t.Error("slow subscriber: Lagged must report once")
	}
	empty(t, "other topic", other)
	slow.Close()
	slow.Close()
	if _, err := slow.Recv(t.Context()); !errors.Is(err, bus.ErrClosed) {
		t.Errorf("closed subscription: Recv = %v, want ErrClosed", err)
	}
	b.Publish("t", 99) // must not panic on the closed subscriber
	if got := recv(t, fast); got != 99 {
		t.Errorf("fast got %v", got)
	}
}

// TestTakeHandsOverTheQueue: Take returns every queued event in order and
// leaves the queue empty (an idle subscription holds nothing); the queue
// grows again with the next event; a wake-up is pending while events are
// queued.
func TestTakeHandsOverTheQueue(t *testing.T) {
	t.Parallel()
	b := bus.New()
	sub := b.Subscribe("t", 1024)
	defer sub.Close()
	if got, lagged := sub.Take(); len(got) != 0 || lagged {
		t.Fatalf("new subscription: Take = %v, %v", got, lagged)
	}
	for round := range 3 {
		n := 10 << round // past the first capacity: the queue grows
		for i := range n {
			b.Publish("t", i)
		}
		select {
		case <-sub.Ready():
		default:
			t.Fatalf("round %d: no wake-up with %d events queued", round, n)
		}
		got, lagged := sub.Take()
		if lagged || len(got) != n {
			t.Fatalf("round %d: Take = %d events, lagged %v; want %d", round, len(got), lagged, n)
		}
		for i, v := range got {
			if v != i {
				t.Fatalf("round %d: event %d is %v", round, i, v)
			}
		}
		if again, _ := sub.Take(); len(again) != 0 || cap(again) != 0 {
			t.Fatalf("round %d: the queue was not released: len %d, cap %d", round, len(again), cap(again))
		}
	}
}

// TestLagAtTheBound: a queue takes exactly its bound; the next event is
// dropped and the subscription lagged, once; what fits stays in order; and
// once taken, the queue fills again.
func TestLagAtTheBound(t *testing.T) {
	t.Parallel()
	const bound = 1024
	b := bus.New()
	sub := b.Subscribe("t", bound)
	defer sub.Close()
	for i := range bound {
		b.Publish("t", i)
	}
	if sub.Lagged() {
		t.Fatal("lagged with the queue exactly at its bound")
	}
	b.Publish("t", bound) // one past: dropped
	got, lagged := sub.Take()
	if !lagged || len(got) != bound || got[0] != 0 || got[bound-1] != bound-1 {
		t.Fatalf("Take = %d events (first %v), lagged %v; want %d, lagged", len(got), got[0], lagged, bound)
	}
	if sub.Lagged() {
		t.Error("Take must clear the lag")
	}
	b.Publish("t", "after")
	if got, lagged := sub.Take(); lagged || len(got) != 1 || got[0] != "after" {
		t.Errorf("after the catch-up: Take = %v, %v", got, lagged)
	}
}

// TestNextKeepsTheWakeUp: a reader that takes one event per wake-up still
// gets every event, and a reader taking one at a time while events keep
// coming never holds more than the bound.
func TestNextKeepsTheWakeUp(t *testing.T) {
	t.Parallel()
	b := bus.New()
	sub := b.Subscribe("t", 4)
	defer sub.Close()
	for i := range 3 {
		b.Publish("t", i)
	}
	for i := range 3 {
		select {
		case <-sub.Ready():
		default:
			t.Fatalf("no wake-up for event %d", i)
		}
		if v, ok := sub.Next(); !ok || v != i {
			t.Fatalf("Next = %v, %v; want %d", v, ok, i)
		}
	}
	// One in, one out, with three queued: the queue never passes its
	// bound, however long it goes on, and stays in order.
	for i := range 3 {
		b.Publish("t", i)
	}
	for i := range 100 {
		b.Publish("t", 3+i)
		if v, ok := sub.Next(); !ok || v != i {
			t.Fatalf("round %d: Next = %v, %v", i, v, ok)
		}
		if sub.Lagged() {
			t.Fatalf("round %d: lagged with 4 queued at most", i)
		}
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
	if got := []any{recv(t, sub), recv(t, sub)}; got[0] != 1 || got[1] != 2 {
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
	<-full.Ready()

	// An idle subscriber blocked on its empty queue is woken.
	woke := make(chan bool)
	go func() {
		<-idle.Ready()
		woke <- idle.Lagged()
	}()
	b.LagAll()
	select {
	case ok := <-woke:
		if !ok {
			t.Error("idle subscriber: want Lagged true once woken")
		}
	case <-time.After(time.Until(deadline(t))):
		t.Fatal("LagAll did not wake an idle subscriber")
	}
	// A full queue keeps its events; the subscriber finds Lagged true.
	if got, lagged := full.Take(); len(got) != 1 || got[0] != "queued" || !lagged {
		t.Errorf("full subscriber took %v, lagged %v; want [queued], true", got, lagged)
	}
	empty(t, "idle", idle)
	idle.Close()
	full.Close()
	b.LagAll() // must not panic on closed subscriptions
	if idle.Lagged() {
		t.Error("a closed subscription reports a lag")
	}
}

// TestSharedWake: subscriptions made with one wake-up channel wake one
// reader, which takes from each; closing one does not close the channel.
func TestSharedWake(t *testing.T) {
	t.Parallel()
	b := bus.New()
	wake := make(chan struct{}, 1)
	x := b.SubscribeWake("x", 10, wake)
	y := b.SubscribeWake("y", 10, wake)
	defer y.Close()
	b.Publish("x", 1)
	b.Publish("y", 2)
	<-wake
	gx, _ := x.Take()
	gy, _ := y.Take()
	if len(gx) != 1 || gx[0] != 1 || len(gy) != 1 || gy[0] != 2 {
		t.Fatalf("took %v and %v", gx, gy)
	}
	x.Close()
	b.Publish("y", 3)
	select {
	case <-wake:
	case <-time.After(time.Until(deadline(t))):
		t.Fatal("no wake-up after closing a sibling")
	}
	if v, err := y.Recv(context.Background()); err != nil || v != 3 {
		t.Errorf("Recv = %v, %v", v, err)
	}
}

// deadline is the test's deadline, or a minute from now without one.
func deadline(t *testing.T) time.Time {
	if d, ok := t.Deadline(); ok {
		return d
	}
	return time.Now().Add(time.Minute)
}

// TestPublishAll: several events published at once reach each subscriber
// in order with one wake-up, the Remote gets each, and a queue that fills
// up part way lags and keeps what fitted.
func TestPublishAll(t *testing.T) {
	t.Parallel()
	b := bus.New()
	r := &remote{}
	b.SetRemote(r)
	wide := b.Subscribe("t", 10)
	narrow := b.Subscribe("t", 2)
	b.PublishAll("t", []any{1, 2, 3})
	<-wide.Ready()
	select {
	case <-wide.Ready():
		t.Error("two wake-ups for one PublishAll")
	default:
	}
	if got, lagged := wide.Take(); lagged || !slices.Equal(got, []any{1, 2, 3}) {
		t.Errorf("wide took %v, lagged %v", got, lagged)
	}
	if got, lagged := narrow.Take(); !lagged || !slices.Equal(got, []any{1, 2}) {
		t.Errorf("narrow took %v, lagged %v; want [1 2], lagged", got, lagged)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !slices.Equal(r.values, []any{1, 2, 3}) {
		t.Errorf("remote got %v", r.values)
	}
}

// TestSubscribeFunc: a subscription with a wake-up callback is called once
// per Publish and once per PublishAll, keeps what it queued for Take in
// order, is still marked lagged at its bound and by LagAll, and is not
// called again once closed — not even by the Close itself.
func TestSubscribeFunc(t *testing.T) {
	t.Parallel()
	b := bus.New()
	var wakes int // the bus calls wake under its lock: no race on it here
	sub := b.SubscribeFunc("t", 3, func() { wakes++ })
	b.Publish("t", 1)
	b.PublishAll("t", []any{2, 3})
	b.Publish("u", 9)
	if wakes != 2 {
		t.Errorf("%d wake-ups for a Publish and a PublishAll, want 2", wakes)
	}
	if got, lagged := sub.Take(); lagged || !slices.Equal(got, []any{1, 2, 3}) {
		t.Errorf("took %v, lagged %v; want [1 2 3]", got, lagged)
	}
	b.PublishAll("t", []any{4, 5, 6, 7})
	if got, lagged := sub.Take(); !lagged || !slices.Equal(got, []any{4, 5, 6}) {
		t.Errorf("past the bound: took %v, lagged %v; want [4 5 6], lagged", got, lagged)
	}
	before := wakes
	b.LagAll()
	if lagged := sub.Lagged(); wakes != before+1 || !lagged {
		t.Errorf("LagAll: %d wake-ups, lagged %v; want 1, lagged", wakes-before, lagged)
	}
	before = wakes
	sub.Close()
	b.Publish("t", 8)
	b.LagAll()
	if wakes != before {
		t.Errorf("%d wake-ups after Close, want none", wakes-before)
	}
	if got, lagged := sub.Take(); len(got) != 0 || lagged {
		t.Errorf("a closed subscription took %v, lagged %v", got, lagged)
	}
	if b.Subscribed("t") {
		t.Error("a closed subscription is still on its topic")
	}
}
