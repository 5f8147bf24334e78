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
func authInterceptor(a *authz) connect.ServerInterceptor {
	return func(next connect.ServerFunc) connect.ServerFunc {
		return func(ctx context.Context, spec connect.Spec, ss connect.ServerStream) error {
			permission, ok := a.streamPermission(spec)
			if !ok {
				return a.call(ctx, spec, ss, next)
			}
			// An authenticated server stream outlives this check: its
			// credentials are checked again while it is open, and it ends
			// when they stop working or stop granting the permission. Its
			// goroutine stays under this frame while the stream is open;
			// the checks run in calls that return first (openStream).
			ctx, stop, err := a.openStream(ctx, permission)
			if err != nil {
				return err
			}
			defer stop()
			return endedBy(ctx, next(ctx, spec, ss))
		}
	}
}

// endedBy is the error of a server stream served with ctx (openStream's)
// that ended with err: the re-check's, when one ended it.
func endedBy(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	return err
}

// authz is the state of authInterceptor.
type authz struct {
	rules access.Rules
	authn authenticator
	lim   limiter
	wheel *stream.Wheel // of the server streams' re-checks
}

// newAuthz is the state of an authInterceptor that enforces rules,
// authenticates with authn, spends lim's budgets and re-checks a server
// stream's credentials every recheckEvery.
func newAuthz(rules access.Rules, authn authenticator, lim limiter, recheckEvery time.Duration) *authz {
	return &authz{rules: rules, authn: authn, lim: lim, wheel: stream.NewWheel(recheckEvery)}
}

// streamPermission is the permission a call to spec needs, when it is an
// authenticated server stream (ok); any other call is ok false.
func (a *authz) streamPermission(spec connect.Spec) (permission string, ok bool) {
	rule, found := a.rules[spec.Procedure]
	if !found || rule.Public || spec.StreamType != connect.StreamTypeServer {
		return "", false
	}
	return rule.Permission, true
}

// call is authInterceptor for every call but an authenticated server
// stream: a unary call, or any call to a public procedure.
func (a *authz) call(ctx context.Context, spec connect.Spec, ss connect.ServerStream, next connect.ServerFunc) error {
	rule, ok := a.rules[spec.Procedure]
	if !ok {
		return fault.New(fault.ErrPermissionDenied, "%s has no access rule", spec.Procedure)
	}
	if !rule.Public {
		p, _, err := a.authorize(ctx, rule.Permission)
		if err != nil {
			return err
		}
		return next(access.WithPrincipal(ctx, p), spec, ss)
	}
	addr := clientKey(ctx)
	// An address that used up its failed sign-ins is refused before
	// anything is checked.
	if err := a.lim.peek(ctx, ratelimit.AuthFailureAddress, addr); err != nil {
		return err
	}
	if err := a.lim.allowCall(ctx, ratelimit.Anonymous, addr); err != nil {
		return err
	}
	if spec.Procedure == berthv1connect.AuthServiceLoginProcedure {
		return a.lim.loginLimits(ctx, ss, func(s connect.ServerStream) error { return next(ctx, spec, s) })
	}
	err := next(ctx, spec, ss)
	// A bad refresh token fails a sign-in; so does a Register for a taken
	// email, which would otherwise let an address probe for accounts at
	// the anonymous rate.
	if errors.Is(err, fault.ErrUnauthenticated) ||
		spec.Procedure == berthv1connect.AuthServiceRegisterProcedure && errors.Is(err, fault.ErrConflict) {
		a.lim.failed(ctx, addr, "")
	}
	return err
}

// authorize checks the credentials of a call to a procedure that needs
// permission, and returns its principal and the credentials it presented.
func (a *authz) authorize(ctx context.Context, permission string) (access.Principal, auth.Credentials, error) {
	addr := clientKey(ctx)
	// An address that used up its failed sign-ins is refused before
	// anything is checked.
	if err := a.lim.peek(ctx, ratelimit.AuthFailureAddress, addr); err != nil {
		return access.Principal{}, auth.Credentials{}, err
	}
	call, _ := connect.CallInfoForServerContext(ctx)
	creds := credentials(call.RequestHeader())
	p, err := a.authn.Authenticate(ctx, creds)
	if err != nil {
		if errors.Is(err, fault.ErrUnauthenticated) {
			a.lim.failed(ctx, addr, "")
		}
		return access.Principal{}, auth.Credentials{}, err
	}
	if err := a.lim.allowCall(ctx, ratelimit.Principal, principalKey(p)); err != nil {
		return access.Principal{}, auth.Credentials{}, err
	}
	if info := requestInfoFrom(ctx); info != nil {
		info.setUser(p.UserID)
	}
	if !access.Allows(p.Role, permission) {
		return access.Principal{}, auth.Credentials{}, fault.New(fault.ErrPermissionDenied, "your role (%s) does not grant %s", p.Role, permission)
	}
	if !access.KeyMay(p, permission) {
		return access.Principal{}, auth.Credentials{}, fault.New(fault.ErrPermissionDenied,
			"this API key cannot manage API keys: only a member or admin key created with manage_keys can; sign in, or use such a key")
	}
	return p, creds, nil
}

// openStream authorizes an authenticated server stream, and returns the
// context to serve it with: its principal's, ended with the cause the
// stream ends with when a re-check fails (recheckStream). The caller
// calls stop when the stream is done.
func (a *authz) openStream(ctx context.Context, permission string) (_ context.Context, stop func(), _ error) {
	p, creds, err := a.authorize(ctx, permission)
	if err != nil {
		return nil, nil, err
	}
	ctx, stop = recheckStream(ctx, a.wheel, a.authn, creds, permission)
	return access.WithPrincipal(ctx, p), stop, nil
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
	return ctx, recheckOn(ctx, cancel, wheel, authn, creds, permission)
}

// recheckOn is recheckStream on a context the caller made, ctx, which
// cancel ends: with the failed check's error as its cause, or with none
// (context.Canceled) when stop is called.
func recheckOn(ctx context.Context, cancel context.CancelCauseFunc, wheel *stream.Wheel, authn authenticator, creds auth.Credentials, permission string) (stop func()) {
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
	return func() {
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
