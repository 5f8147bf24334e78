package server

import (
	"context"
	"errors"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connectproto"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/berthhq/berth/internal/stream"
)

// reconnectAfter is the delay a stream ended by a shutdown suggests before
// the client reconnects (to another instance, or this one restarted).
const reconnectAfter = 2 * time.Second

// drain ends the Connect server streams when the server shuts down, so a
// graceful shutdown does not wait out its grace for streams that would
// outlive it: every open stream's context is cancelled and the stream ends
// with Unavailable and a RetryInfo hint, from which clients resume
// (StreamTaskLogs from the last seq they received). Each stream ends with
// the drain's context through context.AfterFunc: no goroutine per stream
// waits for the shutdown.
type drain struct {
	life     context.Context
	shutdown context.CancelFunc
}

func newDrain() *drain {
	life, shutdown := context.WithCancel(context.Background())
	return &drain{life: life, shutdown: shutdown}
}

// Shutdown ends every open Connect stream. Register it with
// http.Server.RegisterOnShutdown.
func (d *drain) Shutdown() { d.shutdown() }

// interceptor counts the server streams (open, messages sent) and ends
// them at shutdown. Unary calls pass through: Shutdown lets them finish.
func (d *drain) interceptor(m *stream.Metrics) connect.ServerInterceptor {
	return func(next connect.ServerFunc) connect.ServerFunc {
		return func(ctx context.Context, spec connect.Spec, ss connect.ServerStream) error {
			if spec.StreamType != connect.StreamTypeServer {
				return next(ctx, spec, ss)
			}
			// A stream stays under this frame while it is open: what it
			// takes is taken in a call that returns (open).
			ctx, o := d.open(ctx, m)
			defer o.close()
			return d.ended(next(ctx, spec, countingStream{ServerStream: ss, m: m}))
		}
	}
}

// openStream is what a server stream holds of the drain while it is
// open.
type openStream struct {
	closed, cancel func()
	stopAfter      func() bool
}

// open counts a server stream open and returns its context, which the
// drain ends at shutdown, and what close releases.
func (d *drain) open(ctx context.Context, m *stream.Metrics) (context.Context, openStream) {
	closed := m.Opened(stream.TransportConnect)
	ctx, cancel := context.WithCancel(ctx)
	return ctx, openStream{closed: closed, cancel: cancel, stopAfter: context.AfterFunc(d.life, cancel)}
}

// close releases what open took, in the reverse order.
func (o openStream) close() {
	o.stopAfter()
	o.cancel()
	o.closed()
}

// ended is the error a server stream that ended with err returns: the
// shutdown's when the drain ended it.
func (d *drain) ended(err error) error {
	if d.life.Err() != nil && (err == nil || errors.Is(err, context.Canceled)) {
		return shuttingDown()
	}
	return err
}

// shuttingDown is the error a stream ended by a shutdown returns.
func shuttingDown() error {
	err := connect.NewError(connect.CodeUnavailable, "the server is shutting down: reconnect and resume from the last seq you received")
	if d, derr := connectproto.NewErrorDetail(&errdetails.RetryInfo{RetryDelay: durationpb.New(reconnectAfter)}); derr == nil {
		err = err.WithDetail(d)
	}
	return err
}

// countingStream counts the messages a server stream sends.
type countingStream struct {
	connect.ServerStream
	m *stream.Metrics
}

func (s countingStream) Send(msg any) error {
	err := s.ServerStream.Send(msg)
	if err == nil {
		s.m.Sent(stream.TransportConnect)
	}
	return err
}
