package oidc_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"

	"github.com/berthhq/berth/internal/auth"
	"github.com/berthhq/berth/internal/config"
	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
	"github.com/berthhq/berth/internal/gen/berth/v1/berthv1connect"
	"github.com/berthhq/berth/internal/server"
	"github.com/berthhq/berth/internal/telemetry"
)

// listen returns a listener on a free loopback port, closed when the test
// ends (if nothing has taken it over).
func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// berth is the real berth server (server.New, real SQLite store) serving
// on 127.0.0.1 with its public URL set to its own address.
type berth struct {
	URL    string
	Config *config.Config
	logs   *syncBuffer
	// transport carries the API calls of the test.
	transport *http.Transport
}

// startBerth starts berth on ln with the OIDC variables in environ and
// extra flags, and stops it when the test ends.
func startBerth(t *testing.T, ln net.Listener, environ []string, flags ...string) *berth {
	t.Helper()
	dir := t.TempDir()
	publicURL := "http://" + ln.Addr().String()
	cfg, err := config.LoadEnv(append([]string{
		"--data-dir", filepath.Join(dir, "data"),
		"--workspace-root", filepath.Join(dir, "workspaces"),
		"--addr", "127.0.0.1:0",
		"--admin-addr", "off",
		"--public-url", publicURL,
		"--secure-cookies=false", // plain http on loopback
		// Graceful shutdown waits for a connection accepted but not yet
		// used for up to 5s (net/http); leave room for a stray one.
		"--shutdown-timeout", "15s",
	}, flags...), environ, io.Discard)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	logs := new(syncBuffer)
	logger, err := telemetry.NewLogger(logs, "json", slog.LevelInfo)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(t.Context(), cfg, logger, telemetry.NewRegistry(), time.Now)
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln, nil) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if err := srv.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	// Registered after the server's cleanup, so it runs first: idle
	// connections are closed before the server shuts down.
	transport := newTransport(t)
	return &berth{URL: publicURL, Config: cfg, logs: logs, transport: transport}
}

// newTransport returns a transport of the test's own, whose idle
// connections are closed when the test ends.
func newTransport(t *testing.T) *http.Transport {
	t.Helper()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

// providerEnv returns the variables configuring provider name.
func providerEnv(name, issuer, clientID, secret string) []string {
	up := strings.ToUpper(name)
	return []string{
		"BERTH_OIDC_" + up + "_ISSUER=" + issuer,
		"BERTH_OIDC_" + up + "_CLIENT_ID=" + clientID,
		"BERTH_OIDC_" + up + "_CLIENT_SECRET=" + secret,
		"BERTH_OIDC_" + up + "_DISPLAY_NAME=Example " + name,
	}
}

// providerConfig returns berth's configuration of provider name.
func (b *berth) providerConfig(t *testing.T, name string) config.OIDCProvider {
	t.Helper()
	for _, p := range b.Config.OIDC {
		if p.Name == name {
			return p
		}
	}
	t.Fatalf("berth has no provider %q", name)
	return config.OIDCProvider{}
}

func (b *berth) loginURL(provider string) string {
	return b.URL + "/auth/oidc/" + provider + "/login"
}

// authClient returns an AuthService client whose calls carry only the
// given session cookie (no Authorization header).
func (b *berth) authClient() berthv1connect.AuthServiceClient {
	return berthv1connect.NewAuthServiceClient(connect.NewClient(connecthttp.NewTransport(&http.Client{Transport: b.transport, Timeout: 30 * time.Second}, b.URL)))
}

// currentUser calls GetCurrentUser authenticated by the session cookie
// alone.
func (b *berth) currentUser(t *testing.T, session *http.Cookie) (*berthv1.User, error) {
	t.Helper()
	ctx, info := connect.NewClientContext(t.Context())
	info.RequestHeader().Set("Cookie", session.Name+"="+session.Value)
	res, err := b.authClient().GetCurrentUser(ctx, &berthv1.GetCurrentUserRequest{})
	if err != nil {
		return nil, err
	}
	return res.GetUser(), nil
}

// wantLogged fails the test unless berth logged a refused sign-in whose
// reason contains reason.
func (b *berth) wantLogged(t *testing.T, reason string) {
	t.Helper()
	for _, line := range strings.Split(b.logs.String(), "\n") {
		if strings.Contains(line, `"oidc: sign-in refused"`) && strings.Contains(line, reason) {
			return
		}
	}
	t.Errorf("berth logged no refused sign-in with %q:\n%s", reason, b.logs.String())
}

// syncBuffer is a bytes.Buffer safe for concurrent use, for logs.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// browser is an HTTP client with a cookie jar that follows no redirect by
// itself, so each step of a sign-in can be watched and tampered with.
type browser struct {
	client *http.Client
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &browser{client: &http.Client{
		Jar:       jar,
		Transport: newTransport(t),
		Timeout:   30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}}
}

// page is one response, read in full.
type page struct {
	URL      *url.URL
	Status   int
	Location *url.URL
	Header   http.Header
	Cookies  []*http.Cookie // as set by the response
	Body     string
}

// cookie returns the cookie named name that the response set, or nil.
func (p *page) cookie(name string) *http.Cookie {
	for _, c := range p.Cookies {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// session returns the session cookie the response set, or nil.
func (p *page) session() *http.Cookie { return p.cookie(auth.SessionCookie) }

func (b *browser) do(t *testing.T, req *http.Request) *page {
	t.Helper()
	resp, err := b.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	p := &page{URL: req.URL, Status: resp.StatusCode, Header: resp.Header, Cookies: resp.Cookies(), Body: string(body)}
	if loc, err := resp.Location(); err == nil {
		p.Location = loc
	}
	return p
}

func (b *browser) get(t *testing.T, u string) *page {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	return b.do(t, req)
}

func (b *browser) postForm(t *testing.T, u string, form url.Values) *page {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(t, req)
}

var loginFormID = regexp.MustCompile(`name="id" value="([^"]+)"`)

// toCallback signs in at the provider, starting from berth's login URL
// (with the query given), and returns the callback URL the provider sends
// the browser back to, without visiting it.
func (b *browser) toCallback(t *testing.T, bt *berth, loginURL, username string) *url.URL {
	t.Helper()
	start := b.get(t, loginURL)
	if start.Status != http.StatusFound || start.Location == nil {
		t.Fatalf("GET %s = %d %q, want a redirect to the provider", loginURL, start.Status, start.Body)
	}
	// Follow the provider's redirects to its login form.
	p := start
	for i := 0; p.Location != nil; i++ {
		if i == 10 {
			t.Fatal("too many redirects on the way to the provider's login form")
		}
		p = b.get(t, p.URL.ResolveReference(p.Location).String())
	}
	m := loginFormID.FindStringSubmatch(p.Body)
	if p.Status != http.StatusOK || m == nil {
		t.Fatalf("provider's login page: %d %q", p.Status, p.Body)
	}
	action := p.URL.ResolveReference(&url.URL{Path: "/login/username"})
	p = b.postForm(t, action.String(), url.Values{"id": {m[1]}, "username": {username}, "password": {userPassword}})
	// Follow the provider's redirects until one points back at berth.
	berthHost := strings.TrimPrefix(bt.URL, "http://")
	for i := 0; ; i++ {
		if p.Location == nil || i == 10 {
			t.Fatalf("provider did not send the browser back to berth: %d %q", p.Status, p.Body)
		}
		next := p.URL.ResolveReference(p.Location)
		if next.Host == berthHost {
			return next
		}
		p = b.get(t, next.String())
	}
}

// signIn runs a whole sign-in and returns berth's answer to the callback.
func (b *browser) signIn(t *testing.T, bt *berth, loginURL, username string) *page {
	t.Helper()
	return b.get(t, b.toCallback(t, bt, loginURL, username).String())
}

// flowCookie returns the flow cookie the browser holds for the callback
// URL u.
func (b *browser) flowCookie(t *testing.T, u *url.URL, name string) *http.Cookie {
	t.Helper()
	for _, c := range b.client.Jar.Cookies(u) {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("the browser holds no %s cookie for %s", name, u)
	return nil
}

// setFlowCookie replaces the flow cookie the browser sends to u.
func (b *browser) setFlowCookie(u *url.URL, name, value string) {
	b.client.Jar.SetCookies(u, []*http.Cookie{{Name: name, Value: value, Path: u.Path[:strings.LastIndex(u.Path, "/")+1]}})
}
