// Package bus is berth's in-process event bus: publishers never block, and
// each subscriber has a bounded queue; a subscriber that falls behind loses
// the events that do not fit and is told so (Lagged), so it can catch up
// from the store instead of growing memory or slowing anyone down.
//
// A queue costs nothing while it is empty: it is a slice that grows when
// events arrive and is handed over whole to the subscriber that takes them
// (Take), plus a one-slot wake-up channel, or a callback for a reader
// that starts a goroutine only when there is something to take
// (SubscribeFunc). Twenty thousand idle followers so hold no
// pre-allocated slots, and a busy one holds only what it has not taken
// yet.
//
// Several berth instances share their events through a Remote (the Valkey
// bridge in internal/valkey): Publish hands every event to it as well, and
// it brings the other instances' events in with Deliver. When that link
// breaks or drops events, LagAll tells every subscriber to catch up from
// the store, which always holds what was published.
package bus

import (
	"context"
	"errors"
	"sync"
)

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

// ErrClosed is Recv's error once the subscription is closed and its queue
// empty.
var ErrClosed = errors.New("bus: subscription closed")

// firstCap is the capacity a queue starts with when its first event
// arrives: enough for a batch of log lines without regrowing, small enough
// not to matter per subscriber.
const firstCap = 8

// New returns an empty Bus.
func New() *Bus { return &Bus{topics: make(map[string]map[*Subscription]struct{})} }

// SetRemote makes Publish also hand every event to r (nil: to no one).
// Set it before the bus is used.
func (b *Bus) SetRemote(r Remote) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.remote = r
}

// Subscribe starts receiving topic's events into a queue of at most bound
// events; beyond it the subscription is marked lagged.
func (b *Bus) Subscribe(topic string, bound int) *Subscription {
	return b.SubscribeWake(topic, bound, make(chan struct{}, 1))
}

// SubscribeWake is Subscribe with a wake-up channel of the caller's, which
// must have a buffer of one: a reader that follows several subscriptions
// at once (the WebSocket's) waits on one channel for all of them, then
// takes from each. Close does not close a shared channel.
func (b *Bus) SubscribeWake(topic string, bound int, wake chan struct{}) *Subscription {
	return b.add(&Subscription{wake: wake, bus: b, topic: topic, bound: max(bound, 1)})
}

// SubscribeFunc is Subscribe for a reader with no goroutine waiting for
// its events: instead of a wake-up on Ready, the bus calls wake each time
// events are queued (once for a PublishAll) or the subscription is marked
// lagged, so the reader can start a goroutine that takes them (Take) and
// lets it end once the queue is empty. An idle subscription so holds no
// goroutine at all. wake runs under the bus's lock (under the
// subscription's, when Next leaves a wake-up): it must not block nor call
// the bus, only note that there is work and perhaps start a goroutine.
// Once Close returned, wake is not called again; Close itself does not
// call it. Ready and Recv are not for such a subscription: Ready never
// receives.
func (b *Bus) SubscribeFunc(topic string, bound int, wake func()) *Subscription {
	return b.add(&Subscription{wakeFn: wake, bus: b, topic: topic, bound: max(bound, 1)})
}

// add registers s on its topic.
func (b *Bus) add(s *Subscription) *Subscription {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.topics[s.topic] == nil {
		b.topics[s.topic] = make(map[*Subscription]struct{})
	}
	b.topics[s.topic][s] = struct{}{}
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

// PublishAll is Publish for several events of one topic at once, in
// order: each subscriber is woken once for all of them, so it takes them
// in one batch and writes them with one flush, rather than waking for
// each (a task's log writer publishes the lines of a stored batch so).
func (b *Bus) PublishAll(topic string, vs []any) {
	b.mu.Lock()
	for s := range b.topics[topic] {
		s.pushAll(vs)
	}
	r := b.remote
	b.mu.Unlock()
	if r != nil {
		for _, v := range vs {
			r.Publish(topic, v)
		}
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
		s.push(v)
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
// wakes it. A Remote calls it when the link to the other instances broke,
// came back, or dropped events: the subscribers then catch up from the
// store. It never blocks.
func (b *Bus) LagAll() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, subs := range b.topics {
		for s := range subs {
			s.lag()
		}
	}
}

// Subscription queues a topic's events until Close. Its reader waits on
// Ready, then takes what is queued with Take (or one event with Next).
type Subscription struct {
	wake   chan struct{} // one slot: "look at the queue"; nil with wakeFn
	wakeFn func()        // SubscribeFunc's wake-up, instead of wake
	bus    *Bus
	topic  string
	bound  int

	mu     sync.Mutex
	queue  []any // nil while empty: an idle subscription holds no slots
	head   int   // queue[head:] is still to be taken (Next)
	lagged bool
	closed bool
}

// push queues v, or marks the subscription lagged when the queue is at
// its bound, and wakes the reader.
func (s *Subscription) push(v any) {
	s.mu.Lock()
	s.queueLocked(v)
	s.mu.Unlock()
	s.signal()
}

// pushAll is push for several events, with one wake-up.
func (s *Subscription) pushAll(vs []any) {
	s.mu.Lock()
	for _, v := range vs {
		s.queueLocked(v)
	}
	s.mu.Unlock()
	s.signal()
}

// queueLocked queues v, or marks the subscription lagged when the queue is
// at its bound. s.mu is held.
func (s *Subscription) queueLocked(v any) {
	switch {
	case s.closed:
	case len(s.queue)-s.head >= s.bound:
		s.lagged = true
	default:
		if s.queue == nil {
			s.queue = make([]any, 0, firstCap)
		} else if s.head > 0 && len(s.queue) == cap(s.queue) {
			// A reader taking one at a time (Next) frees the front:
			// reuse it rather than grow.
			n := copy(s.queue, s.queue[s.head:])
			clear(s.queue[n:])
			s.queue, s.head = s.queue[:n], 0
		}
		s.queue = append(s.queue, v)
	}
}

// lag marks the subscription lagged and wakes its reader.
func (s *Subscription) lag() {
	s.mu.Lock()
	s.lagged = !s.closed
	s.mu.Unlock()
	s.signal()
}

// signal wakes the reader without blocking: one pending wake-up covers
// every event queued before the reader looks. A SubscribeFunc reader is
// called instead.
func (s *Subscription) signal() {
	if s.wakeFn != nil {
		s.wakeFn()
		return
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Ready receives a value when events may be queued, the subscription may
// be lagged, or (for a channel of its own) it was closed. A wake-up may
// find nothing: the reader took it already.
func (s *Subscription) Ready() <-chan struct{} { return s.wake }

// Take returns every queued event, in publication order, and whether the
// subscription lagged since the last look (which it clears, as Lagged
// does); the queue is handed over, so the subscription holds no memory
// for events until the next one arrives. A lagged reader drops what it
// took and catches up from the store.
func (s *Subscription) Take() (events []any, lagged bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	events, lagged = s.queue[s.head:], s.lagged
	s.queue, s.head, s.lagged = nil, 0, false
	return events, lagged
}

// Next takes the oldest queued event, if any, without blocking. When more
// remain it leaves a wake-up on Ready, so a reader that takes one at a
// time and waits on Ready in between misses none.
func (s *Subscription) Next() (v any, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.head == len(s.queue) {
		return nil, false
	}
	v = s.queue[s.head]
	s.queue[s.head] = nil
	s.head++
	if s.head == len(s.queue) {
		s.queue, s.head = nil, 0
	} else {
		s.signal()
	}
	return v, true
}

// Recv waits for the next event and takes it: for readers of one
// subscription, with a wake-up channel of its own, that want events one
// at a time. It returns ctx's error when
// ctx ends first, and ErrClosed once the subscription is closed. It does
// not report lags: ask Lagged.
func (s *Subscription) Recv(ctx context.Context) (any, error) {
	for {
		if v, ok := s.Next(); ok {
			return v, nil
		}
		s.mu.Lock()
		closed := s.closed
		s.mu.Unlock()
		if closed {
			return nil, ErrClosed
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.wake:
		}
	}
}

// Lagged reports, and clears, whether events were dropped because the
// queue was full, or LagAll was called, since the last look.
func (s *Subscription) Lagged() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.lagged
	s.lagged = false
	return l
}

// Close stops the subscription and drops its queue; a reader waiting on
// Ready wakes. It is safe to call twice.
func (s *Subscription) Close() {
	s.bus.mu.Lock()
	defer s.bus.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	s.queue, s.head = nil, 0
	delete(s.bus.topics[s.topic], s)
	if len(s.bus.topics[s.topic]) == 0 {
		delete(s.bus.topics, s.topic)
	}
	if s.wakeFn == nil {
		// A reader waiting on Ready wakes to find it closed; a
		// SubscribeFunc reader closed it itself and wants no call.
		s.signal()
	}
}
