package server

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect/v2"

	"github.com/berthhq/berth/internal/access"
	"github.com/berthhq/berth/internal/auth"
	"github.com/berthhq/berth/internal/fault"
	"github.com/berthhq/berth/internal/gen/berth/v1/berthv1connect"
	"github.com/berthhq/berth/internal/ratelimit"
	"github.com/berthhq/berth/internal/stream"
)

// authenticator turns a request's credentials into a principal.
type authenticator interface {
	Authenticate(ctx context.Context, c auth.Credentials) (access.Principal, error)
}

// authInterceptor enforces each RPC's declared access rule before anything
// is decoded: public RPCs pass; every other one needs credentials whose role
// grants the declared permission. A procedure without a rule is refused
// (NewRules already refuses to start with one, this is the belt to it).
//
// A server stream's credentials are checked again every recheckEvery, from
// one timer wheel for all of them (see recheckStream).
func authInterceptor(rules access.Rules, authn authenticator, lim limiter, recheckEvery time.Duration) connect.ServerInterceptor {
	wheel := stream.NewWheel(recheckEvery)
	return func(next connect.ServerFunc) connect.ServerFunc {
		return func(ctx context.Context, spec connect.Spec, stream connect.ServerStream) error {
			rule, ok := rules[spec.Procedure]
			if !ok {
				return fault.New(fault.ErrPermissionDenied, "%s has no access rule", spec.Procedure)
			}
			addr := clientKey(ctx)
			// An address that used up its failed sign-ins is refused before
			// anything is checked.
			if err := lim.peek(ctx, ratelimit.AuthFailureAddress, addr); err != nil {
				return err
			}
			if rule.Public {
				if err := lim.allow(ctx, ratelimit.Anonymous, addr, callHeaders(ctx)); err != nil {
					return err
				}
				if spec.Procedure == berthv1connect.AuthServiceLoginProcedure {
					return lim.loginLimits(ctx, stream, func(s connect.ServerStream) error { return next(ctx, spec, s) })
				}
				err := next(ctx, spec, stream)
				// A bad refresh token fails a sign-in; so does a Register
				// for a taken email, which would otherwise let an address
				// probe for accounts at the anonymous rate.
				if errors.Is(err, fault.ErrUnauthenticated) ||
					spec.Procedure == berthv1connect.AuthServiceRegisterProcedure && errors.Is(err, fault.ErrConflict) {
					lim.failed(ctx, addr, "")
				}
				return err
			}
			call, _ := connect.CallInfoForServerContext(ctx)
			p, err := authn.Authenticate(ctx, credentials(call.RequestHeader()))
			if err != nil {
				if errors.Is(err, fault.ErrUnauthenticated) {
					lim.failed(ctx, addr, "")
				}
				return err
			}
			if err := lim.allow(ctx, ratelimit.Principal, principalKey(p), callHeaders(ctx)); err != nil {
				return err
			}
			if info := requestInfoFrom(ctx); info != nil {
				info.setUser(p.UserID)
			}
			if !access.Allows(p.Role, rule.Permission) {
				return fault.New(fault.ErrPermissionDenied, "your role (%s) does not grant %s", p.Role, rule.Permission)
			}
			if !access.KeyMay(p, rule.Permission) {
				return fault.New(fault.ErrPermissionDenied,
					"this API key cannot manage API keys: only a member or admin key created with manage_keys can; sign in, or use such a key")
			}
			if spec.StreamType != connect.StreamTypeServer {
				return next(access.WithPrincipal(ctx, p), spec, stream)
			}
			// A server stream outlives this check: re-check its credentials
			// while it is open, and end it when they stop working or stop
			// granting the permission.
			ctx, stop := recheckStream(ctx, wheel, authn, credentials(call.RequestHeader()), rule.Permission)
			defer stop()
			err = next(access.WithPrincipal(ctx, p), spec, stream)
			if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
				return cause
			}
			return err
		}
	}
}

// recheckStream re-checks a server stream's credentials creds (through the
// auth cache) every period of wheel, and ends the context it returns — with
// the cause the stream then ends with — when they stop working or their
// role no longer grants permission. The stream holds a place on the wheel,
// not a goroutine and a ticker of its own: a check runs on a goroutine that
// lives only while it does (one at a time). stop takes the stream off the
// wheel, ends the context and waits for a check in flight.
func recheckStream(ctx context.Context, wheel *stream.Wheel, authn authenticator, creds auth.Credentials, permission string) (_ context.Context, stop func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	var checking atomic.Bool
	var checks sync.WaitGroup
	timer := wheel.StartFunc(func() {
		// On the wheel's goroutine, which must not wait: the check runs
		// on a goroutine of its own, and is skipped while one still runs.
		if ctx.Err() != nil || !checking.CompareAndSwap(false, true) {
			return
		}
		checks.Go(func() {
			defer checking.Store(false)
			cur, err := authn.Authenticate(ctx, creds)
			switch {
			case errors.Is(err, fault.ErrUnauthenticated):
				cancel(err)
			case err == nil && !access.Allows(cur.Role, permission):
				cancel(fault.New(fault.ErrPermissionDenied, "your role (%s) no longer grants %s", cur.Role, permission))
			}
		})
	})
	return ctx, func() {
		timer.Stop() // no check starts after it returns
		cancel(nil)
		checks.Wait()
	}
}

// credentials collects what a call presents: the Authorization and
// X-API-Key headers and the session cookie.
func credentials(h *connect.Header) auth.Credentials {
	c := auth.Credentials{
		Authorization: h.Get("Authorization"),
		APIKey:        h.Get("X-Api-Key"),
	}
	if cookies := h.Values("Cookie"); len(cookies) > 0 {
		req := http.Request{Header: http.Header{"Cookie": cookies}}
		if ck, err := req.Cookie(auth.SessionCookie); err == nil {
			c.Cookie = ck.Value
		}
	}
	return c
}
