package server_test

import (
	"net/http"
	"strings"
	"testing"

	"connectrpc.com/connect/v2"

	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
)

// TestLoginSessionCookie: a password login that asks for a session cookie
// gets the HttpOnly berth_session cookie and no tokens; the cookie alone
// authenticates same-origin calls, a cross-origin call with it is refused,
// a wrong password sets nothing, and Logout ends the session and clears it.
func TestLoginSessionCookie(t *testing.T) {
	t.Parallel()
	srv := startServer(t, "--secure-cookies=false")
	c := srv.clients(protocols[0])
	reg := register(t, c, "cookie@example.com")

	login := func(password string) (*http.Response, string) {
		t.Helper()
		body := `{"email":"cookie@example.com","password":"` + password + `","session_cookie":true}`
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+"/berth.v1.AuthService/Login", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var raw strings.Builder
		buf := make([]byte, 4096)
		for {
			n, err := res.Body.Read(buf)
			raw.Write(buf[:n])
			if err != nil {
				break
			}
		}
		_ = res.Body.Close()
		return res, raw.String()
	}

	res, body := login("wrong password!")
	if res.StatusCode != http.StatusUnauthorized || len(res.Cookies()) != 0 {
		t.Fatalf("wrong password: %d, cookies %v; want 401 and no cookie", res.StatusCode, res.Cookies())
	}
	res, body = login("correct horse battery")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("login: %d %s", res.StatusCode, body)
	}
	var session *http.Cookie
	for _, ck := range res.Cookies() {
		if ck.Name == "berth_session" {
			session = ck
		}
	}
	if session == nil || session.Value == "" || !session.HttpOnly || session.Path != "/" || session.SameSite != http.SameSiteLaxMode || session.Secure {
		t.Fatalf("login set cookie %+v; want an HttpOnly, Lax, path=/ berth_session (not Secure: --secure-cookies=false)", session)
	}
	if strings.Contains(body, "access_token") || strings.Contains(body, "refresh_token") || !strings.Contains(body, reg.GetUser().GetId()) {
		t.Fatalf("login body %s: want the user and no tokens", body)
	}

	call := func(crossSite bool) int {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+"/berth.v1.WorkspaceService/ListWorkspaces", strings.NewReader(`{}`))
		req.Header.Set("Content-Type", "application/json")
		if crossSite {
			req.Header.Set("Origin", "https://evil.example.net")
			req.Header.Set("Sec-Fetch-Site", "cross-site")
		} else {
			req.Header.Set("Sec-Fetch-Site", "same-origin")
		}
		req.AddCookie(&http.Cookie{Name: "berth_session", Value: session.Value})
		status, _, _ := do(t, req)
		return status
	}
	if got := call(false); got != http.StatusOK {
		t.Fatalf("same-origin call with only the cookie = %d, want 200", got)
	}
	if got := call(true); got != http.StatusForbidden {
		t.Fatalf("cross-origin call with the cookie = %d, want 403", got)
	}

	// Logout with the cookie ends the session and tells the browser to drop it.
	ctx, info := connect.NewClientContext(t.Context())
	info.RequestHeader().Set("Cookie", "berth_session="+session.Value)
	if _, err := c.Auth.Logout(ctx, &berthv1.LogoutRequest{}); err != nil {
		t.Fatalf("Logout: %v", err)
	}
	if sc := info.ResponseHeader().Get("Set-Cookie"); !strings.Contains(sc, "berth_session=;") || !strings.Contains(sc, "Max-Age=0") {
		t.Fatalf("Logout Set-Cookie %q: want the cookie cleared", sc)
	}
	if got := call(false); got != http.StatusUnauthorized {
		t.Fatalf("call with the logged-out cookie = %d, want 401", got)
	}
}
