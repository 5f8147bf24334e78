package ws_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/berthhq/berth/internal/access"
	"github.com/berthhq/berth/internal/store"
	"github.com/berthhq/berth/internal/stream"
	"github.com/berthhq/berth/internal/ws"
)

// TestWaitForSessions: a session outlives its handler's return, so the
// server waits for the sessions with Wait (http.Server.Shutdown does not
// wait for hijacked connections): Wait holds while a session is open, and
// returns once Shutdown has ended them all, having given back their
// slots.
func TestWaitForSessions(t *testing.T) {
	t.Parallel()
	released := make(chan struct{}, 1)
	h := ws.New(ws.Config{
		Auth: stream.Auth{Authenticate: func(*http.Request) (access.Principal, error) {
			return access.Principal{UserID: "u", Role: store.RoleMember}, nil
		}},
		Admit: func(context.Context, access.Principal, http.Header) (func(), error) {
			return func() { released <- struct{}{} }, nil
		},
	})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c, _, err := websocket.Dial(t.Context(), "ws"+srv.URL[len("http"):]+"/ws", &websocket.DialOptions{Subprotocols: []string{ws.Subprotocol}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	// The handler has returned (the session runs past it); its session
	// is still open.
	short, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	if err := h.Wait(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait with a session open = %v, want the deadline", err)
	}
	// The client reads, as clients do, so that the close handshake ends.
	read := make(chan error, 1)
	go func() {
		_, _, err := c.Read(t.Context())
		read <- err
	}()
	h.Shutdown()
	if err := h.Wait(t.Context()); err != nil {
		t.Fatalf("Wait after Shutdown = %v", err)
	}
	select {
	case <-released:
	default:
		t.Fatal("Wait returned before the session gave back its slot")
	}
	if err := <-read; websocket.CloseStatus(err) != websocket.StatusServiceRestart {
		t.Errorf("the client read %v, want close 1012", err)
	}
}
