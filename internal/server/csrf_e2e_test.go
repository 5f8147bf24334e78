package server_test

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berthhq/berth/internal/store"
)

// TestCSRF: a cross-origin, state-changing request authenticated by the
// session cookie alone is refused; the same request with a bearer token, or
// from the same origin, works.
func TestCSRF(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	c := srv.clients(protocols[0])
	reg := register(t, c, "browser@example.com")
	cookie := browserSession(t, srv, reg.GetUser().GetId())

	call := func(origin string, withCookie, withBearer bool) int {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+"/berth.v1.AuthService/GetCurrentUser", strings.NewReader(`{}`))
		req.Header.Set("Content-Type", "application/json")
		if origin != "" {
			req.Header.Set("Origin", origin)
			req.Header.Set("Sec-Fetch-Site", "cross-site")
		}
		if withCookie {
			req.AddCookie(&http.Cookie{Name: "berth_session", Value: cookie})
		}
		if withBearer {
			req.Header.Set("Authorization", "Bearer "+reg.GetTokens().GetAccessToken())
		}
		status, _, _ := do(t, req)
		return status
	}
	if got := call("", true, false); got != http.StatusOK {
		t.Errorf("same-origin cookie request = %d", got)
	}
	if got := call("https://evil.example.net", true, false); got != http.StatusForbidden {
		t.Errorf("cross-origin cookie request = %d, want 403", got)
	}
	if got := call("https://evil.example.net", true, true); got != http.StatusOK {
		t.Errorf("cross-origin bearer request = %d, want 200", got)
	}
	if got := call("https://evil.example.net", false, true); got != http.StatusOK {
		t.Errorf("cross-origin bearer-only request = %d, want 200", got)
	}
}

// browserSession makes a browser session for a user directly in the store
// (as an OIDC login would) and returns its cookie value.
func browserSession(t *testing.T, srv *testServer, userID string) string {
	t.Helper()
	st, err := store.Open(t.Context(), filepath.Join(srv.DataDir, "berth.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cookie := "berth_sess_test_" + userID
	now := time.Now().UTC()
	if err := st.CreateSession(t.Context(), &store.Session{
		ID: "00000000-0000-4000-8000-" + userID[len(userID)-12:], UserID: userID, CreatedAt: now, ExpiresAt: now.Add(time.Hour),
		Method: "oidc:test", CookieHash: sha256Sum(cookie),
	}, nil); err != nil {
		t.Fatal(err)
	}
	return cookie
}
