// Package bus is berth's in-process event bus: publishers never block, and
// each subscriber has a bounded queue; a subscriber that falls behind loses
// the events that do not fit and is told so (Lagged), so it can catch up
// from the store instead of growing memory or slowing anyone down.
//
// Several berth instances share their events through a Remote (the Valkey
// bridge in internal/valkey): Publish hands every event to it as well, and
// it brings the other instances' events in with Deliver. When that link
// breaks or drops events, LagAll tells every subscriber to catch up from
// the store, which always holds what was published.
package bus

import "sync"

// Bus fans events out to subscribers by topic ("workspace:<id>", …).
type Bus struct {
	mu     sync.Mutex
	topics map[string]map[*Subscription]struct{}
	remote Remote
}

// Remote carries events to the other instances of berth. Publish must not
// block: a Remote that cannot keep up drops events and has the receiving
// side's subscribers marked lagged (LagAll) instead.
type Remote interface {
	Publish(topic string, v any)
}

// Lag is the value a subscriber's queue receives from LagAll when the queue
// has room: it wakes a subscriber blocked on an empty queue, and carries
// nothing else. A subscriber that receives it finds Lagged true (unless it
// drained the queue when Lagged was true already, which removes it).
type Lag struct{}

// New returns an empty Bus.
func New() *Bus { return &Bus{topics: make(map[string]map[*Subscription]struct{})} }

// SetRemote makes Publish also hand every event to r (nil: to no one).
// Set it before the bus is used.
func (b *Bus) SetRemote(r Remote) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.remote = r
}

// Subscription receives a topic's events on C until Close.
type Subscription struct {
	// C delivers events in publication order, and, after LagAll, possibly
	// a Lag value.
	C     <-chan any
	c     chan any
	bus   *Bus
	topic string

	mu     sync.Mutex
	lagged bool
	closed bool
}

// Subscribe starts receiving topic's events into a queue of size events.
func (b *Bus) Subscribe(topic string, size int) *Subscription {
	c := make(chan any, max(size, 1))
	s := &Subscription{C: c, c: c, bus: b, topic: topic}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.topics[topic] == nil {
		b.topics[topic] = make(map[*Subscription]struct{})
	}
	b.topics[topic][s] = struct{}{}
	return s
}

// Publish delivers v to every subscriber of topic whose queue has room;
// the others are marked lagged. Then it hands v to the Remote, if any, for
// the other instances. It never blocks. v must not change once published:
// subscribers read it concurrently.
func (b *Bus) Publish(topic string, v any) {
	b.mu.Lock()
	b.deliver(topic, v)
	r := b.remote
	b.mu.Unlock()
	if r != nil {
		r.Publish(topic, v)
	}
}

// Deliver is Publish for an event that came from another instance: it
// reaches this bus's subscribers only, and is not handed to the Remote.
func (b *Bus) Deliver(topic string, v any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.deliver(topic, v)
}

// deliver queues v for topic's subscribers. b.mu must be held.
func (b *Bus) deliver(topic string, v any) {
	for s := range b.topics[topic] {
		select {
		case s.c <- v:
		default:
			s.mu.Lock()
			s.lagged = true
			s.mu.Unlock()
		}
	}
}

// Subscribed reports whether topic has a subscriber now. A Remote uses it
// to skip decoding events no one here waits for; a subscriber that comes
// later catches up from the store, as it would for a local event.
func (b *Bus) Subscribed(topic string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.topics[topic]) > 0
}

// LagAll marks every subscriber lagged, as if it had missed events, and
// wakes it with a Lag value if its queue has room. A Remote calls it when
// the link to the other instances broke, came back, or dropped events: the
// subscribers then catch up from the store. It never blocks.
func (b *Bus) LagAll() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, subs := range b.topics {
		for s := range subs {
			s.mu.Lock()
			if !s.lagged {
				// Set together with the queued Lag, so that a subscriber
				// that receives the Lag finds Lagged true, or has already
				// found it true and drained the Lag with the rest of its
				// queue. A subscriber lagged already has events queued,
				// or is about to call Lagged: it needs no wake-up.
				s.lagged = true
				select {
				case s.c <- Lag{}:
				default:
				}
			}
			s.mu.Unlock()
		}
	}
}

// Lagged reports, and clears, whether events were dropped because the
// queue was full, or LagAll was called, since the last call.
func (s *Subscription) Lagged() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.lagged
	s.lagged = false
	return l
}

// Close stops the subscription and closes C. It is safe to call twice.
func (s *Subscription) Close() {
	s.bus.mu.Lock()
	defer s.bus.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	delete(s.bus.topics[s.topic], s)
	if len(s.bus.topics[s.topic]) == 0 {
		delete(s.bus.topics, s.topic)
	}
	close(s.c)
}
