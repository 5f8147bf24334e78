package server

import (
	"context"
	"errors"
	"net/http"
	"time"

	"connectrpc.com/connect/v2"

	"github.com/berthhq/berth/internal/access"
	"github.com/berthhq/berth/internal/auth"
	"github.com/berthhq/berth/internal/fault"
	"github.com/berthhq/berth/internal/gen/berth/v1/berthv1connect"
	"github.com/berthhq/berth/internal/ratelimit"
)

// authenticator turns a request's credentials into a principal.
type authenticator interface {
	Authenticate(ctx context.Context, c auth.Credentials) (access.Principal, error)
}

// authInterceptor enforces each RPC's declared access rule before anything
// is decoded: public RPCs pass; every other one needs credentials whose role
// grants the declared permission. A procedure without a rule is refused
// (NewRules already refuses to start with one, this is the belt to it).
func authInterceptor(rules access.Rules, authn authenticator, lim limiter, recheckEvery time.Duration) connect.ServerInterceptor {
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
			// every recheckEvery (through the auth cache), and end it when
			// they stop working or stop granting the permission.
			creds := credentials(call.RequestHeader())
			ctx, cancel := context.WithCancelCause(ctx)
			defer cancel(nil)
			go func() {
				tick := time.NewTicker(recheckEvery)
				defer tick.Stop()
				for {
					select {
					case <-ctx.Done():
						return
					case <-tick.C:
					}
					cur, err := authn.Authenticate(ctx, creds)
					switch {
					case errors.Is(err, fault.ErrUnauthenticated):
						cancel(err)
						return
					case err == nil && !access.Allows(cur.Role, rule.Permission):
						cancel(fault.New(fault.ErrPermissionDenied, "your role (%s) no longer grants %s", cur.Role, rule.Permission))
						return
					}
				}
			}()
			err = next(access.WithPrincipal(ctx, p), spec, stream)
			if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
				return cause
			}
			return err
		}
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
