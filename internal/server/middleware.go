package server

import (
	"context"
	"crypto/rand"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/google/uuid"

	"github.com/berthhq/berth/internal/access"
	"github.com/berthhq/berth/internal/stream"
	"github.com/berthhq/berth/internal/telemetry"
)

// requestInfo is filled in as a request passes through the layers and read
// by the access log when it is done: the RPC layer adds what only it knows
// (the caller, the Connect code).
type requestInfo struct {
	id string

	mu     sync.Mutex
	userID string
	code   string
}

func (i *requestInfo) setUser(id string) {
	i.mu.Lock()
	i.userID = id
	i.mu.Unlock()
}

func (i *requestInfo) setCode(c connect.Code) {
	i.mu.Lock()
	i.code = c.String()
	i.mu.Unlock()
}

type requestInfoKey struct{}

func requestInfoFrom(ctx context.Context) *requestInfo {
	info, _ := ctx.Value(requestInfoKey{}).(*requestInfo)
	return info
}

func requestIDFrom(ctx context.Context) string {
	if info := requestInfoFrom(ctx); info != nil {
		return info.id
	}
	return ""
}

// validRequestID accepts a client's X-Request-Id only if it is short and
// plain, so it can go into logs and headers unescaped.
func validRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for _, r := range id {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' || r == ':'
		if !ok {
			return false
		}
	}
	return true
}

// newRequestID is a new random (version 4) UUID, as uuid.NewString makes
// one, from crypto/rand as it does, in one allocation instead of two:
// uuid.NewRandom reads through an io.Reader, which moves its array to the
// heap, while crypto/rand.Read fills this one on the stack.
func newRequestID() string {
	var u uuid.UUID
	_, _ = rand.Read(u[:])  // it never returns an error: it crashes the program instead
	u[6] = u[6]&0x0f | 0x40 // version 4
	u[8] = u[8]&0x3f | 0x80 // the RFC 4122 variant
	return u.String()
}

// statusRecorder remembers the status code written through it. Unwrap lets
// http.ResponseController reach the flusher of the real writer, which
// streaming responses need.
type statusRecorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusRecorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusRecorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *statusRecorder) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusRecorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// sourceAddress is the address a request comes from: the peer's, unless
// the peer is a trusted proxy, in which case X-Forwarded-For is read from
// the right, skipping trusted proxies, and the first other address is the
// client (entries further left were written by the client itself and are
// not believed). Without trusted proxies the header is ignored.
func sourceAddress(r *http.Request, trusted []netip.Prefix) string {
	host := r.RemoteAddr
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	peer, err := netip.ParseAddr(host)
	if err != nil || !isTrusted(peer, trusted) {
		return host
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return peer.String() // a malformed chain: believe only the peer
		}
		a = a.Unmap()
		if !isTrusted(a, trusted) {
			return a.String()
		}
	}
	return peer.String()
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	a = a.Unmap()
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// observe is the outermost middleware: it gives the request an id (the
// client's X-Request-Id if usable, else a new UUID) echoed in the response,
// recovers panics outside the RPC layer, records HTTP metrics and writes one
// log line when the request is done.
func observe(logger *slog.Logger, metrics *httpMetrics, trusted []netip.Prefix, next http.Handler) http.Handler {
	return &observer{logger: logger, metrics: metrics, trusted: trusted, next: next}
}

// observer is observe's handler.
type observer struct {
	logger  *slog.Logger
	metrics *httpMetrics
	trusted []netip.Prefix
	next    http.Handler
}

// ServeHTTP starts the request (begin), serves it, and ends it (end).
// Its frame is what a Connect stream parked under it holds for as long as
// it is open (see front): the work is in the calls before and after.
func (o *observer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	st, r := o.begin(w, r)
	defer o.end(st, r)
	o.next.ServeHTTP(&st.rec, r)
}

// begin gives r its id, its state and the context values the layers below
// read, and counts it in flight.
func (o *observer) begin(w http.ResponseWriter, r *http.Request) (*requestState, *http.Request) {
	start := time.Now()
	id := r.Header.Get("X-Request-Id")
	if !validRequestID(id) {
		id = newRequestID()
	}
	// One allocation for what the layers below fill in, the writer that
	// records the status, the id's header value and the request's context.
	st := &requestState{
		info:     requestInfo{id: id},
		rec:      statusRecorder{ResponseWriter: w},
		idHeader: [1]string{id},
		req:      access.Request{ID: id, SourceAddress: sourceAddress(r, o.trusted), UserAgent: r.UserAgent()},
		start:    start,
		o:        o,
	}
	st.ctx = requestContext{Context: r.Context(), st: st}
	w.Header()["X-Request-Id"] = st.idHeader[:]
	o.metrics.inFlight.Inc()
	return st, r.WithContext(&st.ctx)
}

// end completes the request, unless its handler detached it, and
// recovers a panic of its handler: it is ServeHTTP's deferred call, so
// that recover sees that panic.
func (o *observer) end(st *requestState, r *http.Request) {
	if p := recover(); p != nil {
		if p == http.ErrAbortHandler {
			if st.detached != nil {
				st.detached()
			} else {
				o.metrics.inFlight.Dec()
			}
			panic(p)
		}
		o.logger.ErrorContext(r.Context(), "panic serving request", "panic", p)
		if st.detached != nil {
			st.detached() // its stream may never finish it
		} else if st.rec.status == 0 {
			http.Error(&st.rec, "internal error", http.StatusInternalServerError)
		}
	}
	if st.detached != nil {
		// The writer is the handler's no more: the stream must not keep
		// the connection's buffers alive through it.
		st.rec.ResponseWriter = nil
		return
	}
	endOf(r).finish(r.Context(), o.logger, o.metrics, st)
}

// requestState is a request's requestInfo, status recorder, the value of
// its X-Request-Id header (Header.Set replaces it, Add appends past its
// capacity of one), its access.Request, its start, its context and, once
// its handler detached it, its finish: allocated together.
type requestState struct {
	info     requestInfo
	rec      statusRecorder
	idHeader [1]string
	req      access.Request
	start    time.Time
	o        *observer
	ctx      requestContext
	detached func()
}

// Detach is the request's stream.Detacher: a handler that serves its
// connection past its return (a hijacked stream) detaches the request,
// which is then completed when the stream ends. finish keeps no
// reference to the request or its writer, which would hold the
// connection's buffers.
func (st *requestState) Detach(r *http.Request) (finish func()) {
	end, ctx := endOf(r), r.Context()
	st.detached = sync.OnceFunc(func() { end.finish(ctx, st.o.logger, st.o.metrics, st) })
	return st.detached
}

// requestContext is the context of a request below observe: its parent's,
// answering the values that observe gives every request (its requestInfo,
// access.Request and stream.Detacher) from the requestState it is part
// of. A context.WithValue for each would cost three allocations more per
// request, and three more layers for every Value below to walk.
type requestContext struct {
	context.Context
	st *requestState
}

func (c *requestContext) Value(key any) any {
	switch key.(type) {
	case requestInfoKey:
		return &c.st.info
	case access.RequestKey:
		return &c.st.req
	case stream.DetachKey:
		return c.st
	}
	return c.Context.Value(key)
}

// requestEnd is what completing a request needs of it.
type requestEnd struct {
	method, pattern, path, remote, proto string
}

// endOf is r's requestEnd, once routed.
func endOf(r *http.Request) requestEnd {
	return requestEnd{method: r.Method, pattern: r.Pattern, path: r.URL.Path, remote: r.RemoteAddr, proto: r.Proto}
}

// finish completes a request: the in-flight gauge, its span's name and
// status, its metrics and its access log line.
func (e requestEnd) finish(ctx context.Context, logger *slog.Logger, metrics *httpMetrics, st *requestState) {
	metrics.inFlight.Dec()
	status := st.rec.status
	if status == 0 {
		status = http.StatusOK
	}
	route := routeLabel(e.pattern)
	elapsed := time.Since(st.start)
	telemetry.EndRequest(ctx, e.method, route, status)
	metrics.observe(e.method, route, status, elapsed)
	e.log(ctx, logger, &st.info, &st.rec, status, elapsed)
}

// log writes the access log line of a request served.
func (e requestEnd) log(ctx context.Context, logger *slog.Logger, info *requestInfo, rec *statusRecorder, status int, elapsed time.Duration) {
	if !logger.Enabled(ctx, slog.LevelInfo) {
		return
	}
	info.mu.Lock()
	user, code := info.userID, info.code
	info.mu.Unlock()
	// The record is built here rather than by logger.LogAttrs, which asks
	// the runtime for its caller's program counter on every call: berth's
	// handlers do not log sources, and that walk of the stack was an eighth
	// of the line's cost.
	r := slog.NewRecord(time.Now(), slog.LevelInfo, "request", 0)
	attrs := append(make([]slog.Attr, 0, 10),
		slog.String("method", e.method),
		slog.String("path", e.path),
		slog.Int("status", status),
		slog.Int64("bytes", rec.bytes),
		slog.Duration("duration", elapsed),
		slog.String("remote", e.remote),
		slog.String("proto", e.proto),
	)
	if user != "" {
		attrs = append(attrs, slog.String("user", user))
	}
	if code != "" {
		attrs = append(attrs, slog.String("code", code))
	}
	h := logger.Handler()
	if ids, ok := h.(requestIDHandler); ok {
		// The request id goes in with the rest, last, where ids would
		// add it, and the handler under ids writes the line: the record
		// grows its attributes once instead of twice.
		attrs = append(attrs, slog.String("request_id", info.id))
		h = ids.Handler
	}
	r.AddAttrs(attrs...)
	_ = h.Handle(ctx, r) // as LogAttrs: a handler's error has nowhere to go
}

// routeLabel is the route label of a request served by pattern: the
// pattern's path alone ("/health", "/api/v1/tasks/{id}/logs/stream",
// "/berth.v1.TaskService/CreateTask"), the method being a label of its
// own, or "unmatched" when no route served it.
func routeLabel(pattern string) string {
	if pattern == "" {
		return "unmatched"
	}
	if i := strings.IndexByte(pattern, ' '); i >= 0 {
		pattern = strings.TrimLeft(pattern[i+1:], " ")
	}
	return pattern
}

// requestIDHandler adds the request id to every log record made with a
// request's context, so all of a request's lines can be found by its id.
type requestIDHandler struct {
	slog.Handler
}

func (h requestIDHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := requestIDFrom(ctx); id != "" {
		r.AddAttrs(slog.String("request_id", id))
	}
	return h.Handler.Handle(ctx, r)
}

func (h requestIDHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return requestIDHandler{h.Handler.WithAttrs(attrs)}
}

func (h requestIDHandler) WithGroup(name string) slog.Handler {
	return requestIDHandler{h.Handler.WithGroup(name)}
}
