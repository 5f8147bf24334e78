package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/berthhq/berth/internal/config"
	"github.com/berthhq/berth/internal/sandbox/docker"
	"github.com/berthhq/berth/internal/sandbox/process"
	"github.com/berthhq/berth/internal/task"
	"github.com/berthhq/berth/internal/telemetry"
	"github.com/berthhq/berth/internal/workspace"
)

// engine is everything the server asks of a container runtime: the
// workspace service's needs and the task runner's.
type engine interface {
	workspace.Runtime
	task.Runtime
}

// containerRuntime is the runtime the server runs workspaces on, with what
// /ready reports about it.
type containerRuntime struct {
	engine
	io.Closer
	name      string
	ephemeral bool // keeps no containers across restarts
	check     func(ctx context.Context) (string, bool)
}

type nopCloser struct{}

func (nopCloser) Close() error { return nil }

// openRuntime picks the container runtime: Docker when asked for (failing
// if no engine answers), the process runtime when asked for, and with
// "auto" Docker if an engine answers, else the process runtime — loudly,
// because it is no sandbox.
func openRuntime(ctx context.Context, cfg *config.Config, logger *slog.Logger, tracing *telemetry.Tracing) (*containerRuntime, error) {
	if cfg.Runtime != config.RuntimeProcess {
		var opts []docker.Option
		if tracing.Enabled() {
			opts = append(opts, docker.WithTracing(tracing.Provider, tracing.Propagator))
		}
		if cfg.DockerHost != "" {
			opts = append(opts, docker.WithHost(cfg.DockerHost))
		}
		rt, err := docker.New(ctx, opts...)
		if err == nil {
			logger.Info("container runtime: docker", "host", rt.Host())
			return &containerRuntime{engine: rt, Closer: rt, name: "docker", check: func(ctx context.Context) (string, bool) {
				v, err := rt.Version(ctx)
				if err != nil {
					logger.WarnContext(ctx, "readiness: docker engine unreachable", "error", err.Error())
					return "docker: engine unreachable", false
				}
				return "docker: ok (engine " + v + ")", true
			}}, nil
		}
		if cfg.Runtime == config.RuntimeDocker {
			return nil, fmt.Errorf("--runtime docker: %w", err)
		}
		logger.Warn("no Docker engine answers; falling back to the process runtime", "error", err.Error())
	}
	logger.Warn("container runtime: process — workspace commands run directly on this host as berth's own user, NOT in a sandbox; use it for development only")
	return &containerRuntime{engine: process.New(), Closer: nopCloser{}, name: "process", ephemeral: true, check: func(context.Context) (string, bool) {
		return "process (unsandboxed)", true
	}}, nil
}
