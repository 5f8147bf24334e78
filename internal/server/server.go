// Package server wires berth together: it builds the domain services and
// their Connect handlers, the interceptor chain (metrics → errors → access →
// validation), the HTTP middleware (request id and access log, security
// headers, CORS, body limits), reflection, health and readiness, and runs the
// HTTP servers with graceful shutdown.
//
// server imports the domain packages and their adapters; nothing imports
// server but cmd/berth and tests.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connectgzip"
	"connectrpc.com/connect/v2/connecthttp"
	"connectrpc.com/connect/v2/connectproto"
	"connectrpc.com/grpcreflect/v2"
	"connectrpc.com/otelconnect"
	"connectrpc.com/validate"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/berthhq/berth/internal/access"
	"github.com/berthhq/berth/internal/admin"
	"github.com/berthhq/berth/internal/audit"
	"github.com/berthhq/berth/internal/auth"
	"github.com/berthhq/berth/internal/bus"
	"github.com/berthhq/berth/internal/cache"
	"github.com/berthhq/berth/internal/config"
	"github.com/berthhq/berth/internal/gen/berth/v1/berthv1connect"
	"github.com/berthhq/berth/internal/gen/grpc/health/v1/healthv1connect"
	"github.com/berthhq/berth/internal/health"
	"github.com/berthhq/berth/internal/oidc"
	"github.com/berthhq/berth/internal/openapi"
	"github.com/berthhq/berth/internal/quota"
	"github.com/berthhq/berth/internal/ratelimit"
	"github.com/berthhq/berth/internal/stats"
	"github.com/berthhq/berth/internal/store"
	"github.com/berthhq/berth/internal/stream"
	"github.com/berthhq/berth/internal/stream/eventsource"
	"github.com/berthhq/berth/internal/stream/ws"
	"github.com/berthhq/berth/internal/task"
	"github.com/berthhq/berth/internal/taskenv"
	"github.com/berthhq/berth/internal/telemetry"
	"github.com/berthhq/berth/internal/valkey"
	"github.com/berthhq/berth/internal/workspace"
)

// Server is a configured berth, ready to serve.
type Server struct {
	cfg        *config.Config
	logger     *slog.Logger
	store      *store.Store
	meters     *sdkmetric.MeterProvider
	runtime    *containerRuntime
	workspaces *workspace.Service
	runner     *task.Runner
	streams    *eventsource.Handler
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
// releases what New opened.
func New(ctx context.Context, cfg *config.Config, logger *slog.Logger, reg *prometheus.Registry, now func() time.Time) (_ *Server, err error) {
	logger = slog.New(requestIDHandler{logger.Handler()})
	st, err := store.OpenURL(ctx, cfg.Database.URL.Reveal(), filepath.Join(cfg.DataDir, "berth.db"), int(cfg.Database.MaxConns))
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	defer func() {
		if err != nil {
			st.Close() // #nosec G104 -- cleanup after a failed start: err is the error to report
		}
	}()
	var key *auth.SigningKey
	if cfg.JWT.Key != "" {
		key, err = auth.ParseSigningKey([]byte(cfg.JWT.Key.Reveal()))
	} else {
		key, err = auth.LoadOrCreateSigningKey(cfg.JWT.KeyFile)
	}
	if err != nil {
		return nil, err
	}
	roots, err := workspace.NewRoots(cfg.WorkspaceRoots)
	if err != nil {
		return nil, err
	}
	meters, err := telemetry.NewMeterProvider(reg)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = meters.Shutdown(context.Background())
		}
	}()

	recorder := audit.NewRecorder(st, logger, now)
	tokens := auth.NewTokenIssuer(key, cfg.JWT.Issuer, cfg.JWT.Audience, cfg.JWT.AccessTokenTTL, now)
	authSvc, err := auth.NewService(st, tokens, auth.Config{
		AllowRegistration:     cfg.AllowRegistration,
		RefreshTTL:            cfg.JWT.RefreshTokenTTL,
		PasswordHashMemoryMiB: cfg.PasswordHashMemoryMiB,
	}, recorder, now)
	if err != nil {
		return nil, err
	}
	signInWith, err := oidc.New(ctx, oidc.Config{PublicURL: cfg.PublicURL, Providers: cfg.OIDC, SecureCookies: cfg.SecureCookies, Logger: logger}, authSvc)
	if err != nil {
		return nil, err
	}
	rt, err := openRuntime(ctx, cfg, logger)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			rt.Close() // #nosec G104 -- cleanup after a failed start: err is the error to report
		}
	}()
	events := bus.New()
	shared, err := openValkey(ctx, cfg, reg, logger)
	if err != nil {
		return nil, err
	}
	var bridge *valkey.Bridge
	defer func() {
		if err != nil {
			closeShared(bridge, shared)
		}
	}()
	if shared != nil {
		// Events cross instances: a task running here streams to clients
		// connected anywhere.
		bridge = valkey.NewBridge(shared, events, eventCodec{})
		if err := shareAuthReads(authSvc, shared, reg, logger); err != nil {
			return nil, err
		}
	}
	streamMetrics := stream.NewMetrics(reg)
	var cloneFirst workspace.FirstTask // set once the task service exists
	workspaces := workspace.NewService(workspace.Deps{
		Store: st, Roots: roots, Runtime: rt, Bus: events, Streams: streamMetrics, Audit: recorder, Logger: logger, Now: now,
		FirstTask: &cloneFirst,
		Containers: workspace.Containers{
			Image: cfg.Workspace.Image, ImageAllow: cfg.Workspace.ImageAllow, Network: cfg.Workspace.Network, User: cfg.Workspace.User,
			MemoryMB: cfg.Workspace.MemoryMB, CPUs: cfg.Workspace.CPUs, Pids: cfg.Workspace.Pids,
			MaxMemoryMB: cfg.Workspace.MaxMemoryMB, MaxCPUs: cfg.Workspace.MaxCPUs, MaxPids: cfg.Workspace.MaxPids,
			CapAdd: cfg.Workspace.CapAdd, StopTimeout: 10 * time.Second, IdleTimeout: cfg.Workspace.IdleTimeout,
			Ephemeral: rt.ephemeral,
		},
	})
	statsSvc := stats.NewService(st)
	if cfg.Valkey.CacheTTL > 0 {
		records, err := cache.New("workspaces", cache.Options{Valkey: shared, TTL: cfg.Valkey.CacheTTL, Registerer: reg, Logger: logger})
		if err != nil {
			return nil, err
		}
		workspaces.UseCache(records)
		counts, err := cache.New("stats", cache.Options{Valkey: shared, TTL: cfg.Valkey.CacheTTL, Registerer: reg, Logger: logger})
		if err != nil {
			return nil, err
		}
		statsSvc.UseCache(counts)
		// Every write the counts depend on retires them, on every
		// instance, before the writing call returns.
		st.OnWrite([]string{"users", "workspaces", "workspace_members", "tasks"}, func(ctx context.Context) {
			counts.Invalidate(ctx, stats.Generation)
		})
	}
	envRule, err := taskenv.New(cfg.Tasks.EnvDeny, cfg.Tasks.EnvAllow)
	if err != nil {
		return nil, fmt.Errorf("--task-env-deny/--task-env-allow: %w", err)
	}
	runner := task.NewRunner(st, rt, workspaces, events, reg, logger, now, task.RunnerConfig{
		MaxRunning:      int(cfg.Tasks.MaxRunning),
		MaxPerWorkspace: int(cfg.Tasks.MaxRunningPerWorkspace),
		MaxPerUser:      int(cfg.Quotas.MaxRunningPerUser),
		DefaultTimeout:  cfg.Tasks.Timeout,
		ClaudePath:      cfg.Tasks.ClaudePath,
		ClaudeIdle:      cfg.Tasks.ClaudeIdleTimeout,
		ClaudeMaxTurns:  int(cfg.Tasks.ClaudeMaxTurns),
		APIKey:          cfg.Tasks.AnthropicAPIKey.Reveal(),
		LogRetention:    cfg.Tasks.LogRetention,
		MaxLogBytes:     cfg.Quotas.MaxTaskLogBytes,
		Lease:           cfg.Tasks.Lease,
		Env:             envRule,
		Builds:          task.BuildDefaults{Network: cfg.Workspace.Network, MemoryMB: cfg.Workspace.MemoryMB, CPUs: cfg.Workspace.CPUs},
	})
	tasks := task.NewService(st, runner, task.Budget{USD: cfg.Tasks.BudgetUSD, Period: cfg.Tasks.BudgetPeriod}, now, streamMetrics)
	cloneFirst = func(ctx context.Context, p access.Principal, w *store.Workspace) error {
		_, err := tasks.Create(ctx, p, task.Spec{
			WorkspaceID: w.ID,
			Type:        store.TaskGitOperation,
			Priority:    store.TaskPriorityHigh,
			Git:         &task.GitOp{Operation: "clone", URL: w.GitURL, Ref: w.Branch},
			Tags:        []string{"clone"},
		})
		return err
	}
	tasks.LimitQueue(cfg.Quotas.MaxQueuedPerUser)
	workspaces.LimitOwned(cfg.Quotas.MaxWorkspacesPerUser)
	var loginMethods []auth.LoginMethod
	for _, p := range signInWith.Providers() {
		loginMethods = append(loginMethods, auth.LoginMethod(p))
	}

	// Register the services on a bare server first, to read their access
	// rules from the descriptors before the interceptors exist.
	register := func(s *connect.Server) {
		berthv1connect.RegisterAuthServiceHandler(s, auth.NewHandler(authSvc, loginMethods))
		berthv1connect.RegisterWorkspaceServiceHandler(s, workspace.NewHandler(workspaces))
		berthv1connect.RegisterTaskServiceHandler(s, task.NewHandler(tasks))
		berthv1connect.RegisterStatsServiceHandler(s, stats.NewHandler(statsSvc))
		berthv1connect.RegisterAdminServiceHandler(s, admin.NewHandler(admin.NewService(st, authSvc, recorder, now)))
	}
	bare := connect.NewServer()
	register(bare)
	rules, err := access.NewRules(bare.Specs())
	if err != nil {
		return nil, err
	}

	otel, err := otelconnect.NewServerInterceptor(otelconnect.WithMeterProvider(meters), otelconnect.WithoutTracing())
	if err != nil {
		return nil, fmt.Errorf("otelconnect: %w", err)
	}
	limits := limiter{newLimiter(cfg.RateLimits, shared, reg, now)}
	maxConns := connectionCap(cfg.Quotas.MaxConnections, descriptorLimit())
	slots := quota.New(quota.Options{PerPrincipal: cfg.Quotas.MaxStreamsPerUser, Total: streamCap(maxConns), Valkey: shared, Registerer: reg, Logger: logger})
	defer func() {
		if err != nil {
			slots.Close()
		}
	}()
	tasks.LimitCreation(func(ctx context.Context, userID string) error {
		return limits.allow(ctx, ratelimit.TaskCreate, "user:"+userID, callHeaders(ctx))
	})
	connectStreams := newDrain()
	api := connect.NewServer(
		otel,
		errorInterceptor(logger),
		connectStreams.interceptor(streamMetrics),
		authInterceptor(rules, authSvc, limits, cfg.Streams.Heartbeat),
		streamSlots(slots),
		validate.NewServerInterceptor(),
	)
	register(api)
	services := serviceNames(api)

	// Reflection lives on its own server: it is public and has no berth
	// access rules, and it describes the API services, health and itself.
	reflection := connect.NewServer()
	grpcreflect.Register(reflection, grpcreflect.WithNamer(grpcreflect.NamerFunc(func() []string {
		return append(append([]string(nil), services...), healthv1connect.HealthName, grpcreflect.ReflectV1ServiceName, grpcreflect.ReflectV1AlphaServiceName)
	})))

	jsonCodec := connectproto.NewJSONCodec()
	// Field names as in the proto (snake_case), as the seeds' JSON has them
	// (protojson accepts both spellings on input), and every scalar field
	// present even at its zero value, so curl users see "has_next": false
	// rather than nothing.
	jsonCodec.MarshalOptions.UseProtoNames = true
	jsonCodec.MarshalOptions.EmitDefaultValues = true
	mountOpts := []connecthttp.Option{
		connecthttp.WithCodecs(connectproto.NewBinaryCodec(), jsonCodec),
		connecthttp.WithCompressors(connectgzip.New()),
		connecthttp.WithCompressMinBytes(1024),
		connecthttp.WithReadMaxBytes(int(cfg.HTTP.MaxBodyBytes)),
	}

	mux := newRouteMux()
	connecthttp.Mount(mux, api, mountOpts...)
	connecthttp.Mount(mux, reflection, mountOpts...)
	streams := eventsource.New(eventsource.Config{
		Authenticate: func(r *http.Request) (access.Principal, error) {
			var h connect.Header
			for k, v := range r.Header {
				h.SetValues(k, v)
			}
			return authSvc.Authenticate(r.Context(), credentials(&h))
		},
		RedeemTicket: authSvc.RedeemStreamTicket, RecheckTicket: authSvc.RecheckTicket,
		ResumeTicket: authSvc.ResumeTicket, SecureCookies: cfg.SecureCookies,
		Store: st, Bus: events, Workspaces: workspaces, Logger: logger, Metrics: streamMetrics,
		Heartbeat: cfg.Streams.Heartbeat, WriteTimeout: cfg.Streams.StallTimeout,
		Admit: admitStream(limits, slots),
	})
	streams.Mount(mux)
	sockets := ws.New(ws.Config{
		Authenticate:   streams.Authenticate,
		RedeemTicket:   authSvc.RedeemStreamTicket,
		RecheckTicket:  authSvc.RecheckTicket,
		AllowedOrigins: cfg.AllowedOrigins,
		Tasks:          tasks,
		Workspaces:     workspaces,
		Logger:         logger,
		Metrics:        streamMetrics,
		PingEvery:      cfg.Streams.WSPingInterval,
		CommandRate:    wsCommandRate(cfg.RateLimits.WSCommand),
		CommandBurst:   cfg.RateLimits.WSCommand.Burst,
		StallTimeout:   cfg.Streams.StallTimeout,
		Admit:          admitStream(limits, slots),
		Errors: func(ctx context.Context, action string, err error) ws.ErrorBody {
			ce := toConnectError(ctx, logger, connect.Spec{Procedure: "ws " + action}, err).(*connect.Error)
			return ws.ErrorBody{Code: ce.Code().String(), Message: ce.Message(), Reason: Reason(ce.Code())}
		},
	})
	sockets.Mount(mux)
	mux.HandleFunc("GET /health", handleHealth)
	mux.Handle("GET /{$}", apiIndex(services, func() []string { return mux.patterns }))
	openapi.Mount(mux)
	mux.Handle("/auth/oidc/", signInWith)
	readiness := []check{{name: "store", run: func(ctx context.Context) (string, bool) {
		if err := st.Ping(ctx); err != nil {
			logger.WarnContext(ctx, "readiness: store unreachable", "error", err.Error())
			return "unreachable", false
		}
		return "ok (" + st.Engine() + ")", true
	}}, {name: "runtime", run: rt.check}, {name: "valkey", run: func(context.Context) (string, bool) {
		// Degraded is still ready: every use of Valkey has a local fallback.
		return shared.Status(), true
	}}}
	mux.Handle("GET /ready", handleReady(readiness))
	// The gRPC health protocol reports the same checks. Like reflection it
	// is public and lives on its own server, without berth's access rules;
	// the drain ends its Watch streams at shutdown.
	probes := connect.NewServer(connectStreams.interceptor(nil))
	healthChecks := make([]health.Check, len(readiness))
	for i, c := range readiness {
		healthChecks[i] = c.run
	}
	healthv1connect.RegisterHealthHandler(probes, health.New(services, cfg.Streams.Heartbeat, healthChecks...))
	connecthttp.Mount(mux, probes, mountOpts...)

	var handler http.Handler = eventsource.KeepOpen(mux, berthv1connect.TaskServiceStreamTaskLogsProcedure, berthv1connect.WorkspaceServiceWatchWorkspaceProcedure, healthv1connect.HealthWatchProcedure)
	handler = limitHTTP(limits, handler)
	handler = limitBody(cfg.HTTP.MaxBodyBytes, handler)
	if handler, err = csrfProtect(cfg.AllowedOrigins, handler); err != nil {
		return nil, err
	}
	handler = withCORS(cfg.AllowedOrigins, handler)
	handler = securityHeaders(handler)
	handler = jsonErrors(handler)
	handler = observe(logger, newHTTPMetrics(reg), cfg.RateLimits.TrustedProxies, handler)

	adminMux := http.NewServeMux()
	adminMux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))

	return &Server{
		cfg:        cfg,
		logger:     logger,
		store:      st,
		meters:     meters,
		runtime:    rt,
		workspaces: workspaces,
		runner:     runner,
		streams:    streams,
		sockets:    sockets,
		rpcStreams: connectStreams,
		shared:     shared,
		bridge:     bridge,
		slots:      slots,
		maxConns:   maxConns,
		refused:    connectionsRefused(reg),
		handler:    handler,
		admin:      adminMux,
		services:   services,
		routes:     mux.patterns,
	}, nil
}

// Handler is the main listener's handler: the API, reflection, /health,
// /ready and the OpenAPI document behind the middleware.
func (s *Server) Handler() http.Handler { return s.handler }

// AdminHandler is the admin listener's handler: /metrics.
func (s *Server) AdminHandler() http.Handler { return s.admin }

// Services lists the fully-qualified names of the API services served.
func (s *Server) Services() []string { return s.services }

// Close releases the store and the meter provider.
func (s *Server) Close() error {
	s.slots.Close()
	closeShared(s.bridge, s.shared)
	return errors.Join(s.meters.Shutdown(context.Background()), s.runtime.Close(), s.store.Close())
}

// shareAuthReads makes authentication read sessions, accounts and API keys
// through Valkey-backed caches, so that every instance sees a logout, a
// revocation, a disabled account or a role change on its next request.
func shareAuthReads(authSvc *auth.Service, shared *valkey.Client, reg prometheus.Registerer, logger *slog.Logger) error {
	caches := make([]*cache.Cache, 0, 3)
	for _, name := range []string{"sessions", "users", "apikeys"} {
		c, err := cache.New(name, cache.Options{Valkey: shared, TTL: 5 * time.Minute, Registerer: reg, Logger: logger})
		if err != nil {
			return err
		}
		caches = append(caches, c)
	}
	authSvc.UseSharedCache(caches[0], caches[1], caches[2])
	return nil
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
func openValkey(ctx context.Context, cfg *config.Config, reg prometheus.Registerer, logger *slog.Logger) (*valkey.Client, error) {
	if cfg.Valkey.URL == "" {
		return nil, nil
	}
	c, err := valkey.Open(ctx, cfg.Valkey.URL.Reveal(), valkey.Options{Registerer: reg, Logger: logger})
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
