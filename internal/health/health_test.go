package health_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"

	healthv1 "github.com/berthhq/berth/internal/gen/grpc/health/v1"
	"github.com/berthhq/berth/internal/gen/grpc/health/v1/healthv1connect"
	"github.com/berthhq/berth/internal/health"
)

// serve mounts svc on a loopback HTTP server and returns a client of it.
func serve(t *testing.T, svc *health.Service) healthv1connect.HealthClient {
	t.Helper()
	s := connect.NewServer()
	healthv1connect.RegisterHealthHandler(s, svc)
	mux := http.NewServeMux()
	connecthttp.Mount(mux, s)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return healthv1connect.NewHealthClient(connect.NewClient(connecthttp.NewTransport(srv.Client(), srv.URL)))
}

// TestWatchFollowsTheChecks flips a dependency's readiness while a Watch is
// open: the stream says NOT_SERVING, then SERVING again, and Check agrees.
func TestWatchFollowsTheChecks(t *testing.T) {
	t.Parallel()
	var ready atomic.Bool
	ready.Store(true)
	dependency := func(context.Context) (string, bool) { return "flipped by the test", ready.Load() }
	client := serve(t, health.New([]string{"berth.v1.TaskService"}, 10*time.Millisecond, dependency))

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stream, err := client.Watch(ctx, &healthv1.HealthCheckRequest{Service: "berth.v1.TaskService"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = stream.Close() }()
	expect := func(want healthv1.HealthCheckResponse_ServingStatus) {
		t.Helper()
		res, err := stream.Receive()
		if err != nil || res.GetStatus() != want {
			t.Fatalf("Watch: %v, %v; want %v", res.GetStatus(), err, want)
		}
		check, err := client.Check(t.Context(), &healthv1.HealthCheckRequest{Service: "berth.v1.TaskService"})
		if err != nil || check.GetStatus() != want {
			t.Fatalf("Check: %v, %v; want %v", check.GetStatus(), err, want)
		}
	}
	expect(healthv1.HealthCheckResponse_SERVING)
	ready.Store(false)
	expect(healthv1.HealthCheckResponse_NOT_SERVING)
	ready.Store(true)
	expect(healthv1.HealthCheckResponse_SERVING)
}

// TestUnknownService: Check says NotFound, Watch says SERVICE_UNKNOWN, as
// the protocol asks.
func TestUnknownService(t *testing.T) {
	t.Parallel()
	client := serve(t, health.New(nil, time.Hour))
	_, err := client.Check(t.Context(), &healthv1.HealthCheckRequest{Service: "no.such.Service"})
	if connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("Check of an unknown service: %v, want NotFound", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stream, err := client.Watch(ctx, &healthv1.HealthCheckRequest{Service: "no.such.Service"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = stream.Close() }()
	if res, err := stream.Receive(); err != nil || res.GetStatus() != healthv1.HealthCheckResponse_SERVICE_UNKNOWN {
		t.Fatalf("Watch of an unknown service: %v, %v; want SERVICE_UNKNOWN", res.GetStatus(), err)
	}
	// The server as a whole, with no checks, serves.
	if res, err := client.Check(t.Context(), &healthv1.HealthCheckRequest{}); err != nil || res.GetStatus() != healthv1.HealthCheckResponse_SERVING {
		t.Fatalf("Check of the server: %v, %v; want SERVING", res.GetStatus(), err)
	}
}
