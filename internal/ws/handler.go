package ws

import (
	"context"
	"encoding/json"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/time/rate"

	"github.com/berthhq/berth/internal/access"
	"github.com/berthhq/berth/internal/fault"
	"github.com/berthhq/berth/internal/stream"
	"github.com/berthhq/berth/internal/task"
	"github.com/berthhq/berth/internal/workspace"
)

// Defaults of the transport.
const (
	// PingEvery is how often the server pings an open connection.
	PingEvery = 20 * time.Second
	// MaxMessageBytes bounds one client frame; a bigger one closes the
	// connection with 1009 (message too big).
	MaxMessageBytes = 64 << 10
	// CommandRate and CommandBurst bound a connection's commands.
	CommandRate  = 10
	CommandBurst = 20
	// StallTimeout is how long a connection's writes may take no bytes
	// before the client is dropped as too slow (close 1008 with a reason).
	StallTimeout = 15 * time.Second
	// maxSubscriptions bounds one connection's subscriptions.
	maxSubscriptions = 64
	// maxCommands bounds one connection's commands in flight.
	maxCommands = 8
)

// Config is what a Handler needs.
type Config struct {
	// Auth resolves the connection's principal at the upgrade, by a
	// stream ticket (?ticket=) for the target "ws" or by credentials.
	// Every command, every subscription and every keep-alive period
	// re-checks those credentials, so a logout, a revoked key, a disabled
	// account or a role change applies to open connections too.
	Auth stream.Auth
	// Errors maps a command's or subscription's error to an error frame's
	// body. The server passes its Connect error mapping, which also logs
	// internal errors and knows the rate limiter's; by default the body
	// comes from the fault table (fault.Classes).
	Errors func(ctx context.Context, action string, err error) ErrorBody
	// AllowedOrigins lists the browser origins (scheme://host[:port], may
	// hold path.Match patterns) besides the endpoint's own.
	AllowedOrigins []string
	Tasks          *task.Service
	Workspaces     *workspace.Service
	Logger         *slog.Logger
	Metrics        *stream.Metrics // may be nil

	// PingEvery, StallTimeout, MaxMessageBytes, CommandRate and
	// CommandBurst override the defaults when positive.
	PingEvery       time.Duration
	StallTimeout    time.Duration
	MaxMessageBytes int64
	CommandRate     float64
	CommandBurst    int

	// Admit, when set, is asked for a stream slot of the principal at the
	// upgrade (h, the response's headers) and for each subscription past
	// a connection's first (h nil): a connection holds max(1, its
	// subscriptions) slots. It spends the principal's request budget and
	// takes a slot, or refuses with fault.ErrResourceExhausted — a 429
	// with Retry-After at the upgrade, an error frame for a subscription.
	Admit func(ctx context.Context, p access.Principal, h http.Header) (release func(), err error)
}

// Handler serves /ws.
type Handler struct {
	cfg Config
	// life ends at Shutdown; each connection closes with it, through
	// context.AfterFunc, with no goroutine of its own waiting for it.
	life     context.Context
	shutdown context.CancelFunc
	// pings starts every connection's keep-alive ping (and credential
	// re-check) from one goroutine for the whole handler.
	pings *stream.Wheel
	// sessions counts the sessions running, each past its handler's
	// return (see Wait).
	sessions stream.Group
}

// Wait waits until every session has ended and let go of everything:
// http.Server.Shutdown does not wait for a hijacked connection, so the
// server calls it after Shutdown (which ends the sessions, see Shutdown),
// before it closes the store that commands and subscriptions read. It
// returns ctx's error if ctx ends first.
func (h *Handler) Wait(ctx context.Context) error { return h.sessions.Wait(ctx) }

// New returns the WebSocket handler.
func New(cfg Config) *Handler {
	if cfg.PingEvery <= 0 {
		cfg.PingEvery = PingEvery
	}
	if cfg.StallTimeout <= 0 {
		cfg.StallTimeout = StallTimeout
	}
	if cfg.MaxMessageBytes <= 0 {
		cfg.MaxMessageBytes = MaxMessageBytes
	}
	if cfg.CommandRate <= 0 {
		cfg.CommandRate = CommandRate
	}
	if cfg.CommandBurst <= 0 {
		cfg.CommandBurst = CommandBurst
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	actions := make([]string, 0, len(commands))
	for a := range commands {
		actions = append(actions, a)
	}
	cfg.Metrics.KnownCommands(actions...)
	if cfg.Errors == nil {
		cfg.Errors = func(_ context.Context, _ string, err error) ErrorBody {
			class, msg := fault.Public(err)
			return ErrorBody{Code: class.Code, Message: msg, Reason: class.Reason}
		}
	}
	life, shutdown := context.WithCancel(context.Background())
	return &Handler{cfg: cfg, life: life, shutdown: shutdown, pings: stream.NewWheel(cfg.PingEvery)}
}

// Shutdown closes every connection with 1012 (service restart), so clients
// reconnect elsewhere and resume their subscriptions with since. Register
// it with http.Server.RegisterOnShutdown: Shutdown does not wait for
// hijacked connections.
func (h *Handler) Shutdown() { h.shutdown() }

// Mount registers GET /ws on mux (an *http.ServeMux, or the server's mux
// that records its routes).
func (h *Handler) Mount(mux interface{ Handle(string, http.Handler) }) { mux.Handle("GET /ws", h) }

// ServeHTTP checks the origin, the subprotocol and the credentials, then
// upgrades and serves the connection until either side closes it.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !h.originAllowed(r) {
		h.refuse(w, r, "", fault.New(fault.ErrPermissionDenied, "origin not allowed"))
		return
	}
	if !offers(r, Subprotocol) {
		h.refuse(w, r, "", fault.New(fault.ErrInvalid, "the WebSocket subprotocol "+Subprotocol+" is required"))
		return
	}
	cred, err := h.cfg.Auth.Resolve(r, "ws")
	if err != nil {
		h.refuse(w, r, "authenticating a WebSocket failed", err)
		return
	}
	release, err := h.admit(r.Context(), cred.Principal, w.Header())
	if err != nil {
		h.refuse(w, r, "admitting a WebSocket failed", err)
		return
	}
	// The server's read and write timeouts are for requests, not for a
	// connection that lives as long as its client wants.
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Time{})
	// The session counts from before its handshake is answered: a client
	// that sees the handshake done finds it counted (Wait).
	h.sessions.Add()
	up := &upgrader{ResponseWriter: w} // hands the connection over as a wire, with small buffers
	conn, err := websocket.Accept(up, r, &websocket.AcceptOptions{
		Subprotocols:       []string{Subprotocol},
		InsecureSkipVerify: true, // the origin was checked above, with the same-origin rule and the allow-list
	})
	if err != nil {
		h.sessions.Done()
		release()
		return // Accept answered the request
	}
	conn.SetReadLimit(h.cfg.MaxMessageBytes)
	// The connection is the session's now. It runs on a goroutine of its
	// own, whose stack starts small and stays so, and the request's
	// goroutine — grown deep by the middleware, the credentials' check and
	// the handshake — ends, with net/http's hold on the connection. The
	// request is completed (access log, metrics) when the session ends.
	finish := stream.Detach(r)
	sess := newSession(h, conn, up.wire, cred.Recheck)
	ctx := context.WithoutCancel(r.Context())
	go func() {
		defer h.sessions.Done()
		defer finish()
		defer release()
		defer h.cfg.Metrics.Panics().Recover(h.cfg.Logger, stream.TransportWebSocket, sess.failed)
		sess.run(ctx)
	}()
}

// admit asks Config.Admit, if set, for a stream slot of p.
func (h *Handler) admit(ctx context.Context, p access.Principal, header http.Header) (func(), error) {
	if h.cfg.Admit == nil {
		return func() {}, nil
	}
	return h.cfg.Admit(ctx, p, header)
}

// originAllowed admits requests without an Origin (not from a browser),
// from the endpoint's own host, and from the allow-list.
func (h *Handler) originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	full := strings.ToLower(u.Scheme + "://" + u.Host)
	for _, pattern := range h.cfg.AllowedOrigins {
		pattern = strings.ToLower(strings.TrimSuffix(pattern, "/"))
		target := strings.ToLower(u.Host)
		if strings.Contains(pattern, "://") {
			target = full
		}
		if ok, _ := path.Match(pattern, target); ok {
			return true
		}
	}
	return false
}

// offers reports whether the handshake offers subprotocol.
func offers(r *http.Request, subprotocol string) bool {
	for _, v := range r.Header.Values("Sec-WebSocket-Protocol") {
		for p := range strings.SplitSeq(v, ",") {
			if strings.TrimSpace(p) == subprotocol {
				return true
			}
		}
	}
	return false
}

// refuse answers a handshake that cannot be upgraded with err's status,
// Connect code and public message, from the one fault table
// (fault.Classes); an internal error is logged as what, and answered with
// no detail.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, what string, err error) {
	class, msg := fault.Public(err)
	if class.HTTP == http.StatusInternalServerError {
		h.cfg.Logger.ErrorContext(r.Context(), what, "error", err.Error())
	}
	if d, ok := fault.RetryAfter(err); ok {
		w.Header().Set("Retry-After", strconv.FormatInt(int64(math.Ceil(d.Seconds())), 10))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(class.HTTP)
	_ = json.NewEncoder(w).Encode(map[string]string{"code": class.Code, "message": msg})
}

// limiter returns a connection's command limiter.
func (h *Handler) limiter() *rate.Limiter {
	return rate.NewLimiter(rate.Limit(h.cfg.CommandRate), h.cfg.CommandBurst)
}
