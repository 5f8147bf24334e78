package sse

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	gosse "github.com/tmaxmax/go-sse"

	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
	"github.com/berthhq/berth/internal/stream"
)

// Sizes of a detached stream's write buffer.
const (
	// spillSize is how much a step encodes before it writes: a long
	// catch-up is written a piece at a time rather than held whole.
	spillSize = 32 << 10
	// keepSize is the largest buffer a stream keeps between steps; a
	// larger one is let go, so an idle stream holds none of its bursts.
	keepSize = 512
)

// errGone ends a detached stream whose client went away: a write to its
// connection failed (other than by the stall timeout). An ending, not a
// failure to log.
var errGone = errors.New("the client went away")

// errPanicked ends a detached stream whose step panicked (the panic is
// logged and counted where it was recovered).
var errPanicked = errors.New("a step of the stream panicked")

// opener opens a detached stream's follower with ctx, the stream's: it
// sends the catch-up through d (d.taskEvent, d.workspaceEvent), has the bus
// call d.wake when there is news, and returns how to step the follower and
// how to close it; done is true when the follow ended already (a finished
// task's end was sent). On an error it holds nothing.
type opener func(ctx context.Context, d *detached) (step func(context.Context) (bool, error), closeFollow func(), done bool, err error)

// detached is one stream served past its handler's return, on the raw
// connection of an HTTP/1.x request (hijacked): with no request goroutine,
// no net/http buffers and no response maps behind it, an idle stream costs
// little more than its socket. It holds one goroutine while idle, its
// reader, which waits on the connection and ends the stream when the
// client leaves. Transient goroutines step its follower when the bus
// wakes it, as the WebSocket's subscriptions do (see subscription), and
// write each step's events with one write.
//
// One goroutine at a time holds the stream's token (running): it alone
// opens, steps, writes and ends the stream. A wake-up (the bus, the
// heartbeat wheel, the end of the stream's context) sets pending and, when
// no goroutine holds the token, takes it and starts one; that goroutine
// lets the token go only after its last step and looks at pending once
// more after that, so a wake-up that came during a step is never lost. The
// goroutine that ends the stream keeps the token for ever.
type detached struct {
	h       *Handler
	conn    net.Conn
	path    string
	timeout time.Duration // the stall timeout of one write
	recheck func(context.Context) error
	// ctx is the stream's: it ends when the client leaves (the reader),
	// at Shutdown, or when the stream ends. It keeps the request's
	// values (its id, for the logs), not its cancellation.
	ctx    context.Context
	cancel context.CancelFunc

	running atomic.Bool // the token
	pending atomic.Bool // a wake-up since the last step began
	beatDue atomic.Bool // the wheel asked for a heartbeat

	// What the stream holds until it ends; each is let go by end.
	finish   func()        // completes the request (stream.Detach)
	release  func()        // gives the stream slot back (Config.Admit)
	closed   func()        // ends the stream's place in the open gauge
	stopLife func() bool   // the AfterFunc that ends ctx at Shutdown
	stopWake func() bool   // the AfterFunc that wakes the stream at ctx's end
	beat     *stream.Timer // the heartbeat's place on the wheel

	// Used only by the goroutine holding the token.
	step      func(context.Context) (bool, error)
	closeStep func() // closes the follower; nil before it opened
	buf       bytes.Buffer
	ended     bool
}

// detach serves r's stream on its connection past the handler's return,
// when r is an HTTP/1.x GET whose writer can be hijacked; it reports
// whether it did. The stream then owns release, and w must not be used
// again. Otherwise nothing was written and the caller serves the stream
// on the request's goroutine (serve), then calls finish (never nil) once
// it is done: the request was detached before the hijack was tried.
func (h *Handler) detach(w http.ResponseWriter, r *http.Request, release func(), recheck func(context.Context) error, open opener) (ok bool, finish func()) {
	if r.ProtoMajor != 1 || r.Method != http.MethodGet {
		return false, func() {}
	}
	finish = stream.Detach(r)
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return false, finish
	}
	// The bufio reader and writer of the connection are dropped: an
	// event stream's client sends nothing after its request, and nothing
	// was written yet.
	d := &detached{h: h, conn: conn, path: r.URL.Path, timeout: h.WriteTimeout, recheck: recheck, finish: finish, release: release}
	if d.timeout <= 0 {
		d.timeout = writeTimeout
	}
	d.ctx, d.cancel = context.WithCancel(context.WithoutCancel(r.Context()))
	h.detached.Add()
	d.closed = h.Metrics.Opened(stream.TransportSSE)
	d.running.Store(true) // this goroutine opens the stream
	d.stopLife = context.AfterFunc(h.life, d.stop)
	d.stopWake = context.AfterFunc(d.ctx, d.wake)
	d.beat = h.beats.StartFunc(d.due)
	header := w.Header()
	_ = conn.SetReadDeadline(time.Time{}) // the server's, for requests
	go d.read()
	d.safe(func() (bool, error) { return d.open(header, open) })
	return true, nil
}

// read waits on the connection until the client closes it (or the stream
// closes it when it ends), then ends the stream's context: a client that
// leaves is noticed at once, and its stream slot given back. Bytes it
// sends are dropped.
func (d *detached) read() {
	defer d.cancel()
	b := make([]byte, 64)
	for {
		if _, err := d.conn.Read(b); err != nil {
			return
		}
	}
}

// stop ends the stream at Shutdown: its context, and a write in progress
// (see flush), so that a client that takes no bytes does not hold the
// shutdown for the stall timeout.
func (d *detached) stop() {
	d.cancel()
	_ = d.conn.SetWriteDeadline(time.Now())
}

// due is the heartbeat wheel's call: it must not block, so it asks the
// next step for a heartbeat and wakes the stream.
func (d *detached) due() {
	d.beatDue.Store(true)
	d.wake()
}

// wake is the bus's wake-up, the wheel's and ctx's end: it never blocks
// (the bus calls it under its lock), only starts a goroutine to step the
// stream when none holds the token.
func (d *detached) wake() {
	d.pending.Store(true)
	if d.running.CompareAndSwap(false, true) {
		go d.safe(d.stepOnce)
	}
}

// safe runs the stream from first (see run); a panic ends this stream
// alone, counted and logged, and the stream lets go of everything.
func (d *detached) safe(first func() (bool, error)) {
	defer d.h.Metrics.Panics().Recover(d.h.Logger, stream.TransportSSE, func(any) { d.end(errPanicked) })
	d.run(first)
}

// run holds the token: it calls first (the opening, or a step), writes
// what it encoded, then steps again while there is news, and lets the
// token go when there is none. The end of the follow, an error or the end
// of ctx ends the stream.
func (d *detached) run(first func() (bool, error)) {
	for next := first; ; next = d.stepOnce {
		if d.ctx.Err() != nil {
			d.end(nil)
			return
		}
		done, err := next()
		// What was encoded before an error goes out too, as it would
		// have on the request's goroutine.
		if ferr := d.flush(); err == nil {
			err = ferr
		}
		if done || err != nil {
			d.end(err)
			return
		}
		d.running.Store(false)
		if !d.pending.Load() || !d.running.CompareAndSwap(false, true) {
			return // idle, or a wake-up's goroutine took over
		}
	}
}

// open writes the response's head — header, the handler's headers (the
// server's, the resume cookie), and the event stream's — and the retry
// hint, then opens the follower, whose catch-up it sends.
func (d *detached) open(header http.Header, open opener) (bool, error) {
	header.Set("Content-Type", "text/event-stream")
	header.Set("Cache-Control", "no-cache")
	header.Set("X-Accel-Buffering", "no")
	// The body is the rest of the connection: no length, no chunks.
	header.Set("Connection", "close")
	header.Del("Content-Length")
	header.Del("Transfer-Encoding")
	if _, ok := header["Date"]; !ok {
		header.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	}
	d.buf.WriteString("HTTP/1.1 200 OK\r\n")
	if err := header.Write(&d.buf); err != nil {
		return false, err
	}
	d.buf.WriteString("\r\n")
	if err := d.message(&gosse.Message{Retry: Retry}); err != nil {
		return false, err
	}
	if err := d.flush(); err != nil {
		return false, err
	}
	step, closeStep, done, err := open(d.ctx, d)
	if err != nil {
		return false, err
	}
	d.step, d.closeStep = step, closeStep
	return done, nil
}

// stepOnce handles what is queued: a heartbeat the wheel asked for (and
// the credential re-check that comes with it), then the follower's news.
func (d *detached) stepOnce() (bool, error) {
	d.pending.Store(false)
	if d.beatDue.Swap(false) {
		if err := d.heartbeat(); err != nil {
			return false, err
		}
	}
	return d.step(d.ctx)
}

// heartbeat re-checks the stream's credentials — ending the stream when
// they were revoked, logging when the check itself failed — and encodes a
// comment line, so proxies and clients see the stream alive.
func (d *detached) heartbeat() error {
	if err := d.recheck(d.ctx); stream.Revoked(err) {
		return errRevoked
	} else if err != nil && d.ctx.Err() == nil && d.h.Logger != nil {
		d.h.Logger.WarnContext(d.ctx, "re-checking a stream's credentials failed", "error", err.Error())
	}
	return d.message(heartbeat)
}

// message encodes m.
func (d *detached) message(m *gosse.Message) error {
	if _, err := m.WriteTo(&d.buf); err != nil {
		return err
	}
	return d.spill()
}

// event encodes m, an event, and counts it sent.
func (d *detached) event(m *gosse.Message) error {
	if err := d.message(m); err != nil {
		return err
	}
	d.h.Metrics.Sent(stream.TransportSSE)
	return nil
}

// frame adds an event already encoded as an SSE frame (the same bytes for
// every subscriber), and counts it sent.
func (d *detached) frame(b []byte) error {
	d.buf.Write(b)
	d.h.Metrics.Sent(stream.TransportSSE)
	return d.spill()
}

// spill writes what was encoded once it is large.
func (d *detached) spill() error {
	if d.buf.Len() < spillSize {
		return nil
	}
	return d.flush()
}

// flush writes what was encoded, in one write that must complete within
// the stall timeout: a client that takes no bytes for that long is
// dropped, and counted. A large buffer is let go.
func (d *detached) flush() error {
	if d.buf.Len() == 0 {
		return nil
	}
	_ = d.conn.SetWriteDeadline(time.Now().Add(d.timeout))
	// After the deadline: a stop that comes later cuts the write short.
	if err := d.ctx.Err(); err != nil {
		d.buf.Reset()
		return err
	}
	_, err := d.conn.Write(d.buf.Bytes())
	if d.buf.Cap() > keepSize {
		d.buf = bytes.Buffer{}
	} else {
		d.buf.Reset()
	}
	switch {
	case err != nil && d.ctx.Err() != nil:
		return err // stopped, or the client left: not slow
	case errors.Is(err, os.ErrDeadlineExceeded):
		d.h.Metrics.Dropped(stream.TransportSSE, "slow")
		return err
	case err != nil:
		return fmt.Errorf("%w: %w", errGone, err)
	}
	return nil
}

// end lets go of everything the stream holds — its follower's bus
// subscription, its heartbeat, its AfterFuncs, its connection (which ends
// the reader), its stream slot, its place in the open gauge — and
// completes the request, having logged err unless the stream ended
// normally, its credentials were revoked or its client left. Only the
// goroutine holding the token calls it; it runs once, and its releases
// run even when one of them panics.
func (d *detached) end(err error) {
	if d.ended {
		return
	}
	d.ended = true
	defer d.h.detached.Done()
	defer d.finish()
	defer d.closed()
	defer d.release()
	defer d.conn.Close()
	defer d.cancel()
	defer d.stopLife()
	defer d.stopWake()
	defer d.beat.Stop()
	if d.closeStep != nil {
		defer d.closeStep() // no bus wake-up once it returned
	}
	if err != nil && d.ctx.Err() == nil && !errors.Is(err, errRevoked) && !errors.Is(err, errGone) && !errors.Is(err, errPanicked) && d.h.Logger != nil {
		d.h.Logger.WarnContext(d.ctx, "an event stream failed", "path", d.path, "error", err.Error())
	}
}

// taskEvent encodes a task's event (see writeTaskEvent).
func (d *detached) taskEvent(ev stream.TaskEvent) error { return writeTaskEvent(d, ev) }

// workspaceEvent encodes a workspace's event (see writeWorkspaceEvent).
func (d *detached) workspaceEvent(ev *berthv1.WorkspaceEvent) error {
	return writeWorkspaceEvent(d, ev)
}
