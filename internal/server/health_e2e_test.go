package server_test

import (
	"context"
	"strings"
	"testing"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"

	healthv1 "github.com/berthhq/berth/internal/gen/grpc/health/v1"
	"github.com/berthhq/berth/internal/gen/grpc/health/v1/healthv1connect"
)

func healthClient(s *testServer, p protocol) healthv1connect.HealthClient {
	return healthv1connect.NewHealthClient(connect.NewClient(connecthttp.NewTransport(httpClient(p.h2c), s.URL, p.opts...)))
}

// TestGRPCHealth calls grpc.health.v1.Health without credentials over every
// protocol: the server and each API service are SERVING (the process
// runtime and SQLite are ready), an unknown service is NotFound, and Watch
// starts with the current status.
func TestGRPCHealth(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			c := healthClient(srv, p)
			for _, name := range append([]string{""}, srv.Server.Services()...) {
				res, err := c.Check(t.Context(), &healthv1.HealthCheckRequest{Service: name})
				if err != nil || res.GetStatus() != healthv1.HealthCheckResponse_SERVING {
					t.Fatalf("Check(%q): %v, %v; want SERVING", name, res.GetStatus(), err)
				}
			}
			if _, err := c.Check(t.Context(), &healthv1.HealthCheckRequest{Service: "berth.v1.NoSuchService"}); connect.CodeOf(err) != connect.CodeNotFound {
				t.Fatalf("Check of an unknown service: %v, want NotFound", err)
			}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			stream, err := c.Watch(ctx, &healthv1.HealthCheckRequest{})
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = stream.Close() }()
			if res, err := stream.Receive(); err != nil || res.GetStatus() != healthv1.HealthCheckResponse_SERVING {
				t.Fatalf("Watch: %v, %v; want SERVING", res.GetStatus(), err)
			}
		})
	}
}

// TestGRPCHealthWatchEndsAtShutdown: a shutdown ends an open Watch at once
// with the drain's Unavailable ("shutting down", and a retry hint), rather
// than holding the shutdown for its grace and then breaking the stream.
func TestGRPCHealthWatchEndsAtShutdown(t *testing.T) {
	t.Parallel()
	run := startServerUntil(t)
	stream, err := healthClient(run.srv, protocols[0]).Watch(t.Context(), &healthv1.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = stream.Close() }()
	if _, err := stream.Receive(); err != nil {
		t.Fatal(err)
	}
	stopped := make(chan struct{})
	go func() { run.stop(); close(stopped) }()
	_, err = stream.Receive()
	if connect.CodeOf(err) != connect.CodeUnavailable || !strings.Contains(err.Error(), "shutting down") {
		t.Fatalf("Watch at shutdown: %v, want the drain's Unavailable", err)
	}
	<-stopped
}
