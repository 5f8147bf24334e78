package server

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/prometheus/client_golang/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/berthhq/berth/internal/access"
	"github.com/berthhq/berth/internal/audit"
	"github.com/berthhq/berth/internal/auth"
	"github.com/berthhq/berth/internal/bus"
	"github.com/berthhq/berth/internal/cache"
	"github.com/berthhq/berth/internal/config"
	"github.com/berthhq/berth/internal/oidc"
	"github.com/berthhq/berth/internal/quota"
	"github.com/berthhq/berth/internal/ratelimit"
	"github.com/berthhq/berth/internal/sse"
	"github.com/berthhq/berth/internal/stats"
	"github.com/berthhq/berth/internal/store"
	"github.com/berthhq/berth/internal/stream"
	"github.com/berthhq/berth/internal/task"
	"github.com/berthhq/berth/internal/taskenv"
	"github.com/berthhq/berth/internal/telemetry"
	"github.com/berthhq/berth/internal/valkey"
	"github.com/berthhq/berth/internal/version"
	"github.com/berthhq/berth/internal/workspace"
	"github.com/berthhq/berth/internal/ws"
)

// wiring is a Server under construction: each step of New reads what the
// steps before it built and adds its own parts. What a step opens it also
// pushes on undo, which New runs, last first, when a later step fails.
type wiring struct {
	cfg    *config.Config
	logger *slog.Logger
	reg    *prometheus.Registry
	now    func() time.Time
	undo   []func()

	st         *store.Store             // openStore
	key        *auth.SigningKey         // loadSigningKey
	roots      workspace.Roots          // newRoots
	meters     *sdkmetric.MeterProvider // newMeters
	tracing    *telemetry.Tracing       // newMeters
	events     *bus.Bus                 // openShared
	shared     *valkey.Client           // openShared; nil without --valkey-url
	bridge     *valkey.Bridge           // openShared; nil without --valkey-url
	authCaches *auth.SharedCaches       // openShared; nil without --valkey-url
	recorder   *audit.Recorder          // newAuth
	authSvc    *auth.Service            // newAuth
	oidc       *oidc.Handler            // newAuth
	rt         *containerRuntime        // newRuntime

	streamMetrics *stream.Metrics    // newServices
	workspaces    *workspace.Service // newServices
	statsSvc      *stats.Service     // newServices
	runner        *task.Runner       // newServices
	tasks         *task.Service      // newServices
	loginMethods  []auth.LoginMethod // newServices
	limits        limiter            // newServices

	maxConns       int64          // newAPI
	slots          *quota.Streams // newAPI
	connectStreams *drain         // newAPI
	api            *connect.Server
	reflection     *connect.Server
	services       []string

	mux     *routeMux    // newRoutes
	streams *sse.Handler // newRoutes
	sockets *ws.Handler  // newRoutes
	console *console     // newRoutes
	handler http.Handler // newMiddleware
}

// onFailure registers the release of something just opened.
func (b *wiring) onFailure(release func()) { b.undo = append(b.undo, release) }

// release runs the registered releases, last first.
func (b *wiring) release() {
	for _, f := range slices.Backward(b.undo) {
		f()
	}
}

// openStore opens the store, running migrations.
func (b *wiring) openStore(ctx context.Context) error {
	st, err := store.OpenURL(ctx, b.cfg.Database.URL.Reveal(), filepath.Join(b.cfg.DataDir, "berth.db"), int(b.cfg.Database.MaxConns))
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	b.st = st
	b.onFailure(func() {
		st.Close() // #nosec G104 -- cleanup after a failed start: err is the error to report
	})
	return nil
}

// loadSigningKey reads the JWT signing key from the configuration, or from
// (or into) its key file.
func (b *wiring) loadSigningKey() (err error) {
	if b.cfg.JWT.Key != "" {
		b.key, err = auth.ParseSigningKey([]byte(b.cfg.JWT.Key.Reveal()))
	} else {
		b.key, err = auth.LoadOrCreateSigningKey(b.cfg.JWT.KeyFile)
	}
	return err
}

// newRoots checks the configured workspace roots.
func (b *wiring) newRoots() (err error) {
	b.roots, err = workspace.NewRoots(b.cfg.WorkspaceRoots)
	return err
}

// newMeters makes the OpenTelemetry meter provider that exports to the
// Prometheus registry, and the tracer provider (a no-op unless the OTEL_*
// environment names an exporter), both with berth's resource; with tracing
// on, the store's queries become spans.
func (b *wiring) newMeters(ctx context.Context) error {
	res, err := telemetry.NewResource(ctx, version.Version)
	if err != nil {
		return err
	}
	meters, err := telemetry.NewMeterProvider(b.reg, res)
	if err != nil {
		return err
	}
	b.meters = meters
	b.onFailure(func() { _ = meters.Shutdown(context.Background()) })
	tracing, err := telemetry.NewTracing(ctx, res)
	if err != nil {
		return err
	}
	b.tracing = tracing
	b.onFailure(func() { _ = tracing.Shutdown(context.Background()) })
	if tracing.Enabled() {
		b.st.UseTracing(tracing.Provider)
	}
	return nil
}

// newAuth builds the audit recorder, the authentication service and the
// OIDC relying parties.
func (b *wiring) newAuth(ctx context.Context) (err error) {
	cfg := b.cfg
	b.recorder = audit.NewRecorder(b.st, b.logger, b.now)
	tokens := auth.NewTokenIssuer(b.key, cfg.JWT.Issuer, cfg.JWT.Audience, cfg.JWT.AccessTokenTTL, b.now)
	b.authSvc, err = auth.NewService(b.st, tokens, auth.Config{
		AllowRegistration:     cfg.AllowRegistration,
		RefreshTTL:            cfg.JWT.RefreshTokenTTL,
		PasswordHashMemoryMiB: cfg.PasswordHashMemoryMiB,
		Shared:                b.authCaches,
	}, b.recorder, b.now)
	if err != nil {
		return err
	}
	b.oidc, err = oidc.New(ctx, oidc.Config{PublicURL: cfg.PublicURL, Providers: cfg.OIDC, SecureCookies: cfg.SecureCookies, Logger: b.logger}, b.authSvc)
	return err
}

// newRuntime opens the container runtime (Docker, or processes).
func (b *wiring) newRuntime(ctx context.Context) error {
	rt, err := openRuntime(ctx, b.cfg, b.logger, b.tracing)
	if err != nil {
		return err
	}
	b.rt = rt
	b.onFailure(func() {
		rt.Close() // #nosec G104 -- cleanup after a failed start: err is the error to report
	})
	return nil
}

// openShared makes the event bus and, with --valkey-url, connects Valkey,
// bridges the bus across instances and makes the caches that share
// authentication's reads (newAuth hands them to the auth service).
func (b *wiring) openShared(ctx context.Context) (err error) {
	b.events = bus.New()
	if b.shared, err = openValkey(ctx, b.cfg, b.reg, b.logger, b.tracing); err != nil {
		return err
	}
	b.onFailure(func() { closeShared(b.bridge, b.shared) })
	if b.shared != nil {
		// Events cross instances: a task running here streams to clients
		// connected anywhere.
		b.bridge = valkey.NewBridge(b.shared, b.events, valkey.EventCodec{})
		if b.authCaches, err = sharedAuthCaches(b.shared, b.reg, b.logger); err != nil {
			return err
		}
	}
	return nil
}

// newCaches makes the read-through caches of workspace records and stats
// counts, when --cache-ttl is set (nil, nil otherwise).
func (b *wiring) newCaches() (records, counts *cache.Cache, err error) {
	cfg := b.cfg
	if cfg.Valkey.CacheTTL <= 0 {
		return nil, nil, nil
	}
	if records, err = cache.New("workspaces", cache.Options{Valkey: b.shared, TTL: cfg.Valkey.CacheTTL, Registerer: b.reg, Logger: b.logger}); err != nil {
		return nil, nil, err
	}
	if counts, err = cache.New("stats", cache.Options{Valkey: b.shared, TTL: cfg.Valkey.CacheTTL, Registerer: b.reg, Logger: b.logger}); err != nil {
		return nil, nil, err
	}
	// Every write the counts depend on retires them, on every instance,
	// before the writing call returns. This stays a call on the open store
	// rather than an option of store.OpenURL: the store is the first thing
	// New opens (the audit recorder, the auth service and every service
	// after them read it), while this cache needs the Valkey client, which
	// is traced by the tracer provider that newMeters makes once the store
	// is open. A write before this call has nothing to retire: the
	// cache it would retire did not exist yet.
	b.st.OnWrite([]string{"users", "workspaces", "workspace_members", "tasks"}, func(ctx context.Context) {
		counts.Invalidate(ctx, stats.Generation)
	})
	return records, counts, nil
}

// newServices builds the domain services: workspaces, stats, the task
// runner and the task service, and the rate limits the task service and
// the API apply.
func (b *wiring) newServices() error {
	cfg := b.cfg
	b.streamMetrics = stream.NewMetrics(b.reg)
	records, counts, err := b.newCaches()
	if err != nil {
		return err
	}
	b.statsSvc = stats.NewService(b.st, counts)
	var cloneFirst workspace.FirstTask // set once the task service exists
	b.workspaces = workspace.NewService(workspace.Deps{
		Store: b.st, Roots: b.roots, Runtime: b.rt, Bus: b.events, Streams: b.streamMetrics, Audit: b.recorder, Logger: b.logger, Now: b.now,
		TaskProto: task.ToProto,
		FirstTask: &cloneFirst, Records: records, TaskCounts: b.statsSvc.WorkspaceCounts, MaxOwned: cfg.Quotas.MaxWorkspacesPerUser,
		Containers: workspace.Containers{
			Image: cfg.Workspace.Image, ImageAllow: cfg.Workspace.ImageAllow, Network: cfg.Workspace.Network, User: cfg.Workspace.User,
			MemoryMB: cfg.Workspace.MemoryMB, CPUs: cfg.Workspace.CPUs, Pids: cfg.Workspace.Pids,
			MaxMemoryMB: cfg.Workspace.MaxMemoryMB, MaxCPUs: cfg.Workspace.MaxCPUs, MaxPids: cfg.Workspace.MaxPids,
			CapAdd: cfg.Workspace.CapAdd, StopTimeout: 10 * time.Second, IdleTimeout: cfg.Workspace.IdleTimeout,
			Ephemeral: b.rt.ephemeral,
		},
	})
	envRule, err := taskenv.New(cfg.Tasks.EnvDeny, cfg.Tasks.EnvAllow)
	if err != nil {
		return fmt.Errorf("--task-env-deny/--task-env-allow: %w", err)
	}
	var tracer trace.TracerProvider // nil: the runner's tasks make no spans
	if b.tracing.Enabled() {
		tracer = b.tracing.Provider
	}
	b.runner = task.NewRunner(b.st, b.rt, b.workspaces, b.events, b.reg, b.logger, b.now, task.RunnerConfig{
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
		Tracer:          tracer,
	})
	b.limits = limiter{newLimiter(cfg.RateLimits, b.shared, b.reg, b.now)}
	limits := b.limits
	tasks := task.NewService(b.st, b.runner, task.Budget{USD: cfg.Tasks.BudgetUSD, Period: cfg.Tasks.BudgetPeriod}, task.Limits{
		Queued: cfg.Quotas.MaxQueuedPerUser,
		Admit: func(ctx context.Context, userID string) error {
			return limits.allowCall(ctx, ratelimit.TaskCreate, "user:"+userID)
		},
	}, b.now, b.streamMetrics)
	b.tasks = tasks
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
	for _, p := range b.oidc.Providers() {
		b.loginMethods = append(b.loginMethods, auth.LoginMethod(p))
	}
	return nil
}
