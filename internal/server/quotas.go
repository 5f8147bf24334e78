package server

import (
	"context"
	"errors"
	"math"
	"net/http"
	"strconv"

	"connectrpc.com/connect/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/berthhq/berth/internal/access"
	"github.com/berthhq/berth/internal/fault"
	"github.com/berthhq/berth/internal/quota"
	"github.com/berthhq/berth/internal/ratelimit"
	"github.com/berthhq/berth/internal/telemetry"
)

// streamKey is the key a principal's streams are counted under: its user,
// whichever credentials (token, API key, ticket) it uses.
func streamKey(p access.Principal) string { return "user:" + p.UserID }

// admitStream is the admission of an SSE stream, a WebSocket connection or
// a WebSocket subscription: it spends one request of the principal's
// budget (the RPCs' rate limit, whose headers go on h when h is not nil)
// and takes one of its stream slots. A refusal is a fault with the wait
// to retry after.
func admitStream(lim limiter, slots *quota.Streams) func(context.Context, access.Principal, http.Header) (func(), error) {
	return func(ctx context.Context, p access.Principal, h http.Header) (func(), error) {
		var set func(ratelimit.Decision)
		if h != nil {
			set = func(d ratelimit.Decision) { ratelimit.SetHeaders(h, d) }
		}
		if err := lim.allow(ctx, ratelimit.Principal, principalKey(p), set); err != nil {
			if le, ok := errors.AsType[*ratelimit.LimitedError](err); ok {
				return nil, &fault.Error{Kind: fault.ErrResourceExhausted, RetryAfter: le.Decision.RetryAfter, Cause: err,
					Message: "too many requests (" + limitNames[le.Class] + "); retry in " + retryIn(le.Decision.RetryAfter)}
			}
			return nil, err
		}
		return slots.Acquire(ctx, streamKey(p))
	}
}

// streamSlots holds a stream slot of the caller for each Connect server
// stream (StreamTaskLogs, WatchWorkspace) while it runs. It comes after the
// access check, which spent the request budget and put the principal in
// the context.
func streamSlots(slots *quota.Streams) connect.ServerInterceptor {
	return func(next connect.ServerFunc) connect.ServerFunc {
		return func(ctx context.Context, spec connect.Spec, ss connect.ServerStream) error {
			// A stream stays under this frame while it is open: the
			// slot is taken in a call that returns (takeSlot).
			release, err := takeSlot(ctx, slots, spec)
			if err != nil {
				return err
			}
			if release != nil {
				defer release()
			}
			return next(ctx, spec, ss)
		}
	}
}

// takeSlot takes a slot for a server stream of an authenticated caller,
// and returns its release, or nil for any other call. A refusal that can
// be retried sets the response's Retry-After.
func takeSlot(ctx context.Context, slots *quota.Streams, spec connect.Spec) (release func(), _ error) {
	p, ok := access.PrincipalFrom(ctx)
	if spec.StreamType != connect.StreamTypeServer || !ok {
		return nil, nil
	}
	release, err := slots.Acquire(ctx, streamKey(p))
	if err != nil {
		if d, ok := fault.RetryAfter(err); ok {
			if call, ok := connect.CallInfoForServerContext(ctx); ok {
				call.ResponseHeader().Set("Retry-After", strconv.FormatInt(max(int64(math.Ceil(d.Seconds())), 1), 10))
			}
		}
		return nil, err
	}
	return release, nil
}

// connectionsRefused counts the connections the listener's cap refused.
func connectionsRefused(reg prometheus.Registerer) func() {
	c := telemetry.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "berth_connections_refused_total",
		Help: "Connections the main listener answered with 503 (or closed) because it held --max-connections.",
	}))
	return c.Inc
}
