package oidc_test

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"

	cfg "github.com/berthhq/berth/internal/config"
	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
	"github.com/berthhq/berth/internal/gen/berth/v1/berthv1connect"
	"github.com/berthhq/berth/internal/oidc"
)

// cliLogin is what `berth login --oidc` makes before opening the browser:
// a PKCE verifier, its S256 challenge, a state and a loopback redirect.
type cliLogin struct {
	verifier, challenge, state, redirect string
}

func newCLILogin(redirect string) cliLogin {
	verifier := rand.Text() + rand.Text() // 52 base32 characters
	sum := sha256.Sum256([]byte(verifier))
	return cliLogin{
		verifier:  verifier,
		challenge: base64.RawURLEncoding.EncodeToString(sum[:]),
		state:     strings.ToLower(rand.Text()),
		redirect:  redirect,
	}
}

// url is berth's login URL for provider with the CLI's parameters.
func (c cliLogin) url(b *berth, provider string) string {
	return b.loginURL(provider) + "?" + url.Values{
		"cli_redirect":  {c.redirect},
		"cli_challenge": {c.challenge},
		"cli_state":     {c.state},
	}.Encode()
}

// signInCLI runs a command-line sign-in of username through a browser and
// returns the code berth sent to the loopback redirect.
func (f *fixture) signInCLI(t *testing.T, c cliLogin, username string) string {
	t.Helper()
	b := newBrowser(t)
	res := b.signIn(t, f.berth, c.url(f.berth, "example"), username)
	if res.Status != http.StatusFound || res.Location == nil {
		t.Fatalf("callback = %d %q, want a redirect to the CLI\nlogs:\n%s", res.Status, res.Body, f.berth.logs.String())
	}
	if s := res.session(); s != nil {
		t.Errorf("a command-line sign-in set the browser session cookie %v", s)
	}
	to := res.Location
	q := to.Query()
	if got := to.Scheme + "://" + to.Host + to.Path; got != c.redirect {
		t.Fatalf("callback redirected to %s, want %s", to, c.redirect)
	}
	if q.Get("state") != c.state || !strings.HasPrefix(q.Get("code"), "berth_lc_") || len(q) != 2 {
		t.Fatalf("redirect query %v: want the CLI's state and a code", q)
	}
	if strings.Contains(f.berth.logs.String(), q.Get("code")) {
		t.Error("berth logged the login code")
	}
	return q.Get("code")
}

func (f *fixture) exchange(t *testing.T, code, verifier string) (*berthv1.ExchangeLoginCodeResponse, error) {
	t.Helper()
	return f.berth.authClient().ExchangeLoginCode(t.Context(), &berthv1.ExchangeLoginCodeRequest{Code: code, CodeVerifier: verifier})
}

// bearerClient returns an AuthService client calling with token.
func (b *berth) bearerClient(token string) berthv1connect.AuthServiceClient {
	return berthv1connect.NewAuthServiceClient(connect.NewClient(connecthttp.NewTransport(
		&http.Client{Transport: bearer{token: token, next: b.transport}, Timeout: 30 * time.Second}, b.URL)))
}

type bearer struct {
	token string
	next  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}

func TestCLISignIn(t *testing.T) {
	t.Parallel()
	f := setup(t)

	c := newCLILogin("http://127.0.0.1:49152/callback")
	code := f.signInCLI(t, c, user2)
	res, err := f.exchange(t, code, c.verifier)
	if err != nil {
		t.Fatalf("ExchangeLoginCode: %v", err)
	}
	if res.GetUser().GetEmail() != user2Email || res.GetTokens().GetAccessToken() == "" || res.GetTokens().GetRefreshToken() == "" {
		t.Fatalf("ExchangeLoginCode = %v, want %s's tokens", res, user2Email)
	}
	me, err := f.berth.bearerClient(res.GetTokens().GetAccessToken()).GetCurrentUser(t.Context(), &berthv1.GetCurrentUserRequest{})
	if err != nil || me.GetUser().GetId() != res.GetUser().GetId() {
		t.Fatalf("GetCurrentUser with the exchanged token = %v, %v", me, err)
	}
	refreshed, err := f.berth.authClient().RefreshToken(t.Context(), &berthv1.RefreshTokenRequest{RefreshToken: res.GetTokens().GetRefreshToken()})
	if err != nil || refreshed.GetTokens().GetAccessToken() == "" {
		t.Fatalf("RefreshToken with the exchanged refresh token: %v", err)
	}

	// A code works once.
	if _, err := f.exchange(t, code, c.verifier); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Errorf("second exchange of a code: %v, want Unauthenticated", err)
	}

	// The IPv6 loopback is a loopback too, and the account is the same.
	c6 := newCLILogin("http://[::1]:8123/cb")
	again, err := f.exchange(t, f.signInCLI(t, c6, user2), c6.verifier)
	if err != nil || again.GetUser().GetId() != res.GetUser().GetId() {
		t.Fatalf("second command-line sign-in = %v, %v; want the same account", again, err)
	}

	// A code stolen on its way to the CLI (another program on the machine
	// reading the redirect) is worthless without the verifier, and one
	// wrong guess burns it.
	c2 := newCLILogin("http://127.0.0.1:49153/callback")
	stolen := f.signInCLI(t, c2, user2)
	if _, err := f.exchange(t, stolen, newCLILogin("").verifier); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Errorf("exchange with another verifier: %v, want Unauthenticated", err)
	}
	if _, err := f.exchange(t, stolen, c2.verifier); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Errorf("exchange with the right verifier after a wrong one: %v, want Unauthenticated (the code is burnt)", err)
	}

	// A code that was never issued, and a malformed verifier.
	if _, err := f.exchange(t, "berth_lc_"+strings.Repeat("A", 43), c.verifier); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Errorf("exchange of an unknown code: %v, want Unauthenticated", err)
	}
	if _, err := f.exchange(t, code, "short"); connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Errorf("exchange with a 5-character verifier: %v, want InvalidArgument", err)
	}
}

func TestCLISignInRefusesRedirects(t *testing.T) {
	t.Parallel()
	f := setup(t)
	good := newCLILogin("http://127.0.0.1:49152/callback")
	for _, redirect := range []string{
		"http://localhost:49152/callback",
		"https://127.0.0.1:49152/callback",
		"http://127.0.0.1:49152@evil.example/callback",
		"http://user@127.0.0.1:49152/callback",
		"http://user:pw@127.0.0.1:49152/callback",
		"http://127.0.0.1:49152/callback#x",
		"http://127.0.0.1:49152/callback?next=https://evil.example/",
		"http://127.0.0.1.evil.example:49152/callback",
		"http://127.0.0.2:49152/callback",
		"http://0x7f.1:49152/callback",
		"http://2130706433:49152/callback",
		"http://[::1%25lo]:49152/callback",
		"http://[::ffff:127.0.0.1]:49152/callback",
		"http://127.0.0.1/callback",
		"http://127.0.0.1:0/callback",
		"http://127.0.0.1:049152/callback",
		"http://127.0.0.1:99999/callback",
		"http://127.0.0.1:49152",
		"http://127.0.0.1:49152//evil.example/",
		`http://127.0.0.1:49152\@evil.example/`,
		"http://127.0.0.1:49152/call back",
		"http://127.0.0.1:49152/cb\r\nSet-Cookie: x=y",
		"//127.0.0.1:49152/callback",
		"javascript:alert(1)",
		"https://evil.example/callback",
		"",
	} {
		c := good
		c.redirect = redirect
		b := newBrowser(t)
		p := b.get(t, c.url(f.berth, "example"))
		wantRefused(t, p, http.StatusBadRequest)
		if p.cookie(oidc.FlowCookieName(f.berth.providerConfig(t, "example"))) != nil {
			t.Errorf("cli_redirect %q: a refused login set the flow cookie", redirect)
		}
	}
	// A malformed challenge or state, or one of the three missing, is
	// refused as well.
	for name, q := range map[string]url.Values{
		"short challenge":   {"cli_redirect": {good.redirect}, "cli_challenge": {good.challenge[1:]}, "cli_state": {good.state}},
		"challenge charset": {"cli_redirect": {good.redirect}, "cli_challenge": {good.challenge[1:] + "="}, "cli_state": {good.state}},
		"short state":       {"cli_redirect": {good.redirect}, "cli_challenge": {good.challenge}, "cli_state": {"abc"}},
		"no state":          {"cli_redirect": {good.redirect}, "cli_challenge": {good.challenge}},
		"no challenge":      {"cli_redirect": {good.redirect}, "cli_state": {good.state}},
		"no redirect":       {"cli_challenge": {good.challenge}, "cli_state": {good.state}},
		"two redirects":     {"cli_redirect": {good.redirect, "http://127.0.0.1:1/x"}, "cli_challenge": {good.challenge}, "cli_state": {good.state}},
	} {
		p := newBrowser(t).get(t, f.berth.loginURL("example")+"?"+q.Encode())
		if p.Status != http.StatusBadRequest {
			t.Errorf("%s: login = %d %q, want 400", name, p.Status, p.Body)
		}
	}
	// None of them reached the provider.
	if authorize, _ := f.op.requests(); len(authorize) != 0 {
		t.Errorf("refused logins reached the provider %d times", len(authorize))
	}
	f.berth.wantLogged(t, "cli_redirect, cli_challenge or cli_state malformed")
}

func TestCLISignInTampering(t *testing.T) {
	t.Parallel()
	f := setup(t)
	pc := f.berth.providerConfig(t, "example")
	flowName := oidc.FlowCookieName(pc)

	t.Run("cli parameters added to a browser sign-in's callback", func(t *testing.T) {
		t.Parallel()
		// The callback reads the CLI's parameters from the sealed flow
		// only: on the callback URL they do nothing.
		b := newBrowser(t)
		cb := b.toCallback(t, f.berth, f.berth.loginURL("example"), user2)
		q := cb.Query()
		c := newCLILogin("http://127.0.0.1:49152/callback")
		q.Set("cli_redirect", c.redirect)
		q.Set("cli_challenge", c.challenge)
		q.Set("cli_state", c.state)
		cb.RawQuery = q.Encode()
		res := b.get(t, cb.String())
		if res.Status != http.StatusSeeOther || res.Header.Get("Location") != "/" || res.session() == nil {
			t.Fatalf("callback = %d to %q, want the browser sign-in's 303 to / with a session", res.Status, res.Header.Get("Location"))
		}
	})

	t.Run("flow cookie rewritten by the attacker", func(t *testing.T) {
		t.Parallel()
		// The redirect travels sealed: a flow cookie the attacker wrote
		// (without berth's keys) is refused, so the code cannot be sent
		// elsewhere.
		b := newBrowser(t)
		c := newCLILogin("http://127.0.0.1:49152/callback")
		cb := b.toCallback(t, f.berth, c.url(f.berth, "example"), user2)
		fl, err := oidc.OpenFlowCookie(pc, b.flowCookie(t, cb, flowName).Value)
		if err != nil {
			t.Fatal(err)
		}
		if fl.CLIRedirect != c.redirect || fl.CLIChallenge != c.challenge || fl.CLIState != c.state {
			t.Fatalf("flow cookie holds %+v, want the CLI's parameters", fl)
		}
		fl.CLIRedirect = "http://127.0.0.1:1/attacker"
		fl.CLIChallenge = newCLILogin("").challenge
		forged, err := oidc.SealFlowCookie(attackerConfig(pc, "another secret"), fl)
		if err != nil {
			t.Fatal(err)
		}
		b.setFlowCookie(cb, flowName, forged)
		wantRefused(t, b.get(t, cb.String()), http.StatusBadRequest)
		f.berth.wantLogged(t, "no valid flow cookie")
	})
}

func TestCLISignInDisabledAccount(t *testing.T) {
	t.Parallel()
	f := setup(t)
	// The first account registered is an admin.
	admin, err := f.berth.authClient().Register(t.Context(), &berthv1.RegisterRequest{Email: "admin@example.com", Password: "correct horse battery"})
	if err != nil {
		t.Fatal(err)
	}
	c := newCLILogin("http://127.0.0.1:49152/callback")
	res, err := f.exchange(t, f.signInCLI(t, c, user2), c.verifier)
	if err != nil {
		t.Fatal(err)
	}
	// A code issued before the account is disabled signs nobody in after.
	pending := newCLILogin("http://127.0.0.1:49153/callback")
	code := f.signInCLI(t, pending, user2)
	adminClient := berthv1connect.NewAdminServiceClient(connect.NewClient(connecthttp.NewTransport(
		&http.Client{Transport: bearer{token: admin.GetTokens().GetAccessToken(), next: f.berth.transport}, Timeout: 30 * time.Second}, f.berth.URL)))
	if _, err := adminClient.DisableUser(t.Context(), &berthv1.DisableUserRequest{UserId: res.GetUser().GetId()}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.exchange(t, code, pending.verifier); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Errorf("exchange for a disabled account: %v, want Unauthenticated", err)
	}
	// And a new sign-in is refused at the callback: no code at all.
	p := newBrowser(t).signIn(t, f.berth, newCLILogin("http://127.0.0.1:49154/callback").url(f.berth, "example"), user2)
	if p.Status != http.StatusForbidden || p.Location != nil {
		t.Errorf("callback for a disabled account = %d to %v, want 403 and no redirect", p.Status, p.Location)
	}
}

func TestCLISignInWrongVerifierIsAFailedSignIn(t *testing.T) {
	t.Parallel()
	// One failed sign-in per address is allowed.
	f := setup(t, "--rate-auth-failures", "0.001:1")
	c1, c2 := newCLILogin("http://127.0.0.1:49152/callback"), newCLILogin("http://127.0.0.1:49153/callback")
	code1, code2 := f.signInCLI(t, c1, user2), f.signInCLI(t, c2, user2)
	if _, err := f.exchange(t, code1, c2.verifier); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("exchange with the wrong verifier: %v, want Unauthenticated", err)
	}
	// The address has used up its failed sign-ins: even the right pair is
	// refused until the budget refills.
	if _, err := f.exchange(t, code2, c2.verifier); connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Errorf("exchange after a failed one: %v, want ResourceExhausted", err)
	}
}

// config returns pc with another client secret, from which other flow
// cookie keys derive: an attacker's keys.
func attackerConfig(pc cfg.OIDCProvider, secret string) cfg.OIDCProvider {
	pc.ClientSecret = cfg.Secret(secret)
	return pc
}
