package ws

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/time/rate"

	"github.com/berthhq/berth/internal/access"
	"github.com/berthhq/berth/internal/event"
	"github.com/berthhq/berth/internal/fault"
	"github.com/berthhq/berth/internal/stream"
)

// session is one open connection: a reader (run, on a goroutine the
// handler starts once the handshake is done; the request's own goroutine
// ends), a goroutine per subscription only while it has events to
// write (see subscription), which writes them itself, and one per command
// in flight. There is no writer goroutine and no queue of frames:
// coder/websocket serialises writes (control frames — ping, pong, close —
// go between data frames), the wire under it sends what a wake-up writes
// in one batch (see batch), and a write that takes no bytes for the stall
// timeout drops the client (see write). Keep-alive pings start from the
// handler's shared wheel, on a goroutine that lives only while a ping
// waits for its pong.
type session struct {
	h       *Handler
	conn    *websocket.Conn
	wire    *wire // under conn: batches its writes (see batch)
	recheck func(context.Context) (access.Principal, error)
	limit   *rate.Limiter // made at the first command (only the reader uses it)
	cmds    atomic.Int32  // commands in flight (only the reader adds one)
	pinging atomic.Bool   // a keep-alive ping waits for its pong

	ctx    context.Context
	cancel context.CancelFunc
	closed sync.Once

	wmu     sync.Mutex
	writers int         // writes in progress
	stall   *time.Timer // drops the client when writes take no bytes in time

	mu sync.Mutex
	// subs are the subscriptions, one per channel: a few at most, so a
	// slice, which costs an idle connection less than a map.
	subs []*subscription
	// extra are the stream slots held past the connection's own, one per
	// subscription past the first (see trim).
	extra []func()
	wg    sync.WaitGroup
}

func newSession(h *Handler, conn *websocket.Conn, w *wire, recheck func(context.Context) (access.Principal, error)) *session {
	return &session{
		h: h, conn: conn, wire: w, recheck: recheck,
	}
}

// close closes the connection once, with code and reason, and stops
// everything the session runs. The close frame follows the data frame
// being written, if any: coder/websocket writes one frame at a time and
// kills the connection without a close frame when a write's context ends,
// so no read or write of the connection runs under s.ctx.
func (s *session) close(code websocket.StatusCode, reason string) {
	s.closed.Do(func() {
		s.cancel()
		go func() { _ = s.conn.Close(code, reason) }()
	})
}

// drop closes the connection of a client the server gives up on, with
// 1008 and reason, and counts it.
func (s *session) drop(why, reason string) {
	s.closed.Do(func() {
		s.h.cfg.Metrics.Dropped(stream.TransportWebSocket, why)
		s.cancel()
		go func() { _ = s.conn.Close(websocket.StatusPolicyViolation, reason) }()
	})
}

// failed ends the session after a panic in one of its goroutines (which
// telemetry.Panics logged and counted): this connection closes with 1011,
// and nothing else is affected.
func (s *session) failed(any) {
	s.close(websocket.StatusInternalError, "internal error")
}

// goSafe runs fn on the session's wait group; a panic in fn ends the
// session, not the server.
func (s *session) goSafe(fn func()) {
	s.wg.Go(func() {
		defer s.h.cfg.Metrics.Panics().Recover(s.h.cfg.Logger, stream.TransportWebSocket, s.failed)
		fn()
	})
}

func (s *session) run(ctx context.Context) {
	s.ctx, s.cancel = context.WithCancel(ctx)
	defer s.h.cfg.Metrics.Opened(stream.TransportWebSocket)()
	defer s.releaseExtra()
	defer s.wg.Wait()
	// The session's end wakes its subscriptions, which then end: a
	// subscription holds no goroutine that would see it. Only the reader
	// adds subscriptions, so none comes after this. Until then (a close
	// from elsewhere ends the read soon), a subscription stepped meanwhile
	// sees s.ctx ended and stops.
	defer s.wakeSubscriptions()
	defer s.cancel()
	// Stopped before the wait above: no keep-alive starts after it.
	defer s.h.pings.StartFunc(s.keepAlive).Stop()
	defer context.AfterFunc(s.h.life, func() {
		s.close(websocket.StatusServiceRestart, "server restarting; reconnect and resume with since")
	})()
	for {
		// Not s.ctx: see close. The read ends when the connection closes.
		typ, b, err := s.conn.Read(context.WithoutCancel(ctx))
		if err != nil {
			// A frame over the limit was already answered with 1009 by
			// coder/websocket; a closed or broken connection needs no
			// more. Either way the session ends.
			s.close(websocket.StatusNormalClosure, "")
			return
		}
		m, err := decodeFrame(typ, b)
		if err != nil {
			s.fail("", "", err)
			continue
		}
		switch m.Type {
		case "ping":
			s.send(Message{Type: "pong", ID: m.ID})
		case "subscribe":
			s.subscribe(m)
		case "unsubscribe":
			s.unsubscribe(m)
		case "command":
			if s.limit == nil { // made at the first command: most connections send none
				s.limit = s.h.limiter()
			}
			if !s.limit.Allow() {
				s.commandFailed(m, fault.New(fault.ErrResourceExhausted, "too many commands on this connection; slow down"))
				continue
			}
			if s.cmds.Load() >= maxCommands {
				s.commandFailed(m, fault.New(fault.ErrResourceExhausted, "%d commands are in flight on this connection; wait for their results", maxCommands))
				continue
			}
			s.cmds.Add(1)
			s.goSafe(func() {
				defer s.cmds.Add(-1)
				s.command(m)
			})
		default:
			s.fail(m.ID, m.Action, fault.New(fault.ErrInvalid, "unknown frame type %q (subscribe, unsubscribe, command, ping)", m.Type))
		}
	}
}

// write writes one frame: in a batch of its own, so that its header and
// payload go out in one write, unless the caller holds a batch open
// (batched; see batch). Writes have no deadline of their own (see close):
// while any is in progress the stall timer runs (see writing), so a client
// that takes no bytes for the stall timeout is dropped with 1008 and a
// reason, and a slow but moving one is not. It reports whether the frame
// was written (or kept by the batch); a failed write closes the
// connection.
func (s *session) write(b []byte, batched bool) bool {
	s.writing()
	if !batched {
		s.wire.begin()
	}
	err := s.conn.Write(context.Background(), websocket.MessageText, b)
	if !batched {
		if end := s.wire.end(); err == nil {
			err = end
		}
	}
	s.wrote()
	if err != nil {
		s.close(websocket.StatusInternalError, "")
		return false
	}
	return true
}

// batch runs fn with a batch of the wire open (see wire): the frames fn
// writes with write(…, true) go out together when it returns, with one
// write to the socket (or a few, past batchBytes). A failed write closes
// the connection and is fn's error if fn had none.
func (s *session) batch(fn func() (bool, error)) (done bool, err error) {
	s.wire.begin()
	defer func() {
		// Also when fn panics: the batch's frames, and any control frame
		// it kept, go out before the close that follows the panic.
		s.writing()
		end := s.wire.end()
		s.wrote()
		if end != nil {
			s.close(websocket.StatusInternalError, "")
			if err == nil {
				err = end
			}
		}
	}()
	return fn()
}

// writing counts a write in progress: the first starts the stall timer,
// which drops the client when no write completes in time.
func (s *session) writing() {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.writers == 0 {
		if s.stall == nil {
			s.stall = time.AfterFunc(s.h.cfg.StallTimeout, func() { s.drop("slow", "client too slow: it took no data for too long") })
		} else {
			s.stall.Reset(s.h.cfg.StallTimeout)
		}
	}
	s.writers++
}

// wrote counts a write done: bytes moved, so the others get a new period,
// and the last stops the timer.
func (s *session) wrote() {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.writers--
	if s.writers == 0 {
		s.stall.Stop()
	} else {
		s.stall.Reset(s.h.cfg.StallTimeout)
	}
}

// keepAlive is called by the handler's wheel every PingEvery: it pings the
// client on a goroutine that ends with the pong (one ping at a time); a
// client that does not answer within the period (or the stall timeout, if
// longer) is dropped. It does not block the wheel.
func (s *session) keepAlive() {
	if s.ctx.Err() != nil || !s.pinging.CompareAndSwap(false, true) {
		return
	}
	s.goSafe(func() {
		defer s.pinging.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), max(s.h.cfg.PingEvery, s.h.cfg.StallTimeout))
		err := s.conn.Ping(ctx)
		cancel()
		if err != nil {
			if s.ctx.Err() == nil {
				s.drop("unresponsive", "keep-alive ping not answered")
			}
			return
		}
		// Subscriptions outlive the credentials' checks at upgrade: a
		// logout, a revoked key or a disabled account ends them too.
		if _, err := s.principal(); err != nil && s.ctx.Err() == nil && !errors.Is(err, fault.ErrUnauthenticated) {
			s.h.cfg.Logger.Warn("re-checking a WebSocket's credentials failed", "error", err.Error())
		}
	})
}

// principal re-checks the connection's credentials (through the auth
// cache, so this is cheap) and returns who it acts as now. Credentials
// that stopped working close the connection with 1008.
func (s *session) principal() (access.Principal, error) {
	p, err := s.recheck(s.ctx)
	if errors.Is(err, fault.ErrUnauthenticated) {
		s.drop("revoked", "credentials no longer valid: sign in again")
	}
	return p, err
}

// send writes a frame, stamped with the time, unless the session ended.
// It reports whether the frame was written.
func (s *session) send(m Message) bool { return s.sendIn(m, false) }

// sendBatched is send for a frame of the caller's open batch (see write).
func (s *session) sendBatched(m Message) bool { return s.sendIn(m, true) }

// sendFrame writes an encoded frame in the caller's open batch, unless
// the session ended. It reports whether the frame was written.
func (s *session) sendFrame(b []byte) bool {
	if s.ctx.Err() != nil {
		return false
	}
	return s.write(b, true)
}

func (s *session) sendIn(m Message, batched bool) bool {
	m.Timestamp = time.Now().UTC()
	b, err := json.Marshal(m)
	if err != nil {
		s.h.cfg.Logger.Error("encoding a WebSocket frame failed", "error", err.Error())
		return false
	}
	if s.ctx.Err() != nil {
		return false
	}
	return s.write(b, batched)
}

// fail sends an error frame for request id, and returns its body.
func (s *session) fail(id, action string, err error) ErrorBody {
	body := s.h.cfg.Errors(s.ctx, action, err)
	s.sendError(id, action, body)
	return body
}

// sendError sends an error frame for request id with body.
func (s *session) sendError(id, action string, body ErrorBody) {
	data, _ := json.Marshal(body)
	s.send(Message{Type: "error", ID: id, Action: action, Data: data})
}

// failOn sends an error frame for the subscribe request id (none: for the
// channel) of channel.
func (s *session) failOn(id, channel string, err error) {
	body := s.h.cfg.Errors(s.ctx, "subscribe "+channel, err)
	data, _ := json.Marshal(body)
	s.send(Message{Type: "error", ID: id, Channel: channel, Data: data})
}

// subscribe starts following m.Channel. The subscribed ack is sent just
// before the first event, once the follower has checked that the principal
// may see what it follows; a channel it may not see is an error frame
// with not_found.
func (s *session) subscribe(m Message) {
	kind, id, permission, err := checkSubscribe(m)
	if err != nil {
		s.failOn(m.ID, m.Channel, err)
		return
	}
	p, err := s.principal()
	if err != nil {
		s.failOn(m.ID, m.Channel, err)
		return
	}
	if !access.Allows(p.Role, permission) {
		s.failOn(m.ID, m.Channel, fault.New(fault.ErrPermissionDenied, "your role (%s) does not grant %s", p.Role, permission))
		return
	}
	s.mu.Lock()
	if s.find(m.Channel) != nil {
		s.mu.Unlock()
		s.failOn(m.ID, m.Channel, fault.New(fault.ErrConflict, "already subscribed to %s", m.Channel))
		return
	}
	if len(s.subs) >= maxSubscriptions {
		s.mu.Unlock()
		s.failOn(m.ID, m.Channel, fault.New(fault.ErrResourceExhausted, "at most %d subscriptions per connection", maxSubscriptions))
		return
	}
	if len(s.subs) >= 1+len(s.extra) {
		// Past the connection's first subscription, each one takes a
		// stream slot of its own. Subscriptions are made one at a time
		// (by the read loop), so no other can be added meanwhile.
		s.mu.Unlock()
		release, err := s.h.admit(s.ctx, p, nil)
		if err != nil {
			s.failOn(m.ID, m.Channel, err)
			return
		}
		s.mu.Lock()
		s.extra = append(s.extra, release)
	}
	sub := &subscription{s: s, id: m.ID, channel: m.Channel, done: make(chan struct{})}
	sub.running.Store(true) // the opening goroutine's, below
	s.subs = append(s.subs, sub)
	s.trim()
	// Until it ends, the subscription holds a place in the wait group: the
	// goroutines its wake-ups start, at any time, then join a group that
	// is not empty, which the session may wait on.
	s.wg.Add(1)
	s.mu.Unlock()

	since := m.Since
	s.goSafe(func() { sub.run(func() (bool, error) { return sub.open(kind, id, since, p) }) })
}

// decodeFrame reads a frame from the client: JSON text shaped like
// Message. Anything else is an invalid_argument fault for an error frame.
func decodeFrame(typ websocket.MessageType, b []byte) (Message, error) {
	if typ != websocket.MessageText {
		return Message{}, fault.New(fault.ErrInvalid, "frames are JSON text")
	}
	var m Message
	if err := json.Unmarshal(b, &m); err != nil {
		return Message{}, fault.New(fault.ErrInvalid, "a frame is a JSON object {type, action, id, data}: %v", err)
	}
	return m, nil
}

// checkSubscribe checks a subscribe frame's channel and since, and returns
// what it follows (kind "task" or "workspace", and the id) and the
// permission that takes.
func checkSubscribe(m Message) (kind, id, permission string, err error) {
	kind, id, ok := event.ParseTopic(m.Channel)
	switch {
	case !ok:
		return "", "", "", fault.Invalid("channel", `must be "task:<id>" or "workspace:<id>"`)
	case kind == "task":
		permission = "task.read"
	case kind == "workspace":
		permission = "workspace.read"
	default:
		return "", "", "", fault.Invalid("channel", `must be "task:<id>" or "workspace:<id>"`)
	}
	if m.Since < 0 {
		return "", "", "", fault.Invalid("since", "must be a log line's seq, a whole number from 0")
	}
	return kind, id, permission, nil
}

// unsubscribe stops following m.Channel and acks once its follower is gone,
// so no event of the channel comes after the ack.
func (s *session) unsubscribe(m Message) {
	s.mu.Lock()
	sub := s.find(m.Channel)
	s.remove(sub)
	s.trim()
	s.mu.Unlock()
	if sub != nil {
		sub.unsubscribed.Store(true)
		sub.wake() // its goroutine, if it has none running, sees the end and ends it
		<-sub.done
	}
	s.send(Message{Type: "unsubscribed", ID: m.ID, Channel: m.Channel})
}

// find returns the subscription to channel, or nil. s.mu is held.
func (s *session) find(channel string) *subscription {
	for _, sub := range s.subs {
		if sub.channel == channel {
			return sub
		}
	}
	return nil
}

// remove takes sub out of the session's subscriptions, if it is there.
// s.mu is held.
func (s *session) remove(sub *subscription) {
	for i, x := range s.subs {
		if x == sub {
			s.subs = slices.Delete(s.subs, i, i+1)
			return
		}
	}
}

// wakeSubscriptions wakes every subscription, at the session's end.
func (s *session) wakeSubscriptions() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sub := range s.subs {
		sub.wake()
	}
}

// trim gives back the extra stream slots the subscriptions no longer need:
// a connection holds max(1, subscriptions) slots, its own and the extra.
// s.mu is held.
func (s *session) trim() {
	for len(s.extra) > 0 && 1+len(s.extra) > max(1, len(s.subs)) {
		last := len(s.extra) - 1
		s.extra[last]()
		s.extra = s.extra[:last]
	}
}

// releaseExtra gives back every extra slot when the connection ends.
func (s *session) releaseExtra() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, release := range s.extra {
		release()
	}
	s.extra = nil
}
