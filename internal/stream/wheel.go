package stream

import (
	"sync"
	"time"
)

// wheelSlots is how many slots a Wheel's period is cut into: a timer fires
// within a slot's length (period/wheelSlots) of its period, which is
// precise enough for heartbeats and keep-alive pings.
const wheelSlots = 8

// Wheel is a coarse timer shared by every stream of a transport: one
// goroutine, and only while some stream holds a timer, instead of a
// time.Ticker and a goroutine per stream. Every period it signals each
// stream's Timer once, on a one-slot channel that the stream's own loop
// waits on with its events (Loop.Due), so heartbeats, pings and credential
// re-checks run on the stream's one goroutine.
type Wheel struct {
	period time.Duration

	mu      sync.Mutex
	slots   [wheelSlots]map[*Timer]struct{}
	current int  // the slot signalled last
	running bool // the goroutine runs
	timers  int
}

// NewWheel returns a Wheel that signals each of its timers every period.
func NewWheel(period time.Duration) *Wheel {
	w := &Wheel{period: max(period, wheelSlots*time.Millisecond)}
	for i := range w.slots {
		w.slots[i] = make(map[*Timer]struct{})
	}
	return w
}

// Timer is one stream's place on a Wheel.
type Timer struct {
	// C receives a value every period (one at most pending: a stream
	// that was busy does not get a backlog of beats).
	C    <-chan struct{}
	c    chan struct{}
	fn   func() // instead of C, for StartFunc
	w    *Wheel
	slot int
}

// Start returns a timer that fires about every period, first about a
// period from now. Stop it when the stream ends.
func (w *Wheel) Start() *Timer {
	c := make(chan struct{}, 1)
	return w.add(&Timer{C: c, c: c})
}

// StartFunc is Start for a stream with no goroutine of its own waiting
// (the WebSocket's reader waits on its connection): the wheel's goroutine
// calls fn every period instead. fn must not block — it starts what takes
// time on a goroutine of its own. Once Stop returned, fn is not called
// again.
func (w *Wheel) StartFunc(fn func()) *Timer { return w.add(&Timer{fn: fn}) }

// add puts t on the wheel.
func (w *Wheel) add(t *Timer) *Timer {
	w.mu.Lock()
	defer w.mu.Unlock()
	// The slot just signalled comes round again last: a whole period.
	t.w, t.slot = w, w.current
	w.slots[t.slot][t] = struct{}{}
	w.timers++
	if !w.running {
		w.running = true
		go w.run()
	}
	return t
}

// Stop takes the timer off its wheel. It is safe to call twice.
func (t *Timer) Stop() {
	t.w.mu.Lock()
	defer t.w.mu.Unlock()
	if _, ok := t.w.slots[t.slot][t]; ok {
		delete(t.w.slots[t.slot], t)
		t.w.timers--
	}
}

// run turns the wheel, one slot per period/wheelSlots, until no timer is
// left.
func (w *Wheel) run() {
	tick := time.NewTicker(w.period / wheelSlots)
	defer tick.Stop()
	for range tick.C {
		if !w.turn() {
			return
		}
	}
}

// turn signals the next slot's timers; it reports false, with the wheel
// stopped, when it has none left.
func (w *Wheel) turn() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.timers == 0 {
		w.running = false
		return false
	}
	w.current = (w.current + 1) % wheelSlots
	for t := range w.slots[w.current] {
		if t.fn != nil {
			t.fn() // under w.mu: Stop waits for it
			continue
		}
		select {
		case t.c <- struct{}{}:
		default:
		}
	}
	return true
}
