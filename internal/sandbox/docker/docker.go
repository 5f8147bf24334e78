// Package docker runs berth workspaces as Docker containers through the
// Engine API: one long-lived container per workspace, the project directory
// bind-mounted at /workspace, resource limits, no-new-privileges, every
// capability dropped except those asked for, and commands run with exec.
//
// What a workspace image must hold: a POSIX /bin/sh, sleep, tr and grep
// (the idle main process is a shell loop, and stopping an exec is a shell
// script; see Exec). The engine must have docker-init (it ships with Docker Engine),
// because containers run with Init so that orphaned processes are reaped.
//
// Builds read their context through internal/hostpath, beneath an open
// directory, because the workspace that owns the context may be changing it.
package docker

import (
	"context"
	"fmt"
	"net/http"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/client"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/berthhq/berth/internal/sandbox"
)

// DefaultKillGrace is how long a cancelled exec's processes have between
// SIGTERM and SIGKILL unless WithKillGrace says otherwise.
const DefaultKillGrace = 5 * time.Second

// pingTimeout bounds New's first contact with the engine, so that a missing
// engine is reported promptly instead of hanging start-up.
const pingTimeout = 10 * time.Second

// Runtime drives workspace containers on one Docker engine. It is safe for
// concurrent use.
type Runtime struct {
	cli       *client.Client
	ownClient bool
	host      string
	killGrace time.Duration
}

// Option configures New.
type Option func(*config)

type config struct {
	cli       *client.Client
	host      string
	killGrace time.Duration
	tracer    trace.TracerProvider
	propagate propagation.TextMapPropagator
}

// WithClient makes the runtime use cli (which it will not close) instead of
// a client configured from the environment. Tests use it with
// sandboxtest.Engine.
func WithClient(cli *client.Client) Option { return func(c *config) { c.cli = cli } }

// WithHost points the runtime at the engine listening at host (for example
// "unix:///run/docker.sock") instead of DOCKER_HOST.
func WithHost(host string) Option { return func(c *config) { c.host = host } }

// WithKillGrace sets how long a cancelled exec's processes get between
// SIGTERM and SIGKILL (default DefaultKillGrace).
func WithKillGrace(d time.Duration) Option { return func(c *config) { c.killGrace = d } }

// WithTracing makes every Engine API call made inside a span a client span
// of tp's under it, and sends the trace along in traceparent (the client's
// transport is otelhttp's); calls outside any span are not traced. It applies to the client New makes,
// not to one given WithClient. Without it the client uses OpenTelemetry's
// global providers, which berth leaves as no-ops.
func WithTracing(tp trace.TracerProvider, propagator propagation.TextMapPropagator) Option {
	return func(c *config) { c.tracer, c.propagate = tp, propagator }
}

// New connects to the Docker engine named by the environment (DOCKER_HOST
// and friends, client.FromEnv), negotiating the API version, and checks that
// it answers. A missing engine is an error that says where it looked.
func New(ctx context.Context, opts ...Option) (*Runtime, error) {
	cfg := config{killGrace: DefaultKillGrace}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.killGrace < 0 {
		return nil, fmt.Errorf("docker: negative kill grace %v", cfg.killGrace)
	}
	r := &Runtime{cli: cfg.cli, killGrace: cfg.killGrace}
	if r.cli == nil {
		copts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
		if cfg.host != "" {
			copts = append(copts, client.WithHost(cfg.host))
		}
		if cfg.tracer != nil {
			copts = append(copts, client.WithTraceProvider(cfg.tracer), client.WithTraceOptions(
				// Only calls made inside a span (a request's, a task's):
				// the event stream, reconciling and idle stops start no
				// traces of their own.
				otelhttp.WithFilter(func(r *http.Request) bool { return trace.SpanContextFromContext(r.Context()).IsValid() }),
			))
			if cfg.propagate != nil {
				copts = append(copts, client.WithTraceOptions(otelhttp.WithPropagators(cfg.propagate)))
			}
		}
		cli, err := client.NewClientWithOpts(copts...)
		if err != nil {
			return nil, fmt.Errorf("docker: configuring the engine client: %w", err)
		}
		r.cli, r.ownClient = cli, true
	}
	r.host = r.cli.DaemonHost()
	pctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	if _, err := r.cli.Ping(pctx); err != nil {
		_ = r.Close() // the ping's error is the one to report
		return nil, fmt.Errorf("docker: no engine answers at %s: %w", r.host, err)
	}
	return r, nil
}

// Close releases the engine connection when New made it; containers are
// left as they are.
func (r *Runtime) Close() error {
	if r.ownClient {
		return r.cli.Close()
	}
	return nil
}

// Host is the engine address the runtime talks to, for logs and /ready.
func (r *Runtime) Host() string { return r.host }

// Version is the engine's version (for example "20.10.24"), for /ready. An
// error means the engine does not answer.
func (r *Runtime) Version(ctx context.Context) (string, error) {
	v, err := r.cli.ServerVersion(ctx)
	if err != nil {
		return "", fmt.Errorf("docker: engine version at %s: %w", r.host, err)
	}
	return v.Version, nil
}

// containerError maps an engine error about container id to berth's
// sentinels, keeping the engine's message.
func containerError(op, id string, err error) error {
	switch {
	case err == nil:
		return nil
	case cerrdefs.IsNotFound(err):
		return fmt.Errorf("docker %s %s: %w (%w)", op, short(id), sandbox.ErrNotFound, err)
	default:
		return fmt.Errorf("docker %s %s: %w", op, short(id), err)
	}
}

// short trims a container id for messages, as the docker CLI does.
func short(id string) string {
	if len(id) == 64 {
		return id[:12]
	}
	return id
}
