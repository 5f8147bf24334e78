package ws_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/berthhq/berth/internal/access"
	"github.com/berthhq/berth/internal/store"
	"github.com/berthhq/berth/internal/stream"
	"github.com/berthhq/berth/internal/ws"
)

// TestPanicEndsOneConnection: a panic in one of a connection's goroutines
// — here a command reaching a handler built without a task service, a
// nil-pointer bug — closes that connection with 1011, is counted in
// berth_panics_total{where="websocket"} and logged, and the server goes
// on serving other connections.
func TestPanicEndsOneConnection(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	var logs lockedBuffer
	h := ws.New(ws.Config{
		Auth: stream.Auth{Authenticate: func(*http.Request) (access.Principal, error) {
			return access.Principal{UserID: uuid.NewString(), Role: store.RoleAdmin}, nil
		}},
		Metrics: stream.NewMetrics(reg),
		Logger:  slog.New(slog.NewJSONHandler(&logs, nil)),
	})
	mux := http.NewServeMux()
	h.Mount(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	t.Cleanup(h.Shutdown)
	url := "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"
	// The dials and reads below wait for the server: up to most of what
	// is left of the test's deadline, so a loaded machine slows them only.
	wait := 5 * time.Minute
	if d, ok := t.Deadline(); ok {
		wait = time.Until(d) * 3 / 4
	}
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	dial := func() *websocket.Conn {
		t.Helper()
		conn, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{ws.Subprotocol}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.CloseNow() })
		return conn
	}

	bad := dial()
	frame := `{"type":"command","action":"task.cancel","id":"1","data":{"id":"` + uuid.NewString() + `"}}`
	if err := bad.Write(ctx, websocket.MessageText, []byte(frame)); err != nil {
		t.Fatal(err)
	}
	for {
		_, _, err := bad.Read(ctx)
		if err == nil {
			continue
		}
		if got := websocket.CloseStatus(err); got != websocket.StatusInternalError {
			t.Fatalf("the connection ended with %v (%v), want 1011", got, err)
		}
		break
	}

	good := dial()
	if err := good.Write(ctx, websocket.MessageText, []byte(`{"type":"ping","id":"p"}`)); err != nil {
		t.Fatal(err)
	}
	_, b, err := good.Read(ctx)
	if err != nil || !strings.Contains(string(b), `"pong"`) {
		t.Fatalf("another connection after the panic: %s, %v", b, err)
	}

	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		if f.GetName() == "berth_panics_total" {
			for _, m := range f.GetMetric() {
				got[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
			}
		}
	}
	if got["websocket"] != 1 || got["sse"] != 0 {
		t.Errorf("berth_panics_total = %v, want websocket 1", got)
	}
	if out := logs.String(); !strings.Contains(out, `"level":"ERROR"`) || !strings.Contains(out, "nil pointer") {
		t.Errorf("the panic was not logged:\n%s", out)
	}
}

// lockedBuffer is a buffer several goroutines log into.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
