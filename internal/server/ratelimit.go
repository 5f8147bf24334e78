package server

import (
	"context"
	"errors"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/berthhq/berth/internal/access"
	"github.com/berthhq/berth/internal/auth"
	"github.com/berthhq/berth/internal/config"
	"github.com/berthhq/berth/internal/fault"
	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
	"github.com/berthhq/berth/internal/ratelimit"
	"github.com/berthhq/berth/internal/valkey"
)

// limitNames say, in a refused call's message, which budget ran out.
var limitNames = map[string]string{
	ratelimit.Anonymous:          "unauthenticated requests from your address",
	ratelimit.AuthFailureAddress: "failed sign-ins from your address",
	ratelimit.AuthFailureAccount: "failed sign-ins to this account",
	ratelimit.Principal:          "requests by your account or key",
	ratelimit.TaskCreate:         "tasks created by your account",
}

// retryIn is a wait as people read it: whole seconds, at least one.
func retryIn(d time.Duration) string {
	return retrySeconds(d) + "s"
}

// retrySeconds is a wait as Retry-After gives it: whole seconds, rounded
// up, at least one.
func retrySeconds(d time.Duration) string {
	return strconv.FormatInt(max(int64(math.Ceil(d.Seconds())), 1), 10)
}

// limitOf returns the rate limit that refused err, if one did: a
// *ratelimit.LimitedError, or the account throttle of the auth service
// (failed sign-ins to one account, with a growing wait), which is
// answered as a refusal of the failed-sign-ins-to-this-account class with
// the throttle's own numbers.
func limitOf(err error) (*ratelimit.LimitedError, bool) {
	if le, ok := errors.AsType[*ratelimit.LimitedError](err); ok {
		return le, true
	}
	if te, ok := errors.AsType[*auth.ThrottledError](err); ok {
		return &ratelimit.LimitedError{Class: ratelimit.AuthFailureAccount, Decision: ratelimit.Decision{
			Limit: te.Free, Remaining: 0, Reset: te.Wait, RetryAfter: te.Wait,
		}}, true
	}
	return nil, false
}

// newLimiter builds the limiter of the configured classes, shared through
// Valkey when there is one. (WebSocket commands are limited per
// connection, where the connection lives, by package ws.)
func newLimiter(cfg config.RateLimits, shared *valkey.Client, reg prometheus.Registerer, now func() time.Time) *ratelimit.Limiter {
	class := func(r config.Rate) ratelimit.Class { return ratelimit.Class{Rate: r.PerSecond, Burst: r.Burst} }
	return ratelimit.New(map[string]ratelimit.Class{
		ratelimit.Anonymous:          class(cfg.Anonymous),
		ratelimit.AuthFailureAddress: class(cfg.AuthFailures),
		ratelimit.AuthFailureAccount: class(cfg.AuthFailures),
		ratelimit.Principal:          class(cfg.Principal),
		ratelimit.TaskCreate:         class(cfg.TaskCreate),
	}, ratelimit.Options{Valkey: shared, Registerer: reg, Now: now})
}

// limiter applies the rate limits to calls.
type limiter struct{ l *ratelimit.Limiter }

// allow counts one request of key in class and returns the refusal, if it
// is one; set receives the decision's headers.
func (l limiter) allow(ctx context.Context, class, key string, set func(ratelimit.Decision)) error {
	d, err := l.l.Allow(ctx, class, key)
	if err != nil {
		return err
	}
	if set != nil {
		set(d)
	}
	return d.Err(class)
}

// peek says whether one more request of key in class would be allowed,
// without counting it: failures are counted when they happen.
func (l limiter) peek(ctx context.Context, class, key string) error {
	d, err := l.l.Peek(ctx, class, key)
	if err != nil {
		return err
	}
	return d.Err(class)
}

// failed counts a failed authentication from addr (and, when known, for
// account).
func (l limiter) failed(ctx context.Context, addr, account string) {
	_, _ = l.l.Allow(ctx, ratelimit.AuthFailureAddress, addr)
	if account != "" {
		_, _ = l.l.Allow(ctx, ratelimit.AuthFailureAccount, account)
	}
}

// principalKey is the budget a principal draws on: its API key's own, or
// its account's.
func principalKey(p access.Principal) string {
	if p.APIKeyID != "" {
		return "key:" + p.APIKeyID
	}
	return "user:" + p.UserID
}

// allowCall is allow for an RPC: the decision's headers go on the call's
// response. (A closure that set them, passed to allow, was an allocation
// per call.)
func (l limiter) allowCall(ctx context.Context, class, key string) error {
	d, err := l.l.Allow(ctx, class, key)
	if err != nil {
		return err
	}
	setCallHeaders(ctx, d)
	return d.Err(class)
}

// setCallHeaders writes a decision's headers on the response of the call
// of ctx, if it is one.
func setCallHeaders(ctx context.Context, d ratelimit.Decision) {
	call, ok := connect.CallInfoForServerContext(ctx)
	if !ok {
		return
	}
	h := http.Header{}
	ratelimit.SetHeaders(h, d)
	for k, v := range h {
		call.ResponseHeader().SetValues(k, v)
	}
}

// addressKey is the key under which a source address's budgets are kept:
// the address itself for IPv4, and its /64 for IPv6, since one subscriber
// or host is routinely given a whole /64 and could otherwise draw on 2^64
// budgets. Anything that does not parse is its own key.
func addressKey(addr string) string {
	a, err := netip.ParseAddr(addr)
	if err != nil || !a.Is6() || a.Is4In6() {
		return addr
	}
	p, err := a.WithZone("").Prefix(64)
	if err != nil {
		return addr
	}
	return p.String()
}

// clientKey is the budget key of the address the request comes from.
func clientKey(ctx context.Context) string {
	return addressKey(access.RequestFrom(ctx).SourceAddress)
}

// loginLimits wraps the Login call's stream so that a sign-in to an
// account that has used up its failures is refused before the password is
// checked, and a failed one is counted for the account and the address.
func (l limiter) loginLimits(ctx context.Context, stream connect.ServerStream, next func(connect.ServerStream) error) error {
	addr := clientKey(ctx)
	ls := &loginStream{ServerStream: stream, ctx: ctx, l: l}
	err := next(ls)
	if errors.Is(err, fault.ErrUnauthenticated) {
		l.failed(ctx, addr, ls.account)
	}
	return err
}

// loginStream reads the account a Login call is for.
type loginStream struct {
	connect.ServerStream
	ctx     context.Context
	l       limiter
	account string
}

func (s *loginStream) Receive(msg any) error {
	if err := s.ServerStream.Receive(msg); err != nil {
		return err
	}
	if req, ok := msg.(*berthv1.LoginRequest); ok {
		s.account = "account:" + strings.ToLower(strings.TrimSpace(req.GetEmail()))
		if err := s.l.peek(s.ctx, ratelimit.AuthFailureAccount, s.account); err != nil {
			return err
		}
	}
	return nil
}

// writeLimited answers a plain-HTTP request that a rate limit refused: 429
// with the refusing class's RateLimit-* headers and Retry-After, and the
// same JSON error body as the streams' other refusals. Any other error
// (an unknown class: a bug) is a 500.
func writeLimited(w http.ResponseWriter, err error) {
	le, ok := limitOf(err)
	if !ok {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"code": "internal", "message": "internal error"})
		return
	}
	ratelimit.SetHeaders(w.Header(), le.Decision)
	writeJSON(w, http.StatusTooManyRequests, map[string]string{
		"code": "resource_exhausted", "reason": "RATE_LIMIT_EXCEEDED",
		"message": "too many requests (" + limitNames[le.Class] + "); retry in " + retryIn(le.Decision.RetryAfter),
	})
}

// failureRecorder remembers the status a handler answered with, so that a
// 401 can be counted as a failed sign-in. Unwrap lets the SSE handler
// reach the flusher, and the WebSocket upgrade the hijacker, of the real
// writer.
type failureRecorder struct {
	http.ResponseWriter
	status int
}

func (w *failureRecorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *failureRecorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *failureRecorder) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *failureRecorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// isRPC reports whether r is a Connect, gRPC or gRPC-Web call: its path is
// /<package>.<Service>/<Method>.
func isRPC(r *http.Request) bool {
	svc, method, ok := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	return ok && strings.Contains(svc, ".") && method != "" && !strings.Contains(method, "/")
}

// hasCredentials reports whether r presents any credentials.
func hasCredentials(r *http.Request) bool {
	if r.Header.Get("Authorization") != "" || r.Header.Get("X-Api-Key") != "" || r.URL.Query().Get("ticket") != "" {
		return true
	}
	_, err := r.Cookie(auth.SessionCookie)
	return err == nil
}
