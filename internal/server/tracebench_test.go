package server_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
)

// BenchmarkUnaryInProcess serves an authenticated GetWorkspace (Connect
// JSON, workspace read cache off) through the server's handler in process,
// without a network client, so its allocs/op are the server's own: with
// tracing off (no OTEL_EXPORTER_OTLP_ENDPOINT) it must cost what it cost
// before tracing existed, and "traced" shows what tracing adds when on
// (every span exported, in batches, to a loopback receiver that discards
// them). "cached" is the untraced call with the workspace read cache on
// (in process), the path the unary work is measured on.
func BenchmarkUnaryInProcess(b *testing.B) {
	run := func(b *testing.B, flags ...string) {
		srv := startServer(b, flags...)
		c := srv.clients(protocols[0])
		token := register(b, c, "bench@example.com").GetTokens().GetAccessToken()
		res, err := c.Workspace.CreateWorkspace(as(b.Context(), token), &berthv1.CreateWorkspaceRequest{Name: "bench", Path: srv.mkdir(b, "bench")})
		if err != nil {
			b.Fatal(err)
		}
		newReq := getWorkspaceRequest(b, "/berth.v1.WorkspaceService/GetWorkspace", token, res.GetWorkspace().GetId())
		h := srv.Server.Handler()
		b.ReportAllocs()
		cpu := processCPU(b)
		for b.Loop() {
			req := newReq()
			req.RemoteAddr = "127.0.0.1:1234"
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != http.StatusOK {
				b.Fatalf("%d %s", w.Code, w.Body)
			}
		}
		reportCPU(b, cpu)
	}
	b.Run("untraced", func(b *testing.B) { run(b, "--cache-ttl", "0") })
	b.Run("cached", func(b *testing.B) { run(b) })
	b.Run("traced", func(b *testing.B) {
		sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/x-protobuf")
		}))
		b.Cleanup(sink.Close)
		b.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", sink.URL)
		run(b, "--cache-ttl", "0")
	})
}
