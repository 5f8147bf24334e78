package ws

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
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
	// QueueSize bounds a connection's queue of outgoing data frames.
	QueueSize = 256
	// StallTimeout is how long a frame may wait for room in a full queue
	// before the client is dropped as too slow (close 1008 with a reason).
	StallTimeout = 15 * time.Second
	// maxSubscriptions bounds one connection's subscriptions.
	maxSubscriptions = 64
	// maxCommands bounds one connection's commands in flight.
	maxCommands = 8
)

// Config is what a Handler needs.
type Config struct {
	// Authenticate reads the upgrade request's Authorization header,
	// X-API-Key header or session cookie, as the RPCs do.
	Authenticate func(*http.Request) (access.Principal, error)
	// RedeemTicket spends a stream ticket (?ticket=) for target ("ws").
	RedeemTicket func(ctx context.Context, ticket, target string) (access.Principal, error)
	// RecheckTicket re-validates the principal of a redeemed ticket.
	// Every command, every subscription and every keep-alive period
	// re-checks the connection's credentials (Authenticate with the
	// upgrade's headers, or RecheckTicket), so a logout, a revoked key, a
	// disabled account or a role change applies to open connections too.
	RecheckTicket func(ctx context.Context, p access.Principal) (access.Principal, error)
	// Errors maps a command's or subscription's error to an error frame's
	// body, with the RPCs' table (the server passes its own).
	Errors func(ctx context.Context, action string, err error) ErrorBody
	// AllowedOrigins lists the browser origins (scheme://host[:port], may
	// hold path.Match patterns) besides the endpoint's own.
	AllowedOrigins []string
	Tasks          *task.Service
	Workspaces     *workspace.Service
	Logger         *slog.Logger
	Metrics        *stream.Metrics // may be nil

	// PingEvery, StallTimeout, MaxMessageBytes, CommandRate, CommandBurst
	// and QueueSize override the defaults when positive.
	PingEvery       time.Duration
	StallTimeout    time.Duration
	MaxMessageBytes int64
	CommandRate     float64
	CommandBurst    int
	QueueSize       int

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
	cfg      Config
	closing  chan struct{}
	shutdown sync.Once
}

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
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = QueueSize
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Handler{cfg: cfg, closing: make(chan struct{})}
}

// Shutdown closes every connection with 1012 (service restart), so clients
// reconnect elsewhere and resume their subscriptions with since. Register
// it with http.Server.RegisterOnShutdown: Shutdown does not wait for
// hijacked connections.
func (h *Handler) Shutdown() { h.shutdown.Do(func() { close(h.closing) }) }

// Mount registers GET /ws on mux (an *http.ServeMux, or the server's mux
// that records its routes).
func (h *Handler) Mount(mux interface{ Handle(string, http.Handler) }) { mux.Handle("GET /ws", h) }

// ServeHTTP checks the origin, the subprotocol and the credentials, then
// upgrades and serves the connection until either side closes it.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !h.originAllowed(r) {
		refuse(w, http.StatusForbidden, "permission_denied", "origin not allowed")
		return
	}
	if !offers(r, Subprotocol) {
		refuse(w, http.StatusBadRequest, "invalid_argument", "the WebSocket subprotocol "+Subprotocol+" is required")
		return
	}
	var p access.Principal
	var err error
	var recheck func(context.Context) (access.Principal, error)
	if ticket := r.URL.Query().Get("ticket"); ticket != "" {
		p, err = h.cfg.RedeemTicket(r.Context(), ticket, "ws")
		recheck = func(ctx context.Context) (access.Principal, error) { return h.cfg.RecheckTicket(ctx, p) }
	} else {
		p, err = h.cfg.Authenticate(r)
		header := r.Header.Clone()
		recheck = func(ctx context.Context) (access.Principal, error) {
			return h.cfg.Authenticate((&http.Request{Header: header}).WithContext(ctx))
		}
	}
	if err != nil {
		status, code, msg := http.StatusInternalServerError, "internal", "internal error"
		if errors.Is(err, fault.ErrUnauthenticated) {
			status, code, msg = http.StatusUnauthorized, "unauthenticated", err.Error()
			if m, ok := fault.Message(err); ok {
				msg = m
			}
		} else {
			h.cfg.Logger.ErrorContext(r.Context(), "authenticating a WebSocket failed", "error", err.Error())
		}
		refuse(w, status, code, msg)
		return
	}
	release, err := h.admit(r.Context(), p, w.Header())
	if err != nil {
		status, code, msg := http.StatusInternalServerError, "internal", "internal error"
		if errors.Is(err, fault.ErrResourceExhausted) {
			status, code, msg = http.StatusTooManyRequests, "resource_exhausted", err.Error()
			if m, ok := fault.Message(err); ok {
				msg = m
			}
			if d, ok := fault.RetryAfter(err); ok {
				w.Header().Set("Retry-After", strconv.FormatInt(int64(math.Ceil(d.Seconds())), 10))
			}
		} else {
			h.cfg.Logger.ErrorContext(r.Context(), "admitting a WebSocket failed", "error", err.Error())
		}
		refuse(w, status, code, msg)
		return
	}
	defer release()
	// The server's read and write timeouts are for requests, not for a
	// connection that lives as long as its client wants.
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Time{})
	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		Subprotocols:       []string{Subprotocol},
		InsecureSkipVerify: true, // the origin was checked above, with the same-origin rule and the allow-list
	})
	if err != nil {
		return // Accept answered the request
	}
	conn.SetReadLimit(h.cfg.MaxMessageBytes)
	newSession(h, conn, recheck).run(context.WithoutCancel(r.Context()))
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

// refuse answers a handshake that cannot be upgraded.
func refuse(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"code": code, "message": msg})
}

// limiter returns a connection's command limiter.
func (h *Handler) limiter() *rate.Limiter {
	return rate.NewLimiter(rate.Limit(h.cfg.CommandRate), h.cfg.CommandBurst)
}
