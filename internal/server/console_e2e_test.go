package server_test

import (
	"io"
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
		raw, err := io.ReadAll(res.Body)
		_ = res.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		return res, string(raw)
	}

	res, body := login("wrong password!")
	if res.StatusCode != http.StatusUnauthorized || len(res.Cookies()) != 0 || strings.Contains(body, "berth_sess") {
		t.Fatalf("wrong password: %d, cookies %v, body %s; want 401 and no session", res.StatusCode, res.Cookies(), body)
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

// TestConsoleServing: browsers get the console at / and at every console
// path (SPA fallback), with hashed assets cached for a year and index.html
// revalidated; API clients keep the JSON index and JSON 404s; API paths are
// never shadowed; the CSP stays strict.
func TestConsoleServing(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	get := func(path, accept string, hdr ...string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+path, nil)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		// The default transport asks for gzip and decodes it; these
		// requests ask for what they want themselves.
		tr := &http.Transport{DisableCompression: true}
		t.Cleanup(tr.CloseIdleConnections)
		res, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatal(err)
		}
		return res, string(body)
	}
	const browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"

	res, page := get("/", browser)
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") || !strings.Contains(page, `<div id="app">`) ||
		res.Header.Get("Cache-Control") != "no-cache" || !strings.Contains(res.Header.Get("Vary"), "Accept") {
		t.Fatalf("browser GET / = %d %q %q %q", res.StatusCode, res.Header.Get("Content-Type"), res.Header.Get("Cache-Control"), page)
	}
	csp := res.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "default-src 'self'") || strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
		t.Fatalf("CSP %q: want default-src 'self' and nothing unsafe", csp)
	}
	if strings.Contains(page, "<script>") || strings.Contains(page, "style=") {
		t.Fatalf("index.html has inline script or style: %s", page)
	}
	for _, path := range []string{"/workspaces", "/tasks/00000000-0000-4000-8000-000000000000", "/admin"} {
		if res, body := get(path, browser); res.StatusCode != 200 || body != page {
			t.Errorf("browser GET %s = %d; want index.html (SPA fallback)", path, res.StatusCode)
		}
	}
	for _, accept := range []string{"", "*/*", "application/json"} {
		res, body := get("/", accept)
		if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") || !strings.Contains(body, `"services"`) {
			t.Errorf("GET / with Accept %q = %d %q; want the JSON index", accept, res.StatusCode, res.Header.Get("Content-Type"))
		}
		if res, _ := get("/workspaces", accept); res.StatusCode != 404 || !strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
			t.Errorf("GET /workspaces with Accept %q = %d; want the JSON 404", accept, res.StatusCode)
		}
	}
	for _, path := range []string{"/api/v1/nothing", "/auth/oidc/none/login", "/berth.v1.Nope/Nothing", "/openapi.txt", "/assets/missing.js"} {
		if res, _ := get(path, browser); res.StatusCode != 404 || !strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
			t.Errorf("browser GET %s = %d %q; want the API's JSON 404, not the console", path, res.StatusCode, res.Header.Get("Content-Type"))
		}
	}
	if res, body := get("/health", browser); res.StatusCode != 200 || strings.Contains(body, "<html") {
		t.Errorf("browser GET /health = %d %q; the console must not shadow it", res.StatusCode, body)
	}

	// The assets index.html names: immutable for a year, gzip when asked.
	i := strings.Index(page, "/assets/index-")
	if i < 0 {
		t.Fatalf("index.html names no hashed script: %s", page)
	}
	asset := page[i : i+strings.IndexByte(page[i:], '"')]
	res, plain := get(asset, "*/*")
	if res.StatusCode != 200 || res.Header.Get("Cache-Control") != "public, max-age=31536000, immutable" || !strings.Contains(res.Header.Get("Content-Type"), "javascript") || res.Header.Get("ETag") == "" {
		t.Fatalf("GET %s = %d %q %q", asset, res.StatusCode, res.Header.Get("Cache-Control"), res.Header.Get("Content-Type"))
	}
	res, gz := get(asset, "*/*", "Accept-Encoding", "gzip")
	if res.Header.Get("Content-Encoding") != "gzip" || len(gz) >= len(plain) {
		t.Fatalf("GET %s with gzip: Content-Encoding %q, %d bytes of %d", asset, res.Header.Get("Content-Encoding"), len(gz), len(plain))
	}
	if res, _ := get(asset, "*/*", "If-None-Match", res.Header.Get("ETag"), "Accept-Encoding", "gzip"); res.StatusCode != http.StatusNotModified {
		t.Fatalf("revalidation with the ETag = %d, want 304", res.StatusCode)
	}
}
