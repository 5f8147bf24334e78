package server

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	connectcors "connectrpc.com/cors"
	"github.com/rs/cors"

	"github.com/berthhq/berth/internal/auth"
	"github.com/berthhq/berth/internal/ratelimit"
	"github.com/berthhq/berth/internal/stream"
)

// front is the HTTP middleware between the access log (observe) and the
// routes, innermost last: JSON error bodies, security headers, CORS, CSRF,
// the body limit, the rate limits, long streams kept open, the console's
// fallback, then the mux. It is one handler that runs those checks in turn
// rather than a chain of eight, for the streams: a Connect server stream's
// goroutine stays parked under the middleware for as long as the stream
// is open, and the Go runtime halves a parked goroutine's stack only while
// it uses less than a quarter of it. The chain's sixteen frames alone kept
// every idle stream's stack at 16 KiB; here the checks run in calls that
// return before the route is served, and a stream parks under one frame.
type front struct {
	allowed   map[string]bool // the CORS origins
	cors      *cors.Cors      // nil without allowed origins
	csrf      *http.CrossOriginProtection
	maxBody   int64
	limits    limiter
	longPaths []string // streaming RPCs, which live as long as what they follow
	console   *console
	mux       *routeMux
}

// newFront builds the front of mux: CORS and CSRF trust the origins
// allowed, request bodies are capped at maxBody, limits budgets the
// plain-HTTP routes, and the requests to longPaths have no read or write
// deadline.
func newFront(allowed []string, maxBody int64, limits limiter, console *console, mux *routeMux, longPaths ...string) (*front, error) {
	f := &front{
		allowed:   make(map[string]bool, len(allowed)),
		csrf:      http.NewCrossOriginProtection(),
		maxBody:   maxBody,
		limits:    limits,
		longPaths: longPaths,
		console:   console,
		mux:       mux,
	}
	for _, origin := range allowed {
		f.allowed[origin] = true
		if err := f.csrf.AddTrustedOrigin(origin); err != nil {
			return nil, fmt.Errorf("trusted origin %q: %w", origin, err)
		}
	}
	if len(allowed) > 0 {
		f.cors = cors.New(cors.Options{
			AllowedOrigins:   allowed,
			AllowedMethods:   append(connectcors.AllowedMethods(), http.MethodOptions),
			AllowedHeaders:   append(connectcors.AllowedHeaders(), "Authorization", "X-Api-Key", "X-Request-Id", "Connect-Accept-Encoding", "Connect-Content-Encoding", "Grpc-Accept-Encoding", "Grpc-Encoding", "Traceparent", "Tracestate"),
			ExposedHeaders:   append(connectcors.ExposedHeaders(), "X-Request-Id", "Connect-Content-Encoding", "Grpc-Encoding", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "Retry-After", "Traceparent"),
			AllowCredentials: true,
			MaxAge:           7200,
		})
	}
	return f, nil
}

// ServeHTTP runs the checks (admit), serves the request with the mux when
// they pass, and then completes its answer: the rate limits count a 401
// to a request with credentials, and an error answer gets its JSON body.
// Its frame is what a stream parked under it holds: keep the work in the
// functions it calls.
func (f *front) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	jw := &jsonErrorWriter{ResponseWriter: w, r: r}
	if out, served, rec := f.admit(jw, r); out != nil {
		f.mux.ServeHTTP(out, served)
		// The mux names the route on the request it served, which may be
		// admit's copy of r: observe reports it from r.
		r.Pattern = served.Pattern
		if rec != nil {
			f.counted(rec, served)
		}
	}
	jw.finish()
}

// admit sets the security headers and runs the checks on r, in order. It
// returns the writer and request to serve, or a nil writer when a check
// answered r. rec, when not nil, is that writer: r carries credentials to
// a plain-HTTP route, and a 401 answer spends its address's failed
// sign-ins (counted). A long stream's writer is a stream.Batch, so that
// its handler flushes once per batch of messages.
func (f *front) admit(w *jsonErrorWriter, r *http.Request) (out http.ResponseWriter, served *http.Request, rec *failureRecorder) {
	h := w.Header()
	for _, sh := range securityValues {
		h[sh.key] = sh.value
	}
	if !f.allowCORS(w, r) || !f.allowCSRF(w, r) {
		return nil, r, nil
	}
	if r.ContentLength > f.maxBody {
		http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
		return nil, r, nil
	}
	r.Body = http.MaxBytesReader(w, r.Body, f.maxBody)
	out = w
	if !isRPC(r) && r.URL.Path != "/health" && r.URL.Path != "/ready" {
		creds, ok := f.limitHTTP(w, r)
		if !ok {
			return nil, r, nil
		}
		if creds {
			rec = &failureRecorder{ResponseWriter: w}
			out = rec
		}
	}
	if slices.Contains(f.longPaths, r.URL.Path) {
		// net/http's ReadTimeout would otherwise cancel them mid-stream;
		// the SSE handlers do the same for themselves.
		rc := http.NewResponseController(out)
		_ = rc.SetReadDeadline(time.Time{})
		_ = rc.SetWriteDeadline(time.Time{})
		out, r = stream.Batched(out, r)
	}
	// GET and HEAD requests the mux has no route for are offered to the
	// console first.
	if (r.Method == http.MethodGet || r.Method == http.MethodHead) && !isAPIPath(r.URL.Path) {
		if _, pattern := f.mux.Handler(r); pattern == "" && f.console.serve(out, r) {
			return nil, r, nil
		}
	}
	return out, r, rec
}

// securityValues are the seeds' security headers, keys in canonical form
// and each value built once: setting them copies a slice header instead of
// allocating six slices per response. Header.Set replaces a value and Add
// appends past its capacity of one, so no response can change the shared
// arrays. They are a slice rather than a map, which costs more to range
// over than the six are to set.
var securityValues = []securityHeader{
	{"X-Content-Type-Options", []string{"nosniff"}},
	{"X-Frame-Options", []string{"DENY"}},
	{"X-Xss-Protection", []string{"1; mode=block"}},
	{"Strict-Transport-Security", []string{"max-age=31536000; includeSubDomains"}},
	{"Content-Security-Policy", []string{"default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"}},
	{"Referrer-Policy", []string{"strict-origin-when-cross-origin"}},
}

// securityHeader is one of securityValues.
type securityHeader struct {
	key   string
	value []string
}

// allowCORS lets the configured origins (never "*": credentials are
// allowed) call the API from browsers, with the header lists that the
// Connect, gRPC-Web and gRPC protocols need; the rate-limit headers are
// exposed too, so a browser client can pace itself, and the W3C trace
// context is allowed in and traceparent out, so a traced browser client
// continues its trace here and learns the server's. It answers preflight
// requests itself, and reports whether r goes on.
//
// A preflight from an origin that is not allowed is refused with 403
// and a message (jsonErrorWriter gives it the error body), not a bare 204
// the browser then quietly refuses.
func (f *front) allowCORS(w http.ResponseWriter, r *http.Request) bool {
	if origin := r.Header.Get("Origin"); r.Method == http.MethodOptions && origin != "" &&
		r.Header.Get("Access-Control-Request-Method") != "" && !f.allowed[origin] {
		http.Error(w, "cross-origin requests from "+origin+" are not allowed (the server's --allowed-origins does not list it)", http.StatusForbidden)
		return false
	}
	if f.cors == nil {
		return true
	}
	// The library's own handler: a preflight is answered (with
	// OptionsSuccessStatus) and stops here; any other request gets its
	// CORS headers and goes on.
	f.cors.HandlerFunc(w, r)
	return r.Method != http.MethodOptions || r.Header.Get("Access-Control-Request-Method") == ""
}

// allowCSRF refuses cross-origin state-changing requests that would be
// authenticated by the browser session cookie alone (net/http's
// CrossOriginProtection: Sec-Fetch-Site, then Origin against Host, with the
// configured origins trusted). Requests that carry their own credentials in
// a header cannot be forged by another site and pass untouched.
func (f *front) allowCSRF(w http.ResponseWriter, r *http.Request) bool {
	if r.Header.Get("Authorization") == "" && r.Header.Get("X-Api-Key") == "" {
		if _, err := r.Cookie(auth.SessionCookie); err == nil {
			if err := f.csrf.Check(r); err != nil {
				http.Error(w, "cross-origin request refused: a request authenticated by the session cookie must come from this site", http.StatusForbidden)
				return false
			}
		}
	}
	return true
}

// limitHTTP applies the budgets to the plain-HTTP routes (SSE, the
// WebSocket upgrade, OIDC, the console); RPCs are limited by the auth
// interceptor, and /health, /ready by nothing. A request without
// credentials, and every request to the OIDC routes (which never read the
// credentials a request carries), spends the anonymous budget. A request
// with credentials (creds) — checked by the SSE and WebSocket handlers
// themselves — is refused while its address is out of failed sign-ins,
// and when it is answered 401 it spends that budget (counted), as a
// failed RPC does; so a flood of bad tokens, keys or tickets on a stream
// route ends in 429. ok is false when r was refused.
func (f *front) limitHTTP(w http.ResponseWriter, r *http.Request) (creds, ok bool) {
	ctx := r.Context()
	key := clientKey(ctx)
	creds = hasCredentials(r)
	if creds {
		if err := f.limits.peek(ctx, ratelimit.AuthFailureAddress, key); err != nil {
			writeLimited(w, err)
			return creds, false
		}
	}
	if !creds || strings.HasPrefix(r.URL.Path, "/auth/oidc/") {
		err := f.limits.allow(ctx, ratelimit.Anonymous, key, func(d ratelimit.Decision) { ratelimit.SetHeaders(w.Header(), d) })
		if err != nil {
			writeLimited(w, err)
			return creds, false
		}
	}
	return creds, true
}

// counted spends r's address's failed sign-ins when the request with
// credentials that rec recorded was answered 401 (see limitHTTP).
func (f *front) counted(rec *failureRecorder, r *http.Request) {
	if rec.status == http.StatusUnauthorized {
		f.limits.failed(r.Context(), clientKey(r.Context()), "")
	}
}
