package sse

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"strconv"
	"time"

	gosse "github.com/tmaxmax/go-sse"

	"github.com/berthhq/berth/internal/event"
	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
	"github.com/berthhq/berth/internal/store"
	"github.com/berthhq/berth/internal/stream"
	"github.com/berthhq/berth/internal/task"
)

// errRevoked ends a stream whose credentials stopped working (signed out,
// revoked, disabled or demoted): an ending, not a failure to log.
var errRevoked = errors.New("the stream's credentials are no longer valid")

// heartbeat is the comment an idle stream gets at every heartbeat.
var heartbeat = func() *gosse.Message {
	m := &gosse.Message{}
	m.AppendComment("heartbeat")
	return m
}()

// conn writes one stream's events, all from the request's goroutine: it
// writes a batch of events, then flushes once, with one write deadline for
// the batch (a client that takes no bytes for the timeout is dropped).
type conn struct {
	h       *Handler
	w       http.ResponseWriter
	rc      *http.ResponseController
	sess    *gosse.Session
	timeout time.Duration
	loop    stream.Loop // the follower's hooks: flush, heartbeat
	pending bool        // written since the last flush
}

// sessionWriter is the writer go-sse's Session writes to: the first in
// w's Unwrap chain that can flush. Frames encoded once are written to it
// too, so that they and the session's messages keep their order whatever
// wraps w.
func sessionWriter(w http.ResponseWriter) http.ResponseWriter {
	for {
		switch v := w.(type) {
		case interface{ FlushError() error }, http.Flusher:
			return w
		case interface{ Unwrap() http.ResponseWriter }:
			w = v.Unwrap()
		default:
			return w
		}
	}
}

// arm starts a batch: the first write after a flush sets the deadline
// that the whole batch, its flush included, must meet.
func (c *conn) arm() {
	if !c.pending {
		c.pending = true
		_ = c.rc.SetWriteDeadline(time.Now().Add(c.timeout))
	}
}

// message writes m into the batch.
func (c *conn) message(m *gosse.Message) error {
	c.arm()
	return c.check(c.sess.Send(m))
}

// frame writes an event already encoded as an SSE frame (the same bytes
// for every subscriber) into the batch, and counts it sent.
func (c *conn) frame(b []byte) error {
	c.arm()
	if _, err := c.w.Write(b); err != nil {
		return c.check(err)
	}
	c.h.Metrics.Sent(stream.TransportSSE)
	return nil
}

// event writes m, an event, into the batch and counts it sent.
func (c *conn) event(m *gosse.Message) error {
	if err := c.message(m); err != nil {
		return err
	}
	c.h.Metrics.Sent(stream.TransportSSE)
	return nil
}

// flush sends the batch, if anything was written since the last flush.
func (c *conn) flush() error {
	if !c.pending {
		return nil
	}
	c.pending = false
	return c.check(c.sess.Flush())
}

// check counts a client dropped for taking no bytes in time.
func (c *conn) check(err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		c.h.Metrics.Dropped(stream.TransportSSE, "slow")
	}
	return err
}

// heartbeat re-checks the stream's credentials — ending the stream when
// they were revoked, logging when the check itself failed — and sends a
// comment line, so proxies and clients see the stream alive.
func (c *conn) heartbeat(ctx context.Context, recheck func(context.Context) error) error {
	if err := recheck(ctx); stream.Revoked(err) {
		return errRevoked
	} else if err != nil && ctx.Err() == nil && c.h.Logger != nil {
		c.h.Logger.WarnContext(ctx, "re-checking a stream's credentials failed", "error", err.Error())
	}
	if err := c.message(heartbeat); err != nil {
		return err
	}
	return c.flush()
}

// eventWriter is where a stream's events go: a conn (the request's
// goroutine) or a detached stream (its own connection).
type eventWriter interface {
	// frame writes an event already encoded as an SSE frame.
	frame(b []byte) error
	// event writes m, an event.
	event(m *gosse.Message) error
}

// writeTaskEvent writes a task's event to w: its kind as the event type,
// the payload (task.Payload) as JSON data, and, for a log line, its seq as
// the id (the end's id is endID). A line from the bus is encoded once for
// all its subscribers, and those bytes written (see logFrame).
func writeTaskEvent(w eventWriter, ev stream.TaskEvent) error {
	if ev.Line != nil {
		b, err := ev.Line.Encoded(event.FormatSSE, logFrame)
		if err != nil {
			return err
		}
		return w.frame(b)
	}
	m, ok, err := taskMessage(ev)
	if !ok || err != nil {
		return err
	}
	return w.event(m)
}

// writeWorkspaceEvent writes a workspace's event to w: its kind as the
// event type, the WorkspaceEvent as JSON data.
func writeWorkspaceEvent(w eventWriter, ev *berthv1.WorkspaceEvent) error {
	m, err := workspaceMessage(ev)
	if err != nil {
		return err
	}
	return w.event(m)
}

// taskEvent writes a task's event (see writeTaskEvent).
func (c *conn) taskEvent(ev stream.TaskEvent) error { return writeTaskEvent(c, ev) }

// taskMessage is a task's event as an SSE message; ok is false for an
// event that has none.
func taskMessage(ev stream.TaskEvent) (m *gosse.Message, ok bool, err error) {
	kind, data, ok := task.Payload(task.StreamResponse(ev))
	if !ok {
		return nil, false, nil
	}
	m = &gosse.Message{Type: gosse.Type(kind)}
	switch ev.Kind {
	case stream.KindLog:
		m.ID = gosse.ID(strconv.FormatInt(ev.Log.Seq, 10))
	case stream.KindEnd:
		m.ID = gosse.ID(endID)
	}
	b, err := stream.JSON.Marshal(data)
	if err != nil {
		return nil, false, err
	}
	m.AppendData(string(b))
	return m, true, nil
}

// logFrame is a log line's whole SSE frame, as taskEvent would write it
// for that line alone: the bytes go-sse writes for its message.
func logFrame(e store.LogEntry) ([]byte, error) {
	m, _, err := taskMessage(stream.TaskEvent{Kind: stream.KindLog, Log: e})
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if _, err := m.WriteTo(&b); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// workspaceEvent writes a workspace's event (see writeWorkspaceEvent).
func (c *conn) workspaceEvent(ev *berthv1.WorkspaceEvent) error { return writeWorkspaceEvent(c, ev) }

// workspaceMessage is a workspace's event as an SSE message.
func workspaceMessage(ev *berthv1.WorkspaceEvent) (*gosse.Message, error) {
	b, err := stream.JSON.Marshal(ev)
	if err != nil {
		return nil, err
	}
	m := &gosse.Message{Type: gosse.Type(ev.GetKind())}
	m.AppendData(string(b))
	return m, nil
}
