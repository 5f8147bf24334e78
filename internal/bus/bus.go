// Package bus is berth's in-process event bus: publishers never block, and
// each subscriber has a bounded queue; a subscriber that falls behind loses
// the events that do not fit and is told so (Lagged), so it can catch up
// from the store instead of growing memory or slowing anyone down.
//
// bus is a leaf package: it imports nothing from berth.
package bus

import "sync"

// Bus fans events out to subscribers by topic ("workspace:<id>", …).
type Bus struct {
	mu     sync.Mutex
	topics map[string]map[*Subscription]struct{}
}

// New returns an empty Bus.
func New() *Bus { return &Bus{topics: make(map[string]map[*Subscription]struct{})} }

// Subscription receives a topic's events on C until Close.
type Subscription struct {
	// C delivers events in publication order.
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
// the others are marked lagged. It never blocks.
func (b *Bus) Publish(topic string, v any) {
	b.mu.Lock()
	defer b.mu.Unlock()
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

// Lagged reports, and clears, whether events were dropped because the
// queue was full since the last call.
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
