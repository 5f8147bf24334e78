package ws

import (
	"context"
	"errors"
	"sync/atomic"

	"github.com/berthhq/berth/internal/access"
	"github.com/berthhq/berth/internal/stream"
)

// subscription is one channel a connection follows. It holds no goroutine
// while the channel is quiet: a goroutine opens the follow (the catch-up)
// and ends, and the bus's wake-up, or the subscription's end, starts one
// that steps the follow until nothing is queued, then ends too.
//
// One goroutine at a time holds the subscription's token (running): it
// alone opens, steps and ends the follow. A wake-up sets pending and, when
// no goroutine holds the token, takes it and starts one; the goroutine
// lets the token go only after its last step, and looks at pending once
// more after that, so a wake-up that came during a step is never lost.
// The goroutine that ends the subscription keeps the token for ever: no
// step runs after the end.
type subscription struct {
	s *session
	// id and channel are the subscribe frame's: the answers to it carry
	// them back (the rest of the frame is not kept).
	id, channel string
	// done is closed once the subscription has let go of everything: its
	// bus subscription, its place in the session and its stream slot.
	done chan struct{}

	running atomic.Bool // the token: a goroutine opens, steps or ends the follow
	pending atomic.Bool // news since the last step's look at the bus
	// unsubscribed is set by unsubscribe: the subscription ends, and
	// sends not one event more. It has no context of its own: the
	// session's end is the other end of it (see stopped).
	unsubscribed atomic.Bool

	// Used only by the goroutine holding the token.
	step    func(context.Context) (done bool, err error)
	release func() // closes the follow; nil before it opened
	acked   bool   // the subscribed frame was sent
}

// stopped reports whether the subscription was ended from outside: by an
// unsubscribe or by the session's end.
func (sub *subscription) stopped() bool {
	return sub.unsubscribed.Load() || sub.s.ctx.Err() != nil
}

// wake is the bus's wake-up, and the call that follows a stop (an
// unsubscribe, the session's end: see stopped, unsubscribe and
// wakeSubscriptions): it never blocks (the bus calls it under its lock),
// only starts a goroutine to step the follow when none holds the token. That goroutine is the session's (goSafe): a
// subscription that did not end holds a place in the session's wait group
// (see subscribe), so starting one while the session waits is allowed.
func (sub *subscription) wake() {
	sub.pending.Store(true)
	if sub.running.CompareAndSwap(false, true) {
		sub.s.goSafe(func() { sub.run(sub.stepOnce) })
	}
}

// stepOnce handles what is queued for the follow.
func (sub *subscription) stepOnce() (bool, error) {
	sub.pending.Store(false)
	return sub.step(sub.s.ctx)
}

// run holds the token: it calls first (the opening, or a step), then steps
// while there is news, and lets the token go when there is none. The end
// of the follow, an error, an unsubscribe or the session's end ends the
// subscription; a panic ends it too, before the session closes.
func (sub *subscription) run(first func() (bool, error)) {
	returned := false
	defer func() {
		if !returned {
			sub.end(nil) // panicking: goSafe then closes the session
		}
	}()
	for next := first; ; next = sub.stepOnce {
		if sub.stopped() {
			returned = true
			sub.end(nil)
			return
		}
		done, err := sub.s.batch(next) // what a wake-up sends goes out in one write
		if done || err != nil {
			returned = true
			sub.end(err)
			return
		}
		sub.running.Store(false)
		if !sub.pending.Load() || !sub.running.CompareAndSwap(false, true) {
			returned = true
			return // idle, or a wake-up's goroutine took over
		}
	}
}

// open opens the follow of what the subscription names, as p, from the
// subscribe frame's since: its catch-up is sent by the time it returns,
// and done is true when the task was finished and its end sent. The
// follow reads the store with the session's context: an unsubscribe
// stops it at its next event (see emit), not in the middle of a read.
func (sub *subscription) open(kind, id string, since int64, p access.Principal) (done bool, err error) {
	if kind == "task" {
		f, done, err := sub.s.openTask(sub.s.ctx, p, id, since, sub.emit, sub.emitFrame, sub.wake)
		if err != nil {
			return false, err
		}
		sub.step, sub.release = f.Step, f.Close
		return done, nil
	}
	w, err := sub.s.openWorkspace(sub.s.ctx, p, id, sub.emit, sub.wake)
	if err != nil {
		return false, err
	}
	sub.step = func(ctx context.Context) (bool, error) { return false, w.Step(ctx) } // a workspace's watch never ends
	sub.release = w.Close
	return false, nil
}

// emit sends one event of the subscription, preceded by the subscribed
// ack when it is the first, in the batch that run holds open for the step.
func (sub *subscription) emit(action string, data []byte) error {
	s := sub.s
	if !sub.ready() {
		return context.Canceled
	}
	if action == "end" {
		// The task's end is the subscription's last frame: the channel is
		// free before the client can read it, so a client that subscribes
		// again at once is not told it is subscribed already (end, which
		// follows, does the same, for the other ends).
		s.mu.Lock()
		s.remove(sub)
		s.trim()
		s.mu.Unlock()
	}
	if !s.sendBatched(Message{Type: "event", Channel: sub.channel, Action: action, Data: data}) {
		return context.Canceled
	}
	s.h.cfg.Metrics.Sent(stream.TransportWebSocket)
	return nil
}

// emitFrame is emit for an event frame encoded already, on the
// subscription's channel: a log line's, which every subscriber of the
// task sends as the same bytes.
func (sub *subscription) emitFrame(frame []byte) error {
	if !sub.ready() || !sub.s.sendFrame(frame) {
		return context.Canceled
	}
	sub.s.h.cfg.Metrics.Sent(stream.TransportWebSocket)
	return nil
}

// ready reports whether the subscription may send an event: it was not
// stopped (not one event after an unsubscribe's ack), and its subscribed
// ack went out first.
func (sub *subscription) ready() bool {
	if sub.stopped() {
		return false
	}
	if !sub.acked {
		sub.acked = true
		if !sub.s.sendBatched(Message{Type: "subscribed", ID: sub.id, Channel: sub.channel}) {
			return false
		}
	}
	return true
}

// end lets go of everything the subscription holds — the follow's bus
// subscription, its place in the session and its stream slot — and tells the client why it ended when err is not the
// subscription's own end: an error frame for the subscribe request before
// the ack, or for the channel after it. Then done closes, and the session
// may finish waiting. Only the goroutine holding the token calls it, once.
func (sub *subscription) end(err error) {
	s := sub.s
	defer s.wg.Done() // the place subscribe took in the session's wait group
	defer close(sub.done)
	if sub.release != nil {
		sub.release() // no bus wake-up once it returned
	}
	s.mu.Lock()
	s.remove(sub)
	s.trim()
	s.mu.Unlock()
	if err != nil && !sub.stopped() && !errors.Is(err, context.Canceled) {
		if !sub.acked {
			s.failOn(sub.id, sub.channel, err)
		} else {
			s.h.cfg.Logger.Warn("a WebSocket subscription failed", "channel", sub.channel, "error", err.Error())
			s.failOn("", sub.channel, err)
		}
	}
}
