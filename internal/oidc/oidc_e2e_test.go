package oidc_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect/v2"

	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
	"github.com/berthhq/berth/internal/oidc"
)

const (
	clientID     = "berth"
	clientSecret = "berth-client-secret"
	// The "mixup" provider is the same OP, configured in berth with a
	// client id the OP never issues tokens for: the OP is steered (see
	// provider.seeClientAs) to treat berth's requests as otherClientID's,
	// so its ID tokens name otherClientID as their audience.
	wrongClientID = "berth-wrong"
	otherClientID = "berth-other"
)

// fixture is a provider and a berth configured with it twice: as
// "example", correctly, and as "mixup", whose tokens are for another
// audience.
type fixture struct {
	op    *provider
	berth *berth
}

func setup(t *testing.T, flags ...string) *fixture {
	t.Helper()
	opLn, berthLn := listen(t), listen(t)
	berthURL := "http://" + berthLn.Addr().String()
	op := startProvider(t, opLn,
		client{ID: clientID, Secret: clientSecret, RedirectURI: berthURL + "/auth/oidc/example/callback"},
		client{ID: otherClientID, Secret: clientSecret, RedirectURI: berthURL + "/auth/oidc/mixup/callback"},
	)
	op.seeClientAs(wrongClientID, otherClientID)
	env := append(providerEnv("example", op.Issuer, clientID, clientSecret),
		providerEnv("mixup", op.Issuer, wrongClientID, clientSecret)...)
	return &fixture{op: op, berth: startBerth(t, berthLn, env, flags...)}
}

// wantRefused fails the test unless p is a 4xx with a short message and no
// session cookie.
func wantRefused(t *testing.T, p *page, status int) {
	t.Helper()
	if p.Status != status {
		t.Errorf("status = %d, want %d; body %q", p.Status, status, p.Body)
	}
	if c := p.session(); c != nil {
		t.Errorf("a refused sign-in set the session cookie %v", c)
	}
	// Like every error berth writes, a Connect-style JSON body whose
	// message is for people.
	if got := p.Header.Get("Content-Type"); !strings.HasPrefix(got, "application/json") {
		t.Errorf("Content-Type = %q, want application/json", got)
	}
	var body struct {
		Code, Message string
	}
	if err := json.Unmarshal([]byte(p.Body), &body); err != nil || body.Code == "" || body.Message == "" {
		t.Errorf("body %q is not an error with a code and a message: %v", p.Body, err)
	}
	// The message is for people: no error chains, no protocol internals.
	for _, leak := range []string{"oauth2", "invalid_grant", "audience", "nonce", "securecookie", "token", "error:"} {
		if strings.Contains(strings.ToLower(p.Body), leak) {
			t.Errorf("body leaks %q: %q", leak, p.Body)
		}
	}
}

func TestSignIn(t *testing.T) {
	t.Parallel()
	f := setup(t)
	b := newBrowser(t)

	// A first sign-in creates the account and a working session.
	returnTo := "/workspaces/ws-1?tab=logs"
	cb := b.toCallback(t, f.berth, f.berth.loginURL("example")+"?return_to="+url.QueryEscape(returnTo), user2)
	flowName := oidc.FlowCookieName(f.berth.providerConfig(t, "example"))
	res := b.get(t, cb.String())
	if res.Status != http.StatusSeeOther || res.Header.Get("Location") != returnTo {
		t.Fatalf("callback = %d to %q, want 303 to %s; body %q\nlogs:\n%s", res.Status, res.Header.Get("Location"), returnTo, res.Body, f.berth.logs.String())
	}
	session := res.session()
	if session == nil {
		t.Fatal("callback set no session cookie")
	}
	if !session.HttpOnly || session.SameSite != http.SameSiteLaxMode || session.Path != "/" || session.Secure {
		t.Errorf("session cookie %+v: want HttpOnly, SameSite=Lax, Path=/, not Secure (--secure-cookies=false)", session)
	}
	if !session.Expires.After(time.Now().Add(time.Hour)) {
		t.Errorf("session cookie expires %v, want the session's expiry", session.Expires)
	}
	if c := res.cookie(flowName); c == nil || c.MaxAge >= 0 {
		t.Errorf("callback did not delete the flow cookie: %+v", c)
	}
	if got := res.Header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", got)
	}

	user, err := f.berth.currentUser(t, session)
	if err != nil {
		t.Fatalf("GetCurrentUser with the session cookie: %v", err)
	}
	if user.GetId() == "" || user.GetName() != user2Name || user.GetEmail() != user2Email {
		t.Errorf("current user = %v, want a new account named %q with email %q", user, user2Name, user2Email)
	}

	// berth sent PKCE (S256) and a nonce, and the token request carried the
	// verifier matching the challenge.
	authorize, token := f.op.requests()
	if len(authorize) != 1 || len(token) != 1 {
		t.Fatalf("provider saw %d authorization and %d token requests, want 1 and 1", len(authorize), len(token))
	}
	a, tk := authorize[0], token[0]
	if a.Get("code_challenge_method") != "S256" || a.Get("nonce") == "" || a.Get("state") == "" || a.Get("client_id") != clientID ||
		a.Get("redirect_uri") != f.berth.URL+"/auth/oidc/example/callback" || a.Get("response_type") != "code" {
		t.Errorf("authorization request %v lacks S256 PKCE, nonce, state, client id or redirect URI", a)
	}
	if got := a.Get("scope"); got != "openid email profile" {
		t.Errorf("scope = %q, want the default", got)
	}
	sum := sha256.Sum256([]byte(tk.Get("code_verifier")))
	if tk.Get("code_verifier") == "" || base64.RawURLEncoding.EncodeToString(sum[:]) != a.Get("code_challenge") {
		t.Errorf("token request's code_verifier %q does not match the challenge %q", tk.Get("code_verifier"), a.Get("code_challenge"))
	}

	// The same subject signing in again, in another browser, is the same
	// account.
	again := newBrowser(t).signIn(t, f.berth, f.berth.loginURL("example"), user2)
	if again.Status != http.StatusSeeOther || again.Header.Get("Location") != "/" || again.session() == nil {
		t.Fatalf("second sign-in = %d to %q, want 303 to / with a session", again.Status, again.Header.Get("Location"))
	}
	if again.session().Value == session.Value {
		t.Error("the second sign-in reused the first session's cookie")
	}
	same, err := f.berth.currentUser(t, again.session())
	if err != nil {
		t.Fatalf("GetCurrentUser after the second sign-in: %v", err)
	}
	if same.GetId() != user.GetId() {
		t.Errorf("the same subject signed in as %s, then as %s", user.GetId(), same.GetId())
	}

	// Another subject is another account.
	other := newBrowser(t).signIn(t, f.berth, f.berth.loginURL("example"), user1())
	if other.session() == nil {
		t.Fatalf("sign-in of the other user = %d %q, want a session", other.Status, other.Body)
	}
	u1, err := f.berth.currentUser(t, other.session())
	if err != nil {
		t.Fatal(err)
	}
	if u1.GetId() == user.GetId() {
		t.Error("two subjects share one account")
	}

	// Without the cookie there is no user.
	if _, err := f.berth.authClient().GetCurrentUser(t.Context(), &berthv1.GetCurrentUserRequest{}); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Errorf("GetCurrentUser without credentials: %v, want Unauthenticated", err)
	}
}

func TestListAuthProviders(t *testing.T) {
	t.Parallel()
	f := setup(t)
	res, err := f.berth.authClient().ListAuthProviders(t.Context(), &berthv1.ListAuthProvidersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*berthv1.AuthProvider{}
	for _, p := range res.GetProviders() {
		got[p.GetName()] = p
	}
	for _, name := range []string{"example", "mixup"} {
		p := got[name]
		if p == nil || p.GetDisplayName() != "Example "+name || p.GetLoginUrl() != f.berth.loginURL(name) {
			t.Errorf("ListAuthProviders lists %s as %v, want display name %q and login URL %s", name, p, "Example "+name, f.berth.loginURL(name))
		}
	}
}

func TestLogin(t *testing.T) {
	t.Parallel()
	f := setup(t)
	pc := f.berth.providerConfig(t, "example")
	callback, err := url.Parse(pc.RedirectURI(f.berth.URL))
	if err != nil {
		t.Fatal(err)
	}

	t.Run("flow cookie", func(t *testing.T) {
		t.Parallel()
		b := newBrowser(t)
		p := b.get(t, f.berth.loginURL("example"))
		if p.Status != http.StatusFound || !strings.HasPrefix(p.Location.String(), f.op.Issuer+"/auth?") {
			t.Fatalf("login = %d to %v, want 302 to the provider", p.Status, p.Location)
		}
		c := p.cookie(oidc.FlowCookieName(pc))
		if c == nil {
			t.Fatal("login set no flow cookie")
		}
		if !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.MaxAge != 600 || c.Path != "/auth/oidc/example/" || c.Secure {
			t.Errorf("flow cookie %+v: want HttpOnly, SameSite=Lax, Max-Age=600, Path=/auth/oidc/example/", c)
		}
		for _, secret := range []string{p.Location.Query().Get("state"), p.Location.Query().Get("nonce")} {
			if len(secret) < 43 || strings.Contains(c.Value, secret) {
				t.Errorf("state/nonce %q is short or readable in the cookie", secret)
			}
		}
		fl, err := oidc.OpenFlowCookie(pc, c.Value)
		if err != nil {
			t.Fatalf("open flow cookie: %v", err)
		}
		if fl.State != p.Location.Query().Get("state") || fl.Nonce != p.Location.Query().Get("nonce") {
			t.Errorf("flow cookie holds state %q nonce %q, the redirect sent %q %q", fl.State, fl.Nonce, p.Location.Query().Get("state"), p.Location.Query().Get("nonce"))
		}
	})

	t.Run("return_to", func(t *testing.T) {
		t.Parallel()
		for raw, want := range map[string]string{
			"/workspaces?x=1#top":    "/workspaces?x=1#top",
			"/":                      "/",
			"":                       "/",
			"//evil.example/path":    "/",
			`/\evil.example`:         "/",
			"/\t/evil.example":       "/",
			"https://evil.example/":  "/",
			"javascript:alert(1)":    "/",
			"evil.example":           "/",
			"/ok/../../still-a-path": "/ok/../../still-a-path",
		} {
			b := newBrowser(t)
			p := b.get(t, f.berth.loginURL("example")+"?return_to="+url.QueryEscape(raw))
			c := p.cookie(oidc.FlowCookieName(pc))
			if c == nil {
				t.Fatalf("return_to %q: login = %d, set no flow cookie", raw, p.Status)
			}
			fl, err := oidc.OpenFlowCookie(pc, c.Value)
			if err != nil {
				t.Fatal(err)
			}
			if fl.ReturnTo != want {
				t.Errorf("return_to %q kept as %q, want %q", raw, fl.ReturnTo, want)
			}
		}
	})

	t.Run("unknown provider", func(t *testing.T) {
		t.Parallel()
		b := newBrowser(t)
		for _, path := range []string{"/auth/oidc/nope/login", "/auth/oidc/nope/callback?code=x&state=y", "/auth/oidc/EXAMPLE/login"} {
			p := b.get(t, f.berth.URL+path)
			if p.Status != http.StatusNotFound || p.cookie(oidc.FlowCookieName(pc)) != nil {
				t.Errorf("GET %s = %d %q, want 404 and no cookie", path, p.Status, p.Body)
			}
		}
	})

	t.Run("callback without a flow", func(t *testing.T) {
		t.Parallel()
		p := newBrowser(t).get(t, callback.String()+"?code=abc&state=def")
		wantRefused(t, p, http.StatusBadRequest)
	})
}

func TestProviderDownAtStart(t *testing.T) {
	t.Parallel()
	opLn, berthLn := listen(t), listen(t)
	berthURL := "http://" + berthLn.Addr().String()
	op := startProvider(t, opLn, client{ID: clientID, Secret: clientSecret, RedirectURI: berthURL + "/auth/oidc/example/callback"})
	op.setDown(true)
	// berth starts although discovery fails, and says so.
	bt := startBerth(t, berthLn, providerEnv("example", op.Issuer, clientID, clientSecret))
	if !strings.Contains(bt.logs.String(), "provider unreachable at start") {
		t.Errorf("berth did not log the unreachable provider:\n%s", bt.logs.String())
	}
	b := newBrowser(t)
	p := b.get(t, bt.loginURL("example"))
	if p.Status != http.StatusServiceUnavailable || p.cookie(oidc.FlowCookieName(bt.providerConfig(t, "example"))) != nil {
		t.Errorf("login while the provider is down = %d %q, want 503 and no flow cookie", p.Status, p.Body)
	}
	// The next login retries discovery, and signing in works.
	op.setDown(false)
	res := b.signIn(t, bt, bt.loginURL("example"), user2)
	if res.Status != http.StatusSeeOther || res.session() == nil {
		t.Fatalf("sign-in once the provider is up = %d %q, want 303 with a session", res.Status, res.Body)
	}
	if _, err := bt.currentUser(t, res.session()); err != nil {
		t.Errorf("GetCurrentUser: %v", err)
	}
}

func TestSecureCookies(t *testing.T) {
	t.Parallel()
	f := setup(t, "--secure-cookies=true")
	p := newBrowser(t).get(t, f.berth.loginURL("example"))
	c := p.cookie(oidc.FlowCookieName(f.berth.providerConfig(t, "example")))
	if c == nil || !c.Secure {
		t.Errorf("flow cookie %+v, want Secure under --secure-cookies", c)
	}
}
