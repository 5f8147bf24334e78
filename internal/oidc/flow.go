package oidc

import (
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	httphelper "github.com/zitadel/oidc/v3/pkg/http"

	"github.com/berthhq/berth/internal/config"
)

// flowTTL is how long a sign-in may take between login and callback: the
// lifetime of the flow cookie, enforced both by the browser (Max-Age) and
// by the timestamp sealed inside the cookie.
const flowTTL = 10 * time.Minute

// flow is what one sign-in must remember between the login redirect and
// the callback. It travels in the flow cookie, sealed (see flowCookies), so
// no store is needed for sign-ins in progress (only usedStates, a guard
// kept in memory) and any instance sharing the configuration can finish a
// sign-in another started.
type flow struct {
	// State is sent to the provider and must come back unchanged on the
	// callback: it binds the callback to this browser (no login CSRF).
	State string `json:"s"`
	// Nonce is sent to the provider and must come back inside the ID
	// token: it binds the token to this sign-in (no token replay).
	Nonce string `json:"n"`
	// Verifier is the PKCE code verifier; the provider got its S256
	// challenge and will release tokens only to whoever presents it.
	Verifier string `json:"v"`
	// ReturnTo is the same-site path to land on after signing in.
	ReturnTo string `json:"r"`
	// CLIRedirect, CLIChallenge and CLIState are set for a command-line
	// sign-in (berth login --oidc): the CLI's loopback URL (checked by
	// cliRedirect), the S256 challenge of its PKCE verifier, and its own
	// state. They travel sealed with the rest, so nobody but berth can set
	// where a sign-in's code goes.
	CLIRedirect  string `json:"cr,omitempty"`
	CLIChallenge string `json:"cc,omitempty"`
	CLIState     string `json:"cs,omitempty"`
}

// complete reports whether every secret of the flow is present.
func (f *flow) complete() bool {
	return f.State != "" && f.Nonce != "" && f.Verifier != "" && f.ReturnTo != ""
}

// flowCookieName is the name of provider pc's flow cookie. One cookie per
// provider lets sign-ins with different providers run side by side; a
// second sign-in with the same provider replaces the first.
func flowCookieName(pc config.OIDCProvider) string {
	return "berth_oidc_" + pc.Name
}

// flowCookies returns the cookie handler that seals provider pc's flow
// cookie: encrypted with AES-256-CTR and authenticated with HMAC-SHA256
// over the cookie's name, a timestamp and the ciphertext (gorilla
// securecookie, through zitadel's CookieHandler), refused once older than
// flowTTL.
//
// The keys are derived with HKDF-SHA256 from the provider's client secret,
// bound to the provider's name, issuer and client id. So every berth
// instance with the same configuration derives the same keys: a sign-in
// started on one instance can finish on another, and a restart does not
// break sign-ins in progress, with no new secret to configure. Rotating
// the client secret ends sign-ins in progress (they are at most 10 minutes
// old). The provider knows the client secret too, but forging a flow cookie
// gains it nothing: it cannot plant a cookie in a browser for berth's site,
// and it vouches for identities anyway.
func flowCookies(pc config.OIDCProvider, cookiePath string, secure bool) *httphelper.CookieHandler {
	info := "berth oidc flow cookie v1\x00" + pc.Name + "\x00" + pc.Issuer + "\x00" + pc.ClientID
	keys, err := hkdf.Key(sha256.New, []byte(pc.ClientSecret.Reveal()), nil, info, 64)
	if err != nil {
		// hkdf.Key fails only for a length beyond 255 hash sizes.
		panic("oidc: derive flow cookie keys: " + err.Error())
	}
	opts := []httphelper.CookieHandlerOpt{
		httphelper.WithMaxAge(int(flowTTL / time.Second)),
		httphelper.WithPath(cookiePath),
		httphelper.WithSameSite(http.SameSiteLaxMode),
	}
	if !secure {
		opts = append(opts, httphelper.WithUnsecure())
	}
	return httphelper.NewCookieHandler(keys[:32], keys[32:], opts...)
}

// sealFlow returns the flow cookie holding f.
func sealFlow(c *httphelper.CookieHandler, name string, f *flow) (*http.Cookie, error) {
	data, err := json.Marshal(f)
	if err != nil {
		return nil, err
	}
	return c.CreateCookie(name, string(data))
}

// errNoFlow means the callback came without a flow cookie: it expired,
// was already used, or the sign-in was started in another browser.
var errNoFlow = errors.New("no flow cookie")

// openFlow returns the flow in r's flow cookie, if it is authentic, not
// expired and complete.
func openFlow(c *httphelper.CookieHandler, name string, r *http.Request) (*flow, error) {
	if _, err := r.Cookie(name); err != nil {
		return nil, errNoFlow
	}
	data, err := c.CheckCookie(r, name)
	if err != nil {
		return nil, err
	}
	var f flow
	if err := json.Unmarshal([]byte(data), &f); err != nil {
		return nil, err
	}
	if !f.complete() {
		return nil, errors.New("flow cookie lacks state, nonce, verifier or return path")
	}
	return &f, nil
}

// randomToken returns 32 random bytes, base64url-encoded without padding:
// 43 characters, as RFC 7636 recommends for a PKCE verifier, and as much
// entropy for state and nonce.
func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return base64.RawURLEncoding.EncodeToString(b)
}

// returnPath returns raw if it is a path on this site, and "/" otherwise.
// A path starts with exactly one "/": "//host" and "/\host" are read by
// browsers as another site, and control characters (which browsers strip)
// could turn a path into one of those, so both are refused.
func returnPath(raw string) string {
	if raw == "" || len(raw) > 2048 || raw[0] != '/' || strings.HasPrefix(raw, "//") || strings.Contains(raw, `\`) {
		return "/"
	}
	for _, r := range raw {
		if r < 0x20 || r == 0x7f {
			return "/"
		}
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil {
		return "/"
	}
	return raw
}

// cliParams reads the cli_redirect, cli_challenge and cli_state
// parameters of a login. None of them means a browser sign-in (ok, with
// empty values); any of them means a command-line one, which needs all
// three to be well formed: cli_redirect a loopback URL (cliRedirect),
// cli_challenge an S256 challenge (43 base64url characters) and cli_state
// 16 to 128 base64url characters. Anything else is not ok, and the login
// is refused before the provider is contacted.
func cliParams(q url.Values) (redirect, challenge, state string, ok bool) {
	if !q.Has("cli_redirect") && !q.Has("cli_challenge") && !q.Has("cli_state") {
		return "", "", "", true
	}
	redirect, ok = cliRedirect(q.Get("cli_redirect"))
	challenge, state = q.Get("cli_challenge"), q.Get("cli_state")
	if !ok || len(challenge) != 43 || !base64URL(challenge) || len(state) < 16 || len(state) > 128 || !base64URL(state) {
		return "", "", "", false
	}
	if len(q["cli_redirect"]) != 1 || len(q["cli_challenge"]) != 1 || len(q["cli_state"]) != 1 {
		return "", "", "", false
	}
	return redirect, challenge, state, true
}

// cliRedirect returns raw if it is a loopback URL a CLI listens on, as RFC
// 8252 (OAuth for native apps) describes: exactly
// http://127.0.0.1:<port>/<path> or http://[::1]:<port>/<path>. No other
// host (not even localhost, whose name a hostile resolver or hosts file
// could point elsewhere), no user info, no query, no fragment, no zone, a
// port written plainly, and a path with no backslash or control character.
// So a code can never be sent off the machine the browser runs on.
func cliRedirect(raw string) (string, bool) {
	if len(raw) > 512 || !strings.HasPrefix(raw, "http://") || strings.ContainsAny(raw, "\\#?@%") {
		return "", false
	}
	for _, r := range raw {
		if r <= 0x20 || r == 0x7f {
			return "", false
		}
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" || u.Opaque != "" || u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return "", false
	}
	host, port := u.Hostname(), u.Port()
	if host != "127.0.0.1" && host != "::1" {
		return "", false
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 || u.Host != net.JoinHostPort(host, strconv.Itoa(n)) {
		return "", false
	}
	if !strings.HasPrefix(u.Path, "/") || strings.HasPrefix(u.Path, "//") {
		return "", false
	}
	return raw, true
}

// base64URL reports whether s is made of base64url characters only.
func base64URL(s string) bool {
	for _, r := range s {
		if !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// usedStates remembers the states of callbacks already served, until their
// flow cookie would have expired anyway, so a callback URL presented twice
// with its cookie (a copied cookie, a browser that ignored the deletion)
// is refused by this instance before the code reaches the provider. It
// is a second line: the flow cookie is deleted on first use, and the
// provider accepts a code only once, which also covers a replay sent to
// another instance.
type usedStates struct {
	mu        sync.Mutex
	until     map[string]time.Time
	nextPrune int
}

func newUsedStates() *usedStates {
	return &usedStates{until: map[string]time.Time{}, nextPrune: 1024}
}

// claim records state as used and reports whether it was unused. Only
// states from authentic flow cookies reach it, so its size is bounded by
// the sign-ins started in the last flowTTL.
func (u *usedStates) claim(state string, now time.Time) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if until, ok := u.until[state]; ok && now.Before(until) {
		return false
	}
	if len(u.until) >= u.nextPrune {
		for s, until := range u.until {
			if !now.Before(until) {
				delete(u.until, s)
			}
		}
		u.nextPrune = max(1024, 2*len(u.until))
	}
	u.until[state] = now.Add(flowTTL)
	return true
}
