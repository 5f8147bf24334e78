package server_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"
	"connectrpc.com/connect/v2/connectproto"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berthhq/berth/internal/config"
	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
	"github.com/berthhq/berth/internal/gen/berth/v1/berthv1connect"
	"github.com/berthhq/berth/internal/server"
	"github.com/berthhq/berth/internal/telemetry"
)

// testServer is a real berth serving on 127.0.0.1:0 with its own data
// directory and workspace root.
type testServer struct {
	DataDir  string
	URL      string
	AdminURL string
	Root     string // the workspace root
	Server   *server.Server
}

// startServer starts berth with extra flags and stops it when the test ends.
func startServer(t testing.TB, flags ...string) *testServer {
	t.Helper()
	return startServerUntil(t, flags...).srv
}

// runningServer is a test server that can be stopped before the test ends.
type runningServer struct {
	srv  *testServer
	stop func() // idempotent; also run when the test ends
}

// startServerUntil starts berth with extra flags; stop shuts it down.
func startServerUntil(t testing.TB, flags ...string) *runningServer {
	t.Helper()
	return startServerClock(t, time.Now, flags...)
}

// startServerClock starts berth with extra flags on the clock now.
func startServerClock(t testing.TB, now func() time.Time, flags ...string) *runningServer {
	t.Helper()
	dir := t.TempDir()
	root := filepath.Join(dir, "workspaces")
	args := append([]string{
		"--data-dir", filepath.Join(dir, "data"),
		"--workspace-root", root,
		"--addr", "127.0.0.1:0",
		"--admin-addr", "127.0.0.1:0",
		// Above the 5s net/http waits for a connection opened but never used.
		"--shutdown-timeout", "15s",
		// The process runtime unless a test asks for Docker: most tests are
		// about the API, not containers (docker_e2e_test.go covers those).
		"--runtime", "process",
		// No rate limits unless a test asks for them: tests send many
		// requests from one address (rate_e2e_test.go covers the limits).
		"--rate-anonymous", "0", "--rate-auth-failures", "0", "--rate-principal", "0", "--rate-task-create", "0",
		// Nor per-user quotas: tests run many tasks and streams as one user
		// (quota_e2e_test.go covers the quotas).
		"--max-streams-per-user", "0", "--max-running-per-user", "0", "--max-queued-per-user", "0", "--max-workspaces-per-user", "0",
	}, flags...)
	cfg, err := config.LoadWithOutput(args, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	logger, err := telemetry.NewLogger(io.Discard, "json", slog.LevelInfo)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(t.Context(), cfg, logger, telemetry.NewRegistry(), now)
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	adminLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln, adminLn) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
			if err := srv.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return &runningServer{stop: stop, srv: &testServer{
		DataDir:  cfg.DataDir,
		URL:      "http://" + ln.Addr().String(),
		AdminURL: "http://" + adminLn.Addr().String(),
		Root:     root,
		Server:   srv,
	}}
}

// protocol is one of the three wire protocols berth serves.
type protocol struct {
	name string
	opts []connecthttp.Option
	h2c  bool
}

var protocols = []protocol{
	{name: "connect", opts: nil},
	{name: "connect-json", opts: []connecthttp.Option{connecthttp.WithProtoJSON()}},
	{name: "connect-gzip", opts: []connecthttp.Option{connecthttp.WithSendGzip()}},
	{name: "grpc", opts: []connecthttp.Option{connecthttp.WithGRPC()}, h2c: true},
	{name: "grpcweb", opts: []connecthttp.Option{connecthttp.WithGRPCWeb()}},
}

// clients are the generated clients of every service, over one protocol.
type clients struct {
	Auth      berthv1connect.AuthServiceClient
	Workspace berthv1connect.WorkspaceServiceClient
	Task      berthv1connect.TaskServiceClient
	Stats     berthv1connect.StatsServiceClient
	Admin     berthv1connect.AdminServiceClient
}

func httpClient(h2c bool) *http.Client {
	if !h2c {
		return &http.Client{Timeout: 30 * time.Second}
	}
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Protocols: p}}
}

func (s *testServer) clients(p protocol) clients {
	c := connect.NewClient(connecthttp.NewTransport(httpClient(p.h2c), s.URL, p.opts...))
	return clients{
		Auth:      berthv1connect.NewAuthServiceClient(c),
		Workspace: berthv1connect.NewWorkspaceServiceClient(c),
		Task:      berthv1connect.NewTaskServiceClient(c),
		Stats:     berthv1connect.NewStatsServiceClient(c),
		Admin:     berthv1connect.NewAdminServiceClient(c),
	}
}

// as returns a context whose calls carry the access token.
func as(ctx context.Context, token string) context.Context {
	ctx, info := connect.NewClientContext(ctx)
	info.RequestHeader().Set("Authorization", "Bearer "+token)
	return ctx
}

// register signs up an account and returns its access token.
func register(t testing.TB, c clients, email string) *berthv1.RegisterResponse {
	t.Helper()
	res, err := c.Auth.Register(t.Context(), &berthv1.RegisterRequest{Email: email, Password: "correct horse battery"})
	if err != nil {
		t.Fatalf("Register %s: %v", email, err)
	}
	return res
}

// wantCode fails the test unless err carries code and an ErrorInfo with
// the matching reason, and returns the error's details.
func wantCode(t testing.TB, err error, code connect.Code, reason string) []proto.Message {
	t.Helper()
	if err == nil {
		t.Fatalf("want %v, got no error", code)
	}
	if got := connect.CodeOf(err); got != code {
		t.Fatalf("want code %v, got %v (%v)", code, got, err)
	}
	ce, ok := errors.AsType[*connect.Error](err)
	if !ok {
		t.Fatalf("not a connect error: %v", err)
	}
	var details []proto.Message
	found := false
	for _, d := range ce.Details() {
		msg, err := connectproto.UnmarshalErrorDetail(d)
		if err != nil {
			t.Fatalf("detail %s: %v", d.Type, err)
		}
		details = append(details, msg)
		if info, ok := msg.(*errdetails.ErrorInfo); ok {
			found = true
			if info.GetReason() != reason {
				t.Errorf("ErrorInfo.reason = %q, want %q", info.GetReason(), reason)
			}
			if info.GetDomain() != "berth" {
				t.Errorf("ErrorInfo.domain = %q, want berth", info.GetDomain())
			}
			if info.GetMetadata()["request_id"] == "" {
				t.Errorf("ErrorInfo has no request_id")
			}
		}
	}
	if !found {
		t.Errorf("error %v carries no ErrorInfo", err)
	}
	return details
}

// fieldViolations returns the fields named by BadRequest details.
func fieldViolations(details []proto.Message) []string {
	var fields []string
	for _, d := range details {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				fields = append(fields, v.GetField())
			}
		}
	}
	return fields
}

func sha256Sum(s string) []byte {
	sum := sha256.Sum256([]byte(s))
	return sum[:]
}

func timestamp(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t) }
