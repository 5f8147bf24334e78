package server

import (
	"context"
	"log/slog"

	"connectrpc.com/connect/v2"

	"github.com/berthhq/berth/internal/access"
	"github.com/berthhq/berth/internal/quota"
	"github.com/berthhq/berth/internal/stream"
)

// streamGate is four interceptors of the API, outermost first: errors
// (errorInterceptor), the stream drain (drain.interceptor with m), access
// (authInterceptor with a) and stream slots (streamSlots). It composes
// them as they are for every call, except an authenticated server stream,
// which it serves in one frame that does what the four do for it, in the
// same order and with the same helpers.
//
// The reason is memory: a server stream's goroutine stays parked under the
// interceptors for as long as the stream is open, and the Go runtime
// halves a parked goroutine's stack only while it uses less than a quarter
// of it. With the four frames, an idle StreamTaskLogs over HTTP/2 kept a
// 16 KiB stack; with one, 8 KiB (TestStreamStackDepth).
func streamGate(logger *slog.Logger, d *drain, m *stream.Metrics, a *authz, slots *quota.Streams) connect.ServerInterceptor {
	g := &gate{logger: logger, d: d, m: m, a: a, slots: slots}
	errs, drained, access, slotted := errorInterceptor(logger), d.interceptor(m), authInterceptor(a), streamSlots(slots)
	return func(next connect.ServerFunc) connect.ServerFunc {
		chain := errs(drained(access(slotted(next))))
		return func(ctx context.Context, spec connect.Spec, ss connect.ServerStream) (err error) {
			permission, ok := a.streamPermission(spec)
			if !ok {
				return chain(ctx, spec, ss)
			}
			defer g.translate(ctx, &spec, &err)
			s, err := g.open(ctx, permission, spec)
			if err != nil {
				return err
			}
			defer s.close()
			return g.d.ended(endedBy(s.ctx, next(s.ctx, spec, countingStream{ServerStream: ss, m: g.m})))
		}
	}
}

// gate is the state of streamGate.
type gate struct {
	logger *slog.Logger
	d      *drain
	m      *stream.Metrics
	a      *authz
	slots  *quota.Streams
}

// gatedStream is what an authenticated server stream holds while it is
// open: its context, which the drain ends at shutdown and a failed
// re-check of its credentials ends with its error as the cause, and what
// close releases. The drain and the re-checks share that one context
// rather than one each, as drain.interceptor's and recheckStream's do: a
// context that can be cancelled costs every idle stream its own record,
// its Done channel and its children's map.
type gatedStream struct {
	ctx       context.Context
	cancel    context.CancelCauseFunc
	closed    func()      // the drain's count of open streams
	stopAfter func() bool // the drain's hold on the stream
	stopCheck func()      // the re-checks (recheckOn)
	give      func()      // the slot (takeSlot), or nil
}

// translate is errorInterceptor's deferred call (translateError).
func (g *gate) translate(ctx context.Context, spec *connect.Spec, err *error) {
	translateError(ctx, g.logger, spec, err)
}

// open is what the drain, access and stream slots do before an
// authenticated server stream is served, in their order: it is counted
// open and held by the drain (drain.open), authorized and its credentials
// re-checked from then on (authz.openStream), and it takes a slot
// (takeSlot). On an error, what was taken is released again, in the
// reverse order, and the error is the one the interceptors would return.
func (g *gate) open(ctx context.Context, permission string, spec connect.Spec) (*gatedStream, error) {
	s := &gatedStream{closed: g.m.Opened(stream.TransportConnect)}
	s.ctx, s.cancel = context.WithCancelCause(ctx)
	s.stopAfter = context.AfterFunc(g.d.life, func() { s.cancel(nil) })
	p, creds, err := g.a.authorize(s.ctx, permission)
	if err != nil {
		err = g.d.ended(err)
		s.close()
		return nil, err
	}
	s.stopCheck = recheckOn(s.ctx, s.cancel, g.a.wheel, g.a.authn, creds, permission)
	s.ctx = access.WithPrincipal(s.ctx, p)
	if s.give, err = takeSlot(s.ctx, g.slots, spec); err != nil {
		err = g.d.ended(endedBy(s.ctx, err))
		s.close()
		return nil, err
	}
	return s, nil
}

// close releases what open took, in the reverse order.
func (s *gatedStream) close() {
	if s.give != nil {
		s.give()
	}
	if s.stopCheck != nil {
		s.stopCheck()
	}
	s.stopAfter()
	s.cancel(nil)
	s.closed()
}
