package valkey_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/berthhq/berth/internal/bus"
	"github.com/berthhq/berth/internal/testsvc"
	"github.com/berthhq/berth/internal/valkey"
)

// intCodec encodes the test's events, ints, as JSON.
type intCodec struct{}

func (intCodec) Encode(v any) ([]byte, error) {
	n, ok := v.(int)
	if !ok {
		return nil, fmt.Errorf("not an int: %T", v)
	}
	return json.Marshal(n)
}

func (intCodec) Decode(data []byte) (any, error) {
	var n int
	err := json.Unmarshal(data, &n)
	return n, err
}

// instance is one berth instance's bus, bridged through its own client.
type instance struct {
	c   *valkey.Client
	bus *bus.Bus
}

func newInstance(t *testing.T, url string) instance {
	t.Helper()
	c := open(t, url, valkey.Options{})
	b := bus.New()
	br := valkey.NewBridge(c, b, intCodec{})
	t.Cleanup(br.Close)
	return instance{c, b}
}

// next returns the next event of sub, failing the test after 10 seconds.
func next(t *testing.T, sub *bus.Subscription) any {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	v, err := sub.Recv(ctx)
	if err != nil {
		t.Fatalf("no event within 10s: %v", err)
	}
	return v
}

// waitLinked publishes probe events on a until b's subscriber to topic
// receives one: the bridges' subscriptions are established.
func waitLinked(t *testing.T, a, b instance, topic string) {
	t.Helper()
	sub := b.bus.Subscribe(topic, 100)
	defer sub.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		a.bus.Publish(topic, -1)
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
		v, err := sub.Recv(ctx)
		cancel()
		if err == nil && v == -1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("bridges never linked")
		}
	}
}

// TestBridgeCarriesEventsInOrder publishes on instance A's bus: a subscriber
// on B receives every event in order, A's own subscriber receives each
// exactly once, and topics nobody subscribed to reach nobody.
func TestBridgeCarriesEventsInOrder(t *testing.T) {
	t.Parallel()
	r := testsvc.StartRedis(t)
	a, b := newInstance(t, r.URL()), newInstance(t, r.URL())
	waitLinked(t, a, b, "probe")

	const n = 2000
	onB := b.bus.Subscribe("task:1", n+10)
	onA := a.bus.Subscribe("task:1", n+10)
	other := b.bus.Subscribe("task:2", 10)
	for i := range n {
		a.bus.Publish("task:1", i)
	}
	for i := range n {
		if got := next(t, onB); got != i {
			t.Fatalf("B: event %d is %v", i, got)
		}
		if got := next(t, onA); got != i {
			t.Fatalf("A: event %d is %v", i, got)
		}
	}
	// One more from B to A, as a fence: once it arrived, any duplicate of
	// A's own events would have arrived too.
	b.bus.Publish("task:1", n)
	if got := next(t, onA); got != n {
		t.Fatalf("A: after its own events got %v, want %d from B (a duplicate?)", got, n)
	}
	if v, ok := onA.Next(); ok {
		t.Errorf("A: unexpected %v", v)
	}
	if v, ok := other.Next(); ok {
		t.Errorf("another topic's subscriber got %v", v)
	}

	// Cached reads share the subscribed connection and stay coherent.
	if stale, _ := staleReads(t, a.c, b.c, 200, true); stale != 0 {
		t.Errorf("%d stale cached reads on bridged clients", stale)
	}
}

// TestBridgeOutage stops the server while events flow: subscribers on both
// instances are marked lagged (they would resync from the store), nothing
// blocks the publisher, and once the server is back events flow again.
func TestBridgeOutage(t *testing.T) {
	t.Parallel()
	r := testsvc.StartRedis(t)
	a, b := newInstance(t, r.URL()), newInstance(t, r.URL())
	waitLinked(t, a, b, "probe")
	onB := b.bus.Subscribe("t", 10)
	defer onB.Close()
	onB.Lagged() // lags from the linking are not this test's

	r.Stop()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 100_000 {
			a.bus.Publish("t", i) // must never block
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Publish blocked during the outage")
	}
	waitFor(t, "both Degraded", func() bool { return !a.c.Up() && !b.c.Up() })
	waitFor(t, "B's subscriber lagged", onB.Lagged)

	r.Start()
	if err := a.c.WaitUp(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := b.c.WaitUp(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitLinked(t, a, b, "probe")
	onB.Take()
	a.bus.Publish("t", 42)
	if got := next(t, onB); got != 42 {
		t.Errorf("after the outage B got %v, want 42", got)
	}
}
