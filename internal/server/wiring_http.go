package server

import (
	"context"
	"net/http"
	"net/http/pprof"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connectgzip"
	"connectrpc.com/connect/v2/connecthttp"
	"connectrpc.com/connect/v2/connectproto"
	"connectrpc.com/grpcreflect/v2"
	"connectrpc.com/validate"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/berthhq/berth/internal/access"
	"github.com/berthhq/berth/internal/admin"
	"github.com/berthhq/berth/internal/auth"
	"github.com/berthhq/berth/internal/gen/berth/v1/berthv1connect"
	"github.com/berthhq/berth/internal/gen/grpc/health/v1/healthv1connect"
	"github.com/berthhq/berth/internal/health"
	"github.com/berthhq/berth/internal/openapi"
	"github.com/berthhq/berth/internal/openapi/docs"
	"github.com/berthhq/berth/internal/quota"
	"github.com/berthhq/berth/internal/sse"
	"github.com/berthhq/berth/internal/stats"
	"github.com/berthhq/berth/internal/stream"
	"github.com/berthhq/berth/internal/task"
	"github.com/berthhq/berth/internal/workspace"
	"github.com/berthhq/berth/internal/ws"
	"github.com/berthhq/berth/web"
)

// register registers the API services' Connect handlers on s.
func (b *wiring) register(s *connect.Server) {
	berthv1connect.RegisterAuthServiceHandler(s, auth.NewHandler(b.authSvc, b.loginMethods, b.cfg.SecureCookies))
	berthv1connect.RegisterWorkspaceServiceHandler(s, workspace.NewHandler(b.workspaces))
	berthv1connect.RegisterTaskServiceHandler(s, task.NewHandler(b.tasks))
	berthv1connect.RegisterStatsServiceHandler(s, stats.NewHandler(b.statsSvc))
	berthv1connect.RegisterAdminServiceHandler(s, admin.NewHandler(admin.NewService(b.st, b.authSvc, b.recorder, b.now)))
}

// newAPI builds the Connect servers: the API behind its interceptor chain
// (metrics → errors → stream drain → access → stream slots → validation),
// with the rate limits and stream quotas it needs, and reflection.
func (b *wiring) newAPI() error {
	cfg := b.cfg
	// Register the services on a bare server first, to read their access
	// rules from the descriptors before the interceptors exist.
	bare := connect.NewServer()
	b.register(bare)
	rules, err := access.NewRules(bare.Specs())
	if err != nil {
		return err
	}

	otel, err := rpcTelemetry(b.meters, b.tracing)
	if err != nil {
		return err
	}
	b.maxConns = connectionCap(cfg.Quotas.MaxConnections, descriptorLimit())
	slots := quota.New(quota.Options{PerPrincipal: cfg.Quotas.MaxStreamsPerUser, Total: streamCap(b.maxConns), Valkey: b.shared, Registerer: b.reg, Logger: b.logger})
	b.slots = slots
	b.onFailure(slots.Close)
	b.connectStreams = newDrain()
	b.api = connect.NewServer(
		otel,
		streamGate(b.logger, b.connectStreams, b.streamMetrics, newAuthz(rules, b.authSvc, b.limits, cfg.Streams.Heartbeat), slots),
		validate.NewServerInterceptor(),
	)
	b.register(b.api)
	services := serviceNames(b.api)
	b.services = services

	// Reflection lives on its own server: it is public and has no berth
	// access rules, and it describes the API services, health and itself.
	b.reflection = connect.NewServer()
	grpcreflect.Register(b.reflection, grpcreflect.WithNamer(grpcreflect.NamerFunc(func() []string {
		return append(append([]string(nil), services...), healthv1connect.HealthName, grpcreflect.ReflectV1ServiceName, grpcreflect.ReflectV1AlphaServiceName)
	})))
	return nil
}

// mountOptions are the Connect handlers' codecs, compression and limits.
func (b *wiring) mountOptions() []connecthttp.Option {
	jsonCodec := connectproto.NewJSONCodec()
	// Field names as in the proto (snake_case), as the seeds' JSON has them
	// (protojson accepts both spellings on input), and every scalar field
	// present even at its zero value, so curl users see "has_next": false
	// rather than nothing.
	jsonCodec.MarshalOptions.UseProtoNames = true
	jsonCodec.MarshalOptions.EmitDefaultValues = true
	return []connecthttp.Option{
		connecthttp.WithCodecs(sharedBinary{connectproto.NewBinaryCodec()}, newMemoJSON(jsonCodec)),
		connecthttp.WithCompressors(connectgzip.New()),
		connecthttp.WithCompressMinBytes(1024),
		connecthttp.WithReadMaxBytes(int(b.cfg.HTTP.MaxBodyBytes)),
	}
}

// newRoutes mounts every route of the main listener: the Connect servers,
// SSE, WebSocket, the console (or the JSON index), OpenAPI, /docs, OIDC,
// readiness and gRPC health.
func (b *wiring) newRoutes() error {
	cfg, logger, st, authSvc := b.cfg, b.logger, b.st, b.authSvc
	mountOpts := b.mountOptions()
	mux := newRouteMux()
	b.mux = mux
	connecthttp.Mount(mux, b.api, mountOpts...)
	connecthttp.Mount(mux, b.reflection, mountOpts...)
	// One way to authenticate a stream that is not an RPC, for SSE and the
	// WebSocket alike.
	streamAuth := stream.Auth{
		Authenticate: func(r *http.Request) (access.Principal, error) {
			var h connect.Header
			for _, k := range stream.CredentialHeaders {
				if v := r.Header.Values(k); len(v) > 0 {
					h.SetValues(k, v)
				}
			}
			return authSvc.Authenticate(r.Context(), credentials(&h))
		},
		RedeemTicket: authSvc.RedeemStreamTicket, RecheckTicket: authSvc.RecheckTicket,
	}
	b.streams = sse.New(sse.Config{
		Auth:         streamAuth,
		ResumeTicket: authSvc.ResumeTicket, SecureCookies: cfg.SecureCookies,
		Tasks: b.tasks, Workspaces: b.workspaces, Logger: logger, Metrics: b.streamMetrics,
		Heartbeat: cfg.Streams.Heartbeat, WriteTimeout: cfg.Streams.StallTimeout,
		Admit: admitStream(b.limits, b.slots),
	})
	b.streams.Mount(mux)
	b.sockets = ws.New(ws.Config{
		Auth:           streamAuth,
		AllowedOrigins: cfg.AllowedOrigins,
		Tasks:          b.tasks,
		Workspaces:     b.workspaces,
		Logger:         logger,
		Metrics:        b.streamMetrics,
		PingEvery:      cfg.Streams.WSPingInterval,
		CommandRate:    wsCommandRate(cfg.RateLimits.WSCommand),
		CommandBurst:   cfg.RateLimits.WSCommand.Burst,
		StallTimeout:   cfg.Streams.StallTimeout,
		Admit:          admitStream(b.limits, b.slots),
		Errors: func(ctx context.Context, action string, err error) ws.ErrorBody {
			ce := toConnectError(ctx, logger, connect.Spec{Procedure: "ws " + action}, err).(*connect.Error)
			return ws.ErrorBody{Code: ce.Code().String(), Message: ce.Message(), Reason: Reason(ce.Code())}
		},
	})
	b.sockets.Mount(mux)
	mux.HandleFunc("GET /health", handleHealth)
	ui, err := newConsole(web.Dist())
	if err != nil {
		return err
	}
	b.console = ui
	mux.Handle("GET /{$}", ui.orIndex(apiIndex(b.services, func() []string { return mux.patterns })))
	openapi.Mount(mux)
	docs.Mount(mux)
	mux.Handle("/auth/oidc/", b.oidc)
	shared := b.shared
	readiness := []check{{name: "store", run: func(ctx context.Context) (string, bool) {
		if err := st.Ping(ctx); err != nil {
			logger.WarnContext(ctx, "readiness: store unreachable", "error", err.Error())
			return "unreachable", false
		}
		return "ok (" + st.Engine() + ")", true
	}}, {name: "runtime", run: b.rt.check}, {name: "valkey", run: func(context.Context) (string, bool) {
		// Degraded is still ready: every use of Valkey has a local fallback.
		return shared.Status(), true
	}}}
	mux.Handle("GET /ready", handleReady(readiness))
	// The gRPC health protocol reports the same checks. Like reflection it
	// is public and lives on its own server, without berth's access rules;
	// the drain ends its Watch streams at shutdown.
	probes := connect.NewServer(b.connectStreams.interceptor(nil))
	healthChecks := make([]health.Check, len(readiness))
	for i, c := range readiness {
		healthChecks[i] = c.run
	}
	healthv1connect.RegisterHealthHandler(probes, health.New(b.services, cfg.Streams.Heartbeat, healthChecks...))
	connecthttp.Mount(mux, probes, mountOpts...)
	return nil
}

// newMiddleware wraps the routes in the HTTP middleware: the front (JSON
// errors, security headers, CORS, CSRF, body and rate limits, long streams
// kept open, the console's fallback), then the request id, access log and
// metrics.
func (b *wiring) newMiddleware() error {
	cfg := b.cfg
	f, err := newFront(cfg.AllowedOrigins, cfg.HTTP.MaxBodyBytes, b.limits, b.console, b.mux,
		berthv1connect.TaskServiceStreamTaskLogsProcedure, berthv1connect.WorkspaceServiceWatchWorkspaceProcedure, healthv1connect.HealthWatchProcedure)
	if err != nil {
		return err
	}
	b.handler = b.tracing.Handler(observe(b.logger, newHTTPMetrics(b.reg), cfg.RateLimits.TrustedProxies, f))
	return nil
}

// server is the finished Server, with the admin listener's /metrics and
// /debug/pprof/.
func (b *wiring) server() *Server {
	adminMux := http.NewServeMux()
	adminMux.Handle("GET /metrics", promhttp.HandlerFor(b.reg, promhttp.HandlerOpts{Registry: b.reg}))
	// Go's profiles, for whoever can reach the admin listener (loopback
	// by default): heap, goroutines, CPU and traces of a live server.
	adminMux.HandleFunc("GET /debug/pprof/", pprof.Index)
	adminMux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	adminMux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	adminMux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	adminMux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	return &Server{
		cfg:        b.cfg,
		logger:     b.logger,
		store:      b.st,
		meters:     b.meters,
		tracing:    b.tracing,
		runtime:    b.rt,
		workspaces: b.workspaces,
		runner:     b.runner,
		streams:    b.streams,
		sockets:    b.sockets,
		rpcStreams: b.connectStreams,
		shared:     b.shared,
		bridge:     b.bridge,
		slots:      b.slots,
		maxConns:   b.maxConns,
		refused:    connectionsRefused(b.reg),
		handler:    b.handler,
		admin:      adminMux,
		services:   b.services,
		routes:     b.mux.patterns,
	}
}
