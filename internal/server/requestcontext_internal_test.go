package server

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/berthhq/berth/internal/access"
	"github.com/berthhq/berth/internal/stream"
)

// TestRequestContext checks the context observe gives a request: it
// answers the request's own values (its requestInfo, access.Request and
// stream.Detacher) from its requestState, and everything else as its
// parent does — values and cancellation alike.
func TestRequestContext(t *testing.T) {
	t.Parallel()
	type parentKey struct{}
	parent, cancel := context.WithCancel(context.WithValue(t.Context(), parentKey{}, "parent's"))
	var got *http.Request
	h := observe(slog.New(slog.NewTextHandler(io.Discard, nil)), newHTTPMetrics(prometheus.NewRegistry()), nil,
		http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { got = r }))
	req := httptest.NewRequestWithContext(parent, http.MethodGet, "/x", nil)
	req.Header.Set("X-Request-Id", "abc")
	req.Header.Set("User-Agent", "test-agent")
	req.RemoteAddr = "192.0.2.1:1234"
	h.ServeHTTP(httptest.NewRecorder(), req)

	ctx := got.Context()
	if info := requestInfoFrom(ctx); info == nil || info.id != "abc" {
		t.Errorf("requestInfo: %+v", info)
	}
	if r := access.RequestFrom(ctx); r != (access.Request{ID: "abc", SourceAddress: "192.0.2.1", UserAgent: "test-agent"}) {
		t.Errorf("access.Request: %+v", r)
	}
	if _, ok := ctx.Value(stream.DetachKey{}).(stream.Detacher); !ok {
		t.Error("no stream.Detacher")
	}
	if v := ctx.Value(parentKey{}); v != "parent's" {
		t.Errorf("parent's value: %v", v)
	}
	child, stop := context.WithCancel(ctx)
	defer stop()
	cancel()
	<-child.Done() // a child of the request's context ends with its parent
	if ctx.Err() != context.Canceled {
		t.Errorf("Err: %v", ctx.Err())
	}
}
