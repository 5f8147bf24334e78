// Package sse serves berth's live streams as server-sent events,
// for curl and the browser's EventSource: a task's log
// (GET /api/v1/tasks/{id}/logs/stream) and a workspace's events
// (GET /api/v1/workspaces/{id}/events), with the same source, guarantees
// and access rules as the Connect streams.
//
// It writes go-sse Messages on a go-sse Session itself rather than through
// go-sse's Server, Provider and Replayer: those fan one published message
// out to many topic subscribers and replay from a window, while every berth
// stream is its own follower of the store and the bus (package stream),
// which already replays from the store by seq. A Provider would only wrap
// the follower and hide the 401/404 decided before the stream starts.
//
// sse is a transport above the domain: it calls the task and workspace
// services (task.Service.OpenFollow and Follow, workspace.Service.OpenEvents
// and FollowEvents) exactly as the Connect streams do, with their access
// rules, and sends their one conversion of events to API messages
// (task.StreamResponse, WorkspaceEvent) as JSON written with stream.JSON,
// as the WebSocket does.
//
// An HTTP/1.x stream is served on its own connection once its handler
// returns (detach): the handler decides everything that can be refused,
// then hijacks the connection, writes the response's head itself and
// leaves; the stream then holds one goroutine while idle, the reader that
// notices its client leave, and is stepped by short-lived goroutines when
// the bus has news, as the WebSocket's subscriptions are. That drops the
// request's goroutine, net/http's per-connection buffers and the
// response's maps, which cost an idle stream more than its socket. An
// HTTP/2 stream (and a writer that cannot be hijacked) runs on its
// request's goroutine instead (serve).
package sse

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"time"

	gosse "github.com/tmaxmax/go-sse"

	"github.com/berthhq/berth/internal/access"
	"github.com/berthhq/berth/internal/event"
	"github.com/berthhq/berth/internal/fault"
	"github.com/berthhq/berth/internal/stream"
	"github.com/berthhq/berth/internal/task"
	"github.com/berthhq/berth/internal/workspace"
)

// Defaults of the transport.
const (
	// Heartbeat is how often an idle-or-not stream gets a comment line, so
	// proxies and clients see it alive even while log writes are sparse.
	Heartbeat = 15 * time.Second
	// Retry is the reconnect delay suggested to clients.
	Retry = 2 * time.Second
	// writeTimeout bounds one write: a client that takes no bytes for this
	// long is dropped. The server's WriteTimeout does not apply to streams.
	writeTimeout = 30 * time.Second
)

// Config is what a Handler needs.
type Config struct {
	// Auth resolves a stream's principal, by ticket (?ticket=, or the
	// resume cookie's) or credentials; those are checked again at every
	// heartbeat, so a logout, a revoked key or a disabled account ends
	// open streams.
	Auth stream.Auth
	// ResumeTicket, when set, issues the ticket a stream opened with a
	// ticket hands its browser in a cookie (see resumeCookie), so that an
	// EventSource reconnecting to the same URL, whose ticket is spent,
	// resumes.
	ResumeTicket func(ctx context.Context, p access.Principal, target string) (string, time.Time, error)
	// SecureCookies marks the resume cookie Secure (HTTPS only).
	SecureCookies bool
	Tasks         *task.Service
	Workspaces    *workspace.Service
	Logger        *slog.Logger
	Metrics       *stream.Metrics // may be nil
	// Heartbeat overrides the default heartbeat period when positive.
	Heartbeat time.Duration
	// WriteTimeout overrides, when positive, how long one write may wait
	// for a client that takes no bytes before it is dropped.
	WriteTimeout time.Duration
	// Admit, when set, is asked before a stream opens, with the headers of
	// the response: it spends the principal's request budget and takes one
	// of its stream slots, or refuses (fault.ErrResourceExhausted, answered
	// 429 with Retry-After). release gives the slot back when the stream
	// ends.
	Admit func(ctx context.Context, p access.Principal, h http.Header) (release func(), err error)
}

// Handler serves the SSE streams.
type Handler struct {
	Config
	// life ends at Shutdown; each stream ends with it, through
	// context.AfterFunc, with no goroutine of its own waiting for it.
	life     context.Context
	shutdown context.CancelFunc
	// beats signals every stream's heartbeat (and credential re-check)
	// from one goroutine for the whole handler.
	beats *stream.Wheel
	// detached counts the streams served past their handler's return
	// (see detach), which http.Server.Shutdown does not wait for: Wait
	// does.
	detached stream.Group
}

// New returns the SSE handler.
func New(cfg Config) *Handler {
	life, shutdown := context.WithCancel(context.Background())
	every := cfg.Heartbeat
	if every <= 0 {
		every = Heartbeat
	}
	return &Handler{Config: cfg, life: life, shutdown: shutdown, beats: stream.NewWheel(every)}
}

// Shutdown ends every open stream, cleanly, so that a graceful server
// shutdown need not wait for streams that would outlive it; clients
// reconnect (after the retry hint) and resume where they were. Register it
// with http.Server.RegisterOnShutdown.
func (h *Handler) Shutdown() { h.shutdown() }

// Wait waits until every stream served on its own connection (see detach)
// has ended and let go of everything, as http.Server.Shutdown waits for
// handlers: call it after Shutdown, before closing what the streams read
// (the store). It returns ctx's error if ctx ends first.
func (h *Handler) Wait(ctx context.Context) error { return h.detached.Wait(ctx) }

// Mux is where Mount registers the streams (an *http.ServeMux, or the
// server's mux that records its routes).
type Mux interface {
	HandleFunc(pattern string, handler func(http.ResponseWriter, *http.Request))
}

// Mount registers the streams on mux.
func (h *Handler) Mount(mux Mux) {
	mux.HandleFunc("GET /api/v1/tasks/{id}/logs/stream", h.taskLogs)
	mux.HandleFunc("GET /api/v1/workspaces/{id}/events", h.workspaceEvents)
}

// endID is the id of a task stream's end event: an EventSource sends it
// back as Last-Event-ID when it reconnects after the end, and gets 204.
const endID = "end"

// resumeCookie names the cookie that carries a stream's resume ticket. It
// is HttpOnly, SameSite=Strict and scoped to the stream's own path, so only
// a reconnect of that very stream sends it.
const resumeCookie = "berth_resume"

// principal authenticates a request for target (see stream.Auth.Resolve;
// the resume cookie's ticket is the spare one); the role must grant
// permission. recheck re-validates the same credentials later, for as long
// as the stream is open. ticketed says a ticket was used.
func (h *Handler) principal(r *http.Request, target, permission string) (p access.Principal, recheck func(context.Context) error, ticketed bool, err error) {
	var spare string
	if c, cerr := r.Cookie(resumeCookie); cerr == nil {
		spare = c.Value
	}
	cred, err := h.Auth.Resolve(r, target, spare)
	recheck = func(ctx context.Context) error {
		cur, err := cred.Recheck(ctx)
		return stream.Allow(cur, err, permission)
	}
	return cred.Principal, recheck, cred.Ticketed, stream.Allow(cred.Principal, err, permission)
}

// resume hands the browser of a stream opened with a ticket a new ticket
// for the same target in the resume cookie, before the stream's headers go
// out. Without it the stream works, but an EventSource cannot reconnect.
func (h *Handler) resume(w http.ResponseWriter, r *http.Request, p access.Principal, target string) {
	if h.ResumeTicket == nil {
		return
	}
	ticket, expires, err := h.ResumeTicket(r.Context(), p, target)
	if err != nil {
		if h.Logger != nil {
			h.Logger.WarnContext(r.Context(), "issuing a stream's resume ticket failed", "target", target, "error", err.Error())
		}
		return
	}
	// #nosec G124 -- HttpOnly and SameSite=Strict always; Secure follows --secure-cookies (off only for plain-HTTP development)
	http.SetCookie(w, &http.Cookie{
		Name: resumeCookie, Value: ticket, Path: r.URL.Path, Expires: expires, MaxAge: int(time.Until(expires).Seconds()),
		HttpOnly: true, Secure: h.SecureCookies, SameSite: http.SameSiteStrictMode,
	})
}

func (h *Handler) taskLogs(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	p, recheck, ticketed, err := h.principal(r, event.TaskTopic(id), "task.read")
	if err != nil {
		h.fail(w, r, err)
		return
	}
	t, err := h.Tasks.Get(r.Context(), p, id)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if r.Header.Get("Last-Event-ID") == endID && t.Status.Terminal() {
		// An EventSource reconnecting after it got the end (whose id it
		// sends back) is told there is nothing more: 204 No Content stops
		// it for good, where a replayed end would make it reconnect for
		// ever.
		w.WriteHeader(http.StatusNoContent)
		return
	}
	// since is the last seq the client has; Last-Event-ID, sent by an
	// EventSource reconnecting, wins over it.
	since, err := seq(r.URL.Query().Get("since"))
	if err == nil && r.Header.Get("Last-Event-ID") != "" {
		since, err = seq(r.Header.Get("Last-Event-ID"))
	}
	if err != nil {
		h.fail(w, r, fault.Invalid("since", "must be a log line's seq, a whole number from 0"))
		return
	}
	release, ok := h.open(w, r, p, event.TaskTopic(id), ticketed)
	if !ok {
		return
	}
	h.stream(w, r, release, recheck, func(ctx context.Context, c *conn) error {
		return h.Tasks.Follow(ctx, p, id, stream.After(since), c.taskEvent, c.loop)
	}, func(ctx context.Context, d *detached) (func(context.Context) (bool, error), func(), bool, error) {
		f, done, err := h.Tasks.OpenFollow(ctx, p, id, stream.After(since), d.taskEvent, d.wake)
		if err != nil {
			return nil, nil, false, err
		}
		return f.Step, f.Close, done, nil
	})
}

func (h *Handler) workspaceEvents(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	p, recheck, ticketed, err := h.principal(r, event.WorkspaceTopic(id), "workspace.read")
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if err := h.Workspaces.Visible(r.Context(), p, id); err != nil {
		h.fail(w, r, err)
		return
	}
	release, ok := h.open(w, r, p, event.WorkspaceTopic(id), ticketed)
	if !ok {
		return
	}
	h.stream(w, r, release, recheck, func(ctx context.Context, c *conn) error {
		return h.Workspaces.FollowEvents(ctx, p, id, c.workspaceEvent, c.loop)
	}, func(ctx context.Context, d *detached) (func(context.Context) (bool, error), func(), bool, error) {
		watch, err := h.Workspaces.OpenEvents(ctx, p, id, d.workspaceEvent, d.wake)
		if err != nil {
			return nil, nil, false, err
		}
		// A workspace's watch never ends by itself.
		return func(ctx context.Context) (bool, error) { return false, watch.Step(ctx) }, watch.Close, false, nil
	})
}

// stream serves an admitted stream, whose slot release gives back: on its
// connection past the handler's return when it can (detach), otherwise on
// the request's goroutine (serve, with follow). open and follow are the
// same follow of the stream's source, a step at a time and whole.
func (h *Handler) stream(w http.ResponseWriter, r *http.Request, release func(), recheck func(context.Context) error, follow func(context.Context, *conn) error, open opener) {
	ok, finish := h.detach(w, r, release, recheck, open)
	if ok {
		return
	}
	defer finish()
	defer release()
	h.serve(w, r, recheck, follow)
}

// open admits p's stream to target (a slot and the request budget) and,
// for a stream opened with a ticket, hands the browser its resume cookie.
// It answers the refusal itself and reports false; otherwise the caller
// must call release when the stream ends.
func (h *Handler) open(w http.ResponseWriter, r *http.Request, p access.Principal, target string, ticketed bool) (release func(), ok bool) {
	release, err := h.admit(r.Context(), p, w.Header())
	if err != nil {
		h.fail(w, r, err)
		return nil, false
	}
	if ticketed {
		h.resume(w, r, p, target)
	}
	return release, true
}

// admit asks Config.Admit, if set, for a stream slot of p.
func (h *Handler) admit(ctx context.Context, p access.Principal, header http.Header) (func(), error) {
	if h.Admit == nil {
		return func() {}, nil
	}
	return h.Admit(ctx, p, header)
}

// seq parses a seq given by a client; "" is 0.
func seq(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, errors.New("bad seq")
	}
	return n, nil
}

// serve runs one stream on the request's goroutine (an HTTP/2 stream, or
// a writer that cannot be hijacked; see detach for the others): the SSE headers and a retry hint, then follow's
// messages, with heartbeat comments in between, until follow ends (the
// task ended, the client left, its credentials stopped working — checked
// with recheck at every heartbeat — or the server shuts down). Everything
// runs on the request's goroutine: follow calls back for each message,
// for the flush of each batch and for each heartbeat (stream.Loop).
func (h *Handler) serve(w http.ResponseWriter, r *http.Request, recheck func(context.Context) error, follow func(context.Context, *conn) error) {
	rc := http.NewResponseController(w)
	// The server's read and write timeouts are for requests, not for
	// streams that live as long as the task: clear them, and bound each
	// batch of writes instead.
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Time{})
	sess, err := gosse.Upgrade(w, r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	defer h.Metrics.Opened(stream.TransportSSE)()

	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	defer context.AfterFunc(h.life, cancel)()
	c := &conn{h: h, w: sessionWriter(w), rc: rc, sess: sess, timeout: h.WriteTimeout}
	if c.timeout <= 0 {
		c.timeout = writeTimeout
	}
	if err := c.message(&gosse.Message{Retry: Retry}); err != nil {
		return
	}
	if err := c.flush(); err != nil {
		return
	}
	beat := h.beats.Start()
	defer beat.Stop()
	c.loop = stream.Loop{Flush: c.flush, Due: beat.C, OnDue: func() error { return c.heartbeat(ctx, recheck) }}
	err = follow(ctx, c)
	if err != nil && ctx.Err() == nil && !errors.Is(err, errRevoked) && h.Logger != nil {
		h.Logger.WarnContext(r.Context(), "an event stream failed", "path", r.URL.Path, "error", err.Error())
	}
}

// fail answers a request that cannot stream with its error as JSON: the
// status and Connect code of its fault class (fault.Classes, the table the
// RPCs use), and its public message; the server's error middleware adds
// the ErrorInfo with the class's reason.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	class, msg := fault.Public(err)
	if class.HTTP == http.StatusInternalServerError && h.Logger != nil {
		h.Logger.ErrorContext(r.Context(), "opening an event stream failed", "path", r.URL.Path, "error", err.Error())
	}
	if d, ok := fault.RetryAfter(err); ok {
		w.Header().Set("Retry-After", strconv.FormatInt(int64(math.Ceil(d.Seconds())), 10))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(class.HTTP)
	_ = json.NewEncoder(w).Encode(map[string]string{"code": class.Code, "message": msg})
}
