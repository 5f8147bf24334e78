package cli_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"

	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
)

// The example provider's second test user (storage.NewUserStore).
const (
	opUser     = "test-user2"
	opPassword = "verysecure"
	opEmail    = "test-user2@zitadel.ch"
)

// startOIDCServer starts zitadel's example OpenID provider on loopback and
// a berth serve configured with it as provider "example".
func startOIDCServer(t *testing.T) *server {
	t.Helper()
	// berth's redirect URI must be registered at the provider before berth
	// starts, so berth's port is chosen first: a free one, released for
	// berth serve to take.
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	berthAddr := free.Addr().String()
	if err := free.Close(); err != nil {
		t.Fatal(err)
	}
	berthURL := "http://" + berthAddr

	opLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	issuer := "http://" + opLn.Addr().String()
	clients := map[string]*storage.Client{"berth": storage.WebClient("berth", "berth-secret", berthURL+"/auth/oidc/example/callback")}
	// A nil logger keeps SetupServer from replacing the process's default.
	op := &http.Server{Handler: exampleop.SetupServer(issuer, storage.NewStorageWithClients(storage.NewUserStore(issuer), clients), nil, false), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = op.Serve(opLn) }()
	t.Cleanup(func() { _ = op.Close() }) // after berth has stopped (cleanups run last first)

	s := &server{t: t, dataDir: t.TempDir(), addr: berthAddr,
		flags: []string{"--public-url", berthURL, "--secure-cookies=false"},
		env: []string{
			"BERTH_OIDC_EXAMPLE_ISSUER=" + issuer,
			"BERTH_OIDC_EXAMPLE_CLIENT_ID=berth",
			"BERTH_OIDC_EXAMPLE_CLIENT_SECRET=berth-secret",
			"BERTH_OIDC_EXAMPLE_DISPLAY_NAME=Example",
		}}
	s.start()
	t.Cleanup(s.stop)
	return s
}

// process is a berth command running in the background, its standard
// error read line by line.
type process struct {
	cmd    *exec.Cmd
	lines  chan string
	stderr strings.Builder // everything read, once lines is closed
	done   chan struct{}
	err    error
}

func (u *user) start(args ...string) *process {
	u.t.Helper()
	berth, _ := binaries(u.t)
	ctx, cancel := context.WithTimeout(u.t.Context(), within(u.t))
	u.t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, berth, args...)
	cmd.Env = u.env
	cmd.Stdout = io.Discard
	stderr, err := cmd.StderrPipe()
	if err != nil {
		u.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		u.t.Fatal(err)
	}
	p := &process{cmd: cmd, lines: make(chan string, 100), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.stderr.WriteString(sc.Text() + "\n")
			select {
			case p.lines <- sc.Text():
			default: // nobody is waiting for lines any more
			}
		}
		close(p.lines)
		p.err = cmd.Wait()
	}()
	u.t.Cleanup(func() {
		_ = cmd.Process.Kill() // it may have exited already
		<-p.done
	})
	return p
}

// line waits for a line of standard error that match accepts.
func (p *process) line(t *testing.T, match func(string) bool) string {
	t.Helper()
	timeout := time.After(within(t))
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				<-p.done
				t.Fatalf("berth exited (%v) without the line wanted:\n%s", p.err, p.stderr.String())
			}
			if match(l) {
				return l
			}
		case <-timeout:
			t.Fatal("berth did not print the line wanted")
		}
	}
}

// wait waits for the process to end and returns its exit status and
// standard error.
func (p *process) wait(t *testing.T) (int, string) {
	t.Helper()
	for range p.lines { // drain, so the reader can finish
	}
	<-p.done
	var exit *exec.ExitError
	switch {
	case p.err == nil:
		return 0, p.stderr.String()
	case errors.As(p.err, &exit):
		return exit.ExitCode(), p.stderr.String()
	}
	t.Fatalf("berth: %v", p.err)
	return 0, ""
}

// testBrowser plays the user's browser: it follows every redirect by
// itself, keeping cookies, and submits the provider's login form.
type testBrowser struct {
	client *http.Client
}

func newTestBrowser(t *testing.T) *testBrowser {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	return &testBrowser{client: &http.Client{Jar: jar, Transport: tr, Timeout: within(t)}}
}

func (b *testBrowser) do(t *testing.T, method, u string, form url.Values) (*http.Response, string) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(t.Context(), method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := b.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(data)
}

var loginFormID = regexp.MustCompile(`name="id" value="([^"]+)"`)

// signIn opens loginURL, signs in at the provider's form and returns the
// page the last redirect lands on (the CLI's loopback page).
func (b *testBrowser) signIn(t *testing.T, loginURL string) (*http.Response, string) {
	t.Helper()
	resp, page := b.do(t, http.MethodGet, loginURL, nil)
	m := loginFormID.FindStringSubmatch(page)
	if resp.StatusCode != http.StatusOK || m == nil {
		t.Fatalf("the provider's login form: %d %q", resp.StatusCode, page)
	}
	action := resp.Request.URL.ResolveReference(&url.URL{Path: "/login/username"})
	return b.do(t, http.MethodPost, action.String(), url.Values{"id": {m[1]}, "username": {opUser}, "password": {opPassword}})
}

// TestLoginOIDC: `berth login --oidc example` prints the sign-in URL, the
// browser signs in at the provider and comes back to the CLI's loopback
// listener, and the CLI ends logged in, its credentials in a 0600 file.
func TestLoginOIDC(t *testing.T) {
	t.Parallel()
	srv := startOIDCServer(t)

	// No such provider: a usage error that names the ones there are.
	u := newUser(t, "BERTH_NO_BROWSER=1")
	if res := u.run("", "login", "--server", srv.url, "--oidc", "nope"); res.code != 2 || !strings.Contains(res.stderr, "it offers: example") {
		t.Errorf("login --oidc nope: %s", res)
	}

	p := u.start("login", "--server", srv.url, "--oidc", "example")
	loginURL := p.line(t, func(l string) bool { return strings.HasPrefix(l, srv.url+"/auth/oidc/example/login?") })
	parsed, err := url.Parse(loginURL)
	if err != nil {
		t.Fatal(err)
	}
	q := parsed.Query()
	redirect, err := url.Parse(q.Get("cli_redirect"))
	if err != nil || redirect.Scheme != "http" || redirect.Hostname() != "127.0.0.1" || redirect.Path != "/callback" || len(q.Get("cli_challenge")) != 43 || len(q.Get("cli_state")) < 43 {
		t.Fatalf("sign-in URL %s lacks a loopback cli_redirect, an S256 cli_challenge or a cli_state", loginURL)
	}

	// A request to the listener without the login's state is refused,
	// and the CLI keeps waiting for the real one.
	b := newTestBrowser(t)
	stray, body := b.do(t, http.MethodGet, redirect.String()+"?code=berth_lc_forged&state=not-the-state", nil)
	if stray.StatusCode != http.StatusBadRequest {
		t.Errorf("stray request to the CLI's listener = %d %q, want 400", stray.StatusCode, body)
	}

	resp, page := b.signIn(t, loginURL)
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Host != redirect.Host || !strings.Contains(page, "You may close this tab") {
		t.Fatalf("the sign-in ended at %s with %d %q, want the CLI's page", resp.Request.URL, resp.StatusCode, page)
	}
	if !strings.Contains(page, "signed in to berth as "+opEmail) {
		t.Errorf("the CLI's page %q does not say who signed in", page)
	}
	code, stderr := p.wait(t)
	if code != 0 || !strings.Contains(stderr, "Logged in to "+srv.url+" as "+opEmail) {
		t.Fatalf("berth login --oidc: exit %d\n%s", code, stderr)
	}
	if strings.Contains(stderr, "berth_lc_") {
		t.Errorf("berth login printed the login code:\n%s", stderr)
	}

	// Logged in: whoami works, with the tokens in a 0600 file.
	var me berthv1.GetCurrentUserResponse
	parse(t, u.ok("whoami", "-o", "json").stdout, &me)
	if me.GetUser().GetEmail() != opEmail {
		t.Errorf("whoami = %v, want %s", me.GetUser(), opEmail)
	}
	info, err := os.Stat(filepath.Join(u.config, "berth", "credentials.json"))
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("credentials file mode %v, want 0600", info.Mode().Perm())
	}

	// --sso picks the server's only provider; --no-browser only prints.
	other := newUser(t)
	p = other.start("login", "--server", srv.url, "--sso", "--no-browser")
	loginURL = p.line(t, func(l string) bool { return strings.HasPrefix(l, srv.url+"/auth/oidc/example/login?") })
	if resp, page := newTestBrowser(t).signIn(t, loginURL); resp.StatusCode != http.StatusOK || !strings.Contains(page, "You may close this tab") {
		t.Fatalf("the --sso sign-in ended with %d %q", resp.StatusCode, page)
	}
	if code, stderr := p.wait(t); code != 0 || !strings.Contains(stderr, "Logged in to "+srv.url+" as "+opEmail) {
		t.Fatalf("berth login --sso: exit %d\n%s", code, stderr)
	}
	parse(t, other.ok("whoami", "-o", "json").stdout, &me)
	if me.GetUser().GetEmail() != opEmail {
		t.Errorf("whoami after --sso = %v, want %s", me.GetUser(), opEmail)
	}
}
