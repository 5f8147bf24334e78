// Package health serves the gRPC health checking protocol
// (grpc.health.v1.Health: Check and Watch) over gRPC, gRPC-Web and Connect,
// for probes that speak it (grpc_health_probe, Kubernetes gRPC probes,
// grpcurl). It reports the same checks as /ready: the server, and each of
// its services, is SERVING when every dependency is ready.
//
// connectrpc.com/grpchealth has no connect-go v2 build; the service is
// generated from berth's copy of the protocol's proto
// (proto/grpc/health/v1/health.proto).
package health

import (
	"context"
	"time"

	"connectrpc.com/connect/v2"

	healthv1 "github.com/berthhq/berth/internal/gen/grpc/health/v1"
	"github.com/berthhq/berth/internal/gen/grpc/health/v1/healthv1connect"
)

// checkTimeout bounds one round of checks, as /ready bounds its own.
const checkTimeout = 2 * time.Second

// Check is one dependency's readiness: the checks /ready runs.
type Check func(ctx context.Context) (state string, ok bool)

// Service implements grpc.health.v1.Health.
type Service struct {
	known  map[string]bool
	checks []Check
	every  time.Duration
}

var _ healthv1connect.HealthHandler = (*Service)(nil)

// New returns the health service of a server that serves services (by
// full name; the empty name, the server as a whole, is always known). It
// is SERVING when every check passes; Watch checks again every period.
func New(services []string, every time.Duration, checks ...Check) *Service {
	known := map[string]bool{"": true}
	for _, s := range services {
		known[s] = true
	}
	return &Service{known: known, checks: checks, every: every}
}

// Check answers the service's status now. An unknown service is NotFound,
// as the protocol asks.
func (s *Service) Check(ctx context.Context, req *healthv1.HealthCheckRequest) (*healthv1.HealthCheckResponse, error) {
	if !s.known[req.GetService()] {
		return nil, connect.NewError(connect.CodeNotFound, "no service named "+req.GetService())
	}
	return &healthv1.HealthCheckResponse{Status: s.status(ctx)}, nil
}

// Watch sends the service's status at once and then whenever it changes,
// until the client goes away or the server shuts down (which cancels ctx).
// An unknown service is SERVICE_UNKNOWN rather than an error, as the
// protocol asks: it may appear later.
func (s *Service) Watch(ctx context.Context, req *healthv1.HealthCheckRequest, stream healthv1connect.HealthWatchServerStream) error {
	tick := time.NewTicker(s.every)
	defer tick.Stop()
	last := healthv1.HealthCheckResponse_ServingStatus(-1)
	for {
		status := healthv1.HealthCheckResponse_SERVICE_UNKNOWN
		if s.known[req.GetService()] {
			status = s.status(ctx)
		}
		if status != last {
			if err := stream.Send(&healthv1.HealthCheckResponse{Status: status}); err != nil {
				return err
			}
			last = status
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// status runs every check within checkTimeout.
func (s *Service) status(ctx context.Context) healthv1.HealthCheckResponse_ServingStatus {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	for _, c := range s.checks {
		if _, ok := c(ctx); !ok {
			return healthv1.HealthCheckResponse_NOT_SERVING
		}
	}
	return healthv1.HealthCheckResponse_SERVING
}
