package cli

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
)

// oidcLoginTimeout bounds how long `berth login --oidc` waits for the
// browser to come back: long enough to type a password and a second
// factor, short enough that a forgotten login does not listen for ever.
const oidcLoginTimeout = 5 * time.Minute

// oidcLogin is `berth login --oidc NAME` (or --sso): a sign-in through an
// OpenID provider in the browser, ending at a listener of this process on
// the loopback interface (RFC 8252), as gh and coder do.
//
// The CLI makes a PKCE verifier and a state, listens on 127.0.0.1 on a
// port the system picks, and opens the provider's login URL on berth with
// cli_redirect (that listener), cli_challenge (the verifier's S256
// challenge) and cli_state. berth sends the browser back to the listener
// with a one-time code and the state; the CLI checks the state and
// exchanges the code, with the verifier, for tokens. A program that
// catches the code on its way (another local user's listener, a browser
// extension) cannot use it without the verifier, which never leaves this
// process.
func (a *app) oidcLogin(ctx context.Context, c *clients, name string, pick bool, openBrowser bool) (*berthv1.User, *berthv1.Tokens, error) {
	providers, err := c.auth.ListAuthProviders(ctx, &berthv1.ListAuthProvidersRequest{})
	if err != nil {
		return nil, nil, err
	}
	var names []string
	byName := map[string]*berthv1.AuthProvider{}
	for _, p := range providers.GetProviders() {
		if p.GetLoginUrl() != "" {
			names = append(names, p.GetName())
			byName[p.GetName()] = p
		}
	}
	slices.Sort(names)
	if len(names) == 0 {
		return nil, nil, errors.New("this server offers no OIDC sign-in; log in with --email and a password")
	}
	if name == "" && pick {
		if len(names) > 1 {
			return nil, nil, usageError{fmt.Errorf("this server offers several OIDC providers: name one with --oidc (%s)", strings.Join(names, ", "))}
		}
		name = names[0]
	}
	provider := byName[name]
	if provider == nil {
		return nil, nil, usageError{fmt.Errorf("this server has no OIDC provider %q; it offers: %s", name, strings.Join(names, ", "))}
	}
	loginURL, err := url.Parse(provider.GetLoginUrl())
	if err != nil || loginURL.Scheme != "http" && loginURL.Scheme != "https" {
		return nil, nil, fmt.Errorf("the server lists %q as the login URL of %s, which is not an http(s) URL", provider.GetLoginUrl(), name)
	}

	verifier, state := randomString(), randomString()
	sum := sha256.Sum256([]byte(verifier))
	challenge := base64.RawURLEncoding.EncodeToString(sum[:])

	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, fmt.Errorf("listening on the loopback interface for the browser's return: %w", err)
	}
	redirect := "http://" + ln.Addr().String() + "/callback"
	q := loginURL.Query()
	q.Set("cli_redirect", redirect)
	q.Set("cli_challenge", challenge)
	q.Set("cli_state", state)
	loginURL.RawQuery = q.Encode()

	ctx, cancel := context.WithTimeout(ctx, oidcLoginTimeout)
	defer cancel()
	back := &loopback{state: state, codes: make(chan string, 1), results: make(chan string, 1)}
	srv := &http.Server{Handler: back, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer func() {
		// Let the page that tells the user the outcome finish, then stop.
		sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer scancel()
		if srv.Shutdown(sctx) != nil {
			_ = srv.Close() // the page was cut short; nothing else to do
		}
		<-served
	}()

	if openBrowser && a.openURL(loginURL.String()) == nil {
		fmt.Fprintf(a.io.Err, "Opening the sign-in with %s in your browser. If it does not open, visit this URL in a browser on this machine:\n%s\n", provider.GetDisplayName(), loginURL)
	} else {
		fmt.Fprintf(a.io.Err, "To sign in with %s, visit this URL in a browser on this machine:\n%s\n", provider.GetDisplayName(), loginURL)
	}
	fmt.Fprintln(a.io.Err, "Waiting for the browser…")

	var code string
	select {
	case code = <-back.codes:
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, nil, fmt.Errorf("the browser did not come back within %s; run berth login again", oidcLoginTimeout)
		}
		return nil, nil, ctx.Err()
	}
	res, err := c.auth.ExchangeLoginCode(ctx, &berthv1.ExchangeLoginCodeRequest{Code: code, CodeVerifier: verifier})
	if err != nil {
		back.results <- "Signing in to berth failed: " + describe(err) + "\nRun berth login again.\n"
		return nil, nil, err
	}
	back.results <- "You are signed in to berth as " + accountName(res.GetUser()) + ".\nYou may close this tab and return to the terminal.\n"
	return res.GetUser(), res.GetTokens(), nil
}

// loopback is the CLI's listener for the browser's return: it takes the
// first request to /callback whose state is this login's, hands its code
// over and answers with the outcome; anything else is refused.
type loopback struct {
	state   string
	codes   chan string // the one accepted code
	results chan string // the page to show for it

	mu    sync.Mutex
	taken bool // a code was accepted: no other one is
}

func (l *loopback) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	if r.Method != http.MethodGet || r.URL.Path != "/callback" {
		http.Error(w, "Not found.", http.StatusNotFound)
		return
	}
	q := r.URL.Query()
	code := q.Get("code")
	if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(l.state)) != 1 || code == "" {
		http.Error(w, "This page does not belong to the berth login waiting in your terminal.", http.StatusBadRequest)
		return
	}
	l.mu.Lock()
	taken := l.taken
	l.taken = true
	l.mu.Unlock()
	if taken {
		http.Error(w, "This sign-in was already received.", http.StatusConflict)
		return
	}
	l.codes <- code // buffered for the one code
	select {
	case msg := <-l.results:
		_, _ = w.Write([]byte(msg)) // #nosec G705 -- text/plain with nosniff, and msg is the CLI's own wording
	case <-r.Context().Done():
	}
}

// openURL asks the desktop to open u in the browser; it returns once the
// opener has started (nil) or could not be (the URL is printed either way).
func (a *app) openURL(u string) error {
	var cmd *exec.Cmd
	switch runtime.GOOS {
	case "darwin":
		cmd = exec.Command("open", u) // #nosec G204 -- a fixed program; u is the login URL of the chosen server
	case "windows":
		cmd = exec.Command("rundll32", "url.dll,FileProtocolHandler", u) // #nosec G204 -- as above
	default:
		if a.env["DISPLAY"] == "" && a.env["WAYLAND_DISPLAY"] == "" {
			return errors.New("no display")
		}
		cmd = exec.Command("xdg-open", u) // #nosec G204 -- as above
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	go func() { _ = cmd.Wait() }() // reap it; its status says nothing about the sign-in
	return nil
}

// randomString is 32 random bytes, base64url-encoded: 43 characters, a
// PKCE verifier as RFC 7636 recommends, and as good a state.
func randomString() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return base64.RawURLEncoding.EncodeToString(b)
}

// accountName is how a user is named to them: the email, else the name,
// else the id (an OIDC account may have neither email nor name).
func accountName(u *berthv1.User) string {
	for _, s := range []string{u.GetEmail(), u.GetName()} {
		if s != "" {
			return s
		}
	}
	return u.GetId()
}
