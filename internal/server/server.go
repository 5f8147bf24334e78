// Package server wires berth together: it builds the domain services and
// their Connect handlers, the interceptor chain (metrics → errors → access →
// validation), the HTTP middleware (request id and access log, security
// headers, CORS, body limits), reflection, health and readiness, and runs the
// HTTP servers with graceful shutdown.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"sync"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/prometheus/client_golang/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/berthhq/berth/internal/auth"
	"github.com/berthhq/berth/internal/cache"
	"github.com/berthhq/berth/internal/config"
	"github.com/berthhq/berth/internal/quota"
	"github.com/berthhq/berth/internal/sse"
	"github.com/berthhq/berth/internal/store"
	"github.com/berthhq/berth/internal/task"
	"github.com/berthhq/berth/internal/telemetry"
	"github.com/berthhq/berth/internal/valkey"
	"github.com/berthhq/berth/internal/workspace"
	"github.com/berthhq/berth/internal/ws"
)

// Server is a configured berth, ready to serve.
type Server struct {
	cfg        *config.Config
	logger     *slog.Logger
	store      *store.Store
	meters     *sdkmetric.MeterProvider
	tracing    *telemetry.Tracing
	runtime    *containerRuntime
	workspaces *workspace.Service
	runner     *task.Runner
	streams    *sse.Handler
	sockets    *ws.Handler
	rpcStreams *drain
	shared     *valkey.Client // nil without --valkey-url
	bridge     *valkey.Bridge // nil without --valkey-url
	slots      *quota.Streams
	maxConns   int64 // the main listener's connection cap; 0: none
	refused    func()
	handler    http.Handler
	admin      http.Handler
	services   []string
	routes     []string
}

// wsCommandRate is a WebSocket connection's command rate: a connection
// lives on one instance, so its limiter is local to it. Off is no limit.
func wsCommandRate(r config.Rate) float64 {
	if r.Off() {
		return math.Inf(1)
	}
	return r.PerSecond
}

// diskUsageEvery is how often workspace directories are measured.
const diskUsageEvery = 5 * time.Minute

// New opens the store (running migrations), builds every service and
// returns the server. now is the clock (time.Now in production). Close
// releases what New opened; when New fails, it has released it already.
// Each step is a method of wiring (wiring.go), in the order they run.
func New(ctx context.Context, cfg *config.Config, logger *slog.Logger, reg *prometheus.Registry, now func() time.Time) (_ *Server, err error) {
	b := &wiring{cfg: cfg, logger: slog.New(requestIDHandler{logger.Handler()}), reg: reg, now: now}
	defer func() {
		if err != nil {
			b.release()
		}
	}()
	for _, step := range []func() error{
		func() error { return b.openStore(ctx) },
		b.loadSigningKey,
		b.newRoots,
		func() error { return b.newMeters(ctx) },
		func() error { return b.openShared(ctx) },
		func() error { return b.newAuth(ctx) },
		func() error { return b.newRuntime(ctx) },
		b.newServices,
		b.newAPI,
		b.newRoutes,
		b.newMiddleware,
	} {
		if err := step(); err != nil {
			return nil, err
		}
	}
	return b.server(), nil
}

// Handler is the main listener's handler: the API, reflection, /health,
// /ready and the OpenAPI document behind the middleware.
func (s *Server) Handler() http.Handler { return s.handler }

// AdminHandler is the admin listener's handler: /metrics.
func (s *Server) AdminHandler() http.Handler { return s.admin }

// Services lists the fully-qualified names of the API services served.
func (s *Server) Services() []string { return s.services }

// Close releases the store, the runtime and the meter and tracer
// providers (spans still buffered are exported first).
func (s *Server) Close() error {
	s.slots.Close()
	closeShared(s.bridge, s.shared)
	return errors.Join(s.meters.Shutdown(context.Background()), s.tracing.Shutdown(context.Background()), s.runtime.Close(), s.store.Close())
}

// sharedAuthCaches makes the Valkey-backed caches through which
// authentication reads sessions, accounts and API keys, so that every
// instance sees a logout, a revocation, a disabled account or a role
// change on its next request.
func sharedAuthCaches(shared *valkey.Client, reg prometheus.Registerer, logger *slog.Logger) (*auth.SharedCaches, error) {
	caches := make([]*cache.Cache, 0, 3)
	for _, name := range []string{"sessions", "users", "apikeys"} {
		c, err := cache.New(name, cache.Options{Valkey: shared, TTL: 5 * time.Minute, Registerer: reg, Logger: logger})
		if err != nil {
			return nil, err
		}
		caches = append(caches, c)
	}
	return &auth.SharedCaches{Sessions: caches[0], Users: caches[1], Keys: caches[2]}, nil
}

// closeShared closes the bridge, then the Valkey client; both may be nil.
func closeShared(bridge *valkey.Bridge, c *valkey.Client) {
	if bridge != nil {
		bridge.Close()
	}
	if c != nil {
		c.Close()
	}
}

// openValkey connects to the configured Valkey, or returns nil when none
// is. A server that does not answer is no error: the client starts
// degraded and reconnects by itself, and berth runs on its local fallbacks
// meanwhile.
func openValkey(ctx context.Context, cfg *config.Config, reg prometheus.Registerer, logger *slog.Logger, tracing *telemetry.Tracing) (*valkey.Client, error) {
	if cfg.Valkey.URL == "" {
		return nil, nil
	}
	opts := valkey.Options{Registerer: reg, Logger: logger}
	if tracing.Enabled() {
		opts.Tracing = tracing.Provider
	}
	c, err := valkey.Open(ctx, cfg.Valkey.URL.Reveal(), opts)
	if err != nil {
		return nil, fmt.Errorf("valkey: %w", err)
	}
	if !c.Up() {
		logger.Warn("valkey does not answer; serving from local fallbacks until it does", "status", c.Status())
	}
	return c, nil
}

// Serve serves the API on ln and the admin handler on adminLn (nil to skip)
// until ctx is done, then shuts down gracefully: listeners close at once,
// requests in flight get up to the configured shutdown timeout to finish.
// It returns nil after a clean shutdown.
func (s *Server) Serve(ctx context.Context, ln, adminLn net.Listener) error {
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true) // gRPC clients in plaintext (h2c)
	errorLog := slog.NewLogLogger(s.logger.Handler(), slog.LevelWarn)
	api := &http.Server{
		Handler:           s.handler,
		Protocols:         protocols,
		ReadHeaderTimeout: s.cfg.HTTP.ReadHeaderTimeout,
		ReadTimeout:       s.cfg.HTTP.ReadTimeout,
		WriteTimeout:      s.cfg.HTTP.WriteTimeout,
		IdleTimeout:       s.cfg.HTTP.IdleTimeout,
		MaxHeaderBytes:    s.cfg.HTTP.MaxHeaderBytes,
		ErrorLog:          errorLog,
		// berth's HPACK encoder keeps no dynamic table: response headers
		// go out as literals (static-table names, Huffman-coded values).
		// With a table, every HTTP/2 connection would hold what it indexed,
		// up to 4 KiB with two maps over it, for as long as it is open:
		// about 2 KiB of each idle Connect stream's memory when measured
		// (just bench), for headers of which X-Request-Id and Date never
		// repeat anyway. What a response gives up is the few hundred bytes
		// its headers take again when a connection makes many calls.
		// Decoding keeps the default 4 KiB table, so clients still index
		// what they send (a bearer token costs a byte after the first
		// request).
		HTTP2: &http.HTTP2Config{MaxEncoderHeaderTableSize: 1},
	}
	api.RegisterOnShutdown(s.streams.Shutdown)    // SSE streams end; clients resume elsewhere
	api.RegisterOnShutdown(s.sockets.Shutdown)    // WebSockets close with 1012
	api.RegisterOnShutdown(s.rpcStreams.Shutdown) // Connect streams end with Unavailable and a retry hint
	servers := []*http.Server{api}
	listeners := []net.Listener{newLimitListener(ln, s.maxConns, s.refused)}
	if adminLn != nil {
		servers = append(servers, &http.Server{
			Handler:           s.admin,
			ReadHeaderTimeout: s.cfg.HTTP.ReadHeaderTimeout,
			ReadTimeout:       s.cfg.HTTP.ReadTimeout,
			IdleTimeout:       s.cfg.HTTP.IdleTimeout,
			ErrorLog:          errorLog,
		})
		listeners = append(listeners, adminLn)
	}
	errs := make(chan error, len(servers))
	for i, srv := range servers {
		go func() {
			if err := srv.Serve(listeners[i]); !errors.Is(err, http.ErrServerClosed) {
				errs <- err
				return
			}
			errs <- nil
		}()
	}
	s.logger.Info("serving", "addr", ln.Addr().String(), "services", len(s.services), "runtime", s.runtime.name,
		"max_connections", s.maxConns, "max_streams", streamCap(s.maxConns))

	// Background work stops with the server, before the store closes.
	background, stopBackground := context.WithCancel(context.WithoutCancel(ctx))
	var bg sync.WaitGroup
	bg.Go(func() {
		if _, err := s.workspaces.Reconcile(background); err != nil && background.Err() == nil {
			s.logger.Error("reconciling workspaces with the runtime failed", "error", err.Error())
		}
		s.workspaces.Run(background, diskUsageEvery)
	})
	bg.Go(func() {
		if err := s.runner.Recover(background); err != nil && background.Err() == nil {
			s.logger.Error("recovering interrupted tasks failed", "error", err.Error())
		}
		s.runner.Run(background)
	})
	defer func() {
		stopBackground()
		bg.Wait()
	}()

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errs:
	}
	s.logger.Info("shutting down", "grace", s.cfg.ShutdownTimeout.String())
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
	defer cancel()
	var shutdownErrs []error
	for _, srv := range servers {
		if err := srv.Shutdown(shutdownCtx); err != nil {
			shutdownErrs = append(shutdownErrs, err)
			_ = srv.Close()
		}
	}
	// The SSE streams served on their own connections, which Shutdown
	// does not track, end with it (see sse.Handler.Shutdown): wait for
	// them before the store they read closes.
	if err := s.streams.Wait(shutdownCtx); err != nil {
		shutdownErrs = append(shutdownErrs, fmt.Errorf("waiting for the SSE streams: %w", err))
	}
	// So do the WebSocket sessions (see ws.Handler.Wait).
	if err := s.sockets.Wait(shutdownCtx); err != nil {
		shutdownErrs = append(shutdownErrs, fmt.Errorf("waiting for the WebSocket sessions: %w", err))
	}
	return errors.Join(append(shutdownErrs, serveErr)...)
}

func serviceNames(s *connect.Server) []string {
	seen := map[string]bool{}
	var names []string
	for spec := range s.Specs() {
		method, ok := spec.Schema.(protoreflect.MethodDescriptor)
		if !ok {
			continue
		}
		name := string(method.Parent().FullName())
		if !seen[name] {
			seen[name] = true
			names = append(names, name)
		}
	}
	return names
}
