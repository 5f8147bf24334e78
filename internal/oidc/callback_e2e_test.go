package oidc_test

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"testing"

	"github.com/berthhq/berth/internal/oidc"
)

// TestCallbackRefuses: every way a callback can be forged, replayed or
// mixed up is refused.
func TestCallbackRefuses(t *testing.T) {
	t.Parallel()
	f := setup(t)
	pc := f.berth.providerConfig(t, "example")
	flowName := oidc.FlowCookieName(pc)

	t.Run("tampered state", func(t *testing.T) {
		t.Parallel()
		b := newBrowser(t)
		cb := b.toCallback(t, f.berth, f.berth.loginURL("example"), user2)
		q := cb.Query()
		q.Set("state", q.Get("state")[1:]+"A")
		cb.RawQuery = q.Encode()
		wantRefused(t, b.get(t, cb.String()), http.StatusBadRequest)
		f.berth.wantLogged(t, "state does not match")
	})

	t.Run("callback from another browser's sign-in", func(t *testing.T) {
		t.Parallel()
		// Login CSRF: an attacker's own callback URL, opened in the victim's
		// browser, which has a sign-in of its own under way.
		attacker, victim := newBrowser(t), newBrowser(t)
		cb := attacker.toCallback(t, f.berth, f.berth.loginURL("example"), user1())
		victim.get(t, f.berth.loginURL("example"))
		wantRefused(t, victim.get(t, cb.String()), http.StatusBadRequest)
		// And in a browser with no sign-in at all.
		wantRefused(t, newBrowser(t).get(t, cb.String()), http.StatusBadRequest)
	})

	t.Run("replayed callback", func(t *testing.T) {
		t.Parallel()
		b := newBrowser(t)
		cb := b.toCallback(t, f.berth, f.berth.loginURL("example"), user2)
		copied := b.flowCookie(t, cb, flowName)
		if first := b.get(t, cb.String()); first.session() == nil {
			t.Fatalf("first use of the callback = %d %q, want a session", first.Status, first.Body)
		}
		// The browser's flow cookie is gone: the URL alone does nothing.
		wantRefused(t, b.get(t, cb.String()), http.StatusBadRequest)
		f.berth.wantLogged(t, "no valid flow cookie")
		// With a copy of the cookie, berth still refuses the used state.
		b.setFlowCookie(cb, flowName, copied.Value)
		wantRefused(t, b.get(t, cb.String()), http.StatusBadRequest)
		f.berth.wantLogged(t, "callback replayed")
	})

	t.Run("wrong PKCE verifier", func(t *testing.T) {
		t.Parallel()
		b := newBrowser(t)
		cb := b.toCallback(t, f.berth, f.berth.loginURL("example"), user2)
		fl, err := oidc.OpenFlowCookie(pc, b.flowCookie(t, cb, flowName).Value)
		if err != nil {
			t.Fatal(err)
		}
		wrong := base64.RawURLEncoding.EncodeToString(make([]byte, 32))
		fl.Verifier = wrong
		forged, err := oidc.SealFlowCookie(pc, fl)
		if err != nil {
			t.Fatal(err)
		}
		b.setFlowCookie(cb, flowName, forged)
		wantRefused(t, b.get(t, cb.String()), http.StatusBadRequest)
		f.berth.wantLogged(t, "invalid_grant")
		// The provider did receive the wrong verifier, and refused it.
		_, token := f.op.requests()
		sent := false
		for _, tk := range token {
			sent = sent || tk.Get("code_verifier") == wrong
		}
		if !sent {
			t.Error("the provider never saw the tampered verifier")
		}
	})

	t.Run("stripped PKCE verifier", func(t *testing.T) {
		t.Parallel()
		b := newBrowser(t)
		cb := b.toCallback(t, f.berth, f.berth.loginURL("example"), user2)
		fl, err := oidc.OpenFlowCookie(pc, b.flowCookie(t, cb, flowName).Value)
		if err != nil {
			t.Fatal(err)
		}
		fl.Verifier = ""
		forged, err := oidc.SealFlowCookie(pc, fl)
		if err != nil {
			t.Fatal(err)
		}
		b.setFlowCookie(cb, flowName, forged)
		wantRefused(t, b.get(t, cb.String()), http.StatusBadRequest)
		f.berth.wantLogged(t, "lacks state, nonce, verifier")
	})

	t.Run("tampered flow cookie", func(t *testing.T) {
		t.Parallel()
		b := newBrowser(t)
		cb := b.toCallback(t, f.berth, f.berth.loginURL("example"), user2)
		v := []byte(b.flowCookie(t, cb, flowName).Value)
		v[len(v)/2] ^= 1
		b.setFlowCookie(cb, flowName, string(v))
		wantRefused(t, b.get(t, cb.String()), http.StatusBadRequest)
	})

	t.Run("wrong nonce", func(t *testing.T) {
		t.Parallel()
		b := newBrowser(t)
		cb := b.toCallback(t, f.berth, f.berth.loginURL("example"), user2)
		fl, err := oidc.OpenFlowCookie(pc, b.flowCookie(t, cb, flowName).Value)
		if err != nil {
			t.Fatal(err)
		}
		fl.Nonce = base64.RawURLEncoding.EncodeToString(make([]byte, 32))
		forged, err := oidc.SealFlowCookie(pc, fl)
		if err != nil {
			t.Fatal(err)
		}
		b.setFlowCookie(cb, flowName, forged)
		wantRefused(t, b.get(t, cb.String()), http.StatusBadRequest)
		f.berth.wantLogged(t, "nonce does not match")
	})

	t.Run("provider error", func(t *testing.T) {
		t.Parallel()
		b := newBrowser(t)
		cb := b.toCallback(t, f.berth, f.berth.loginURL("example"), user2)
		q := url.Values{"state": {cb.Query().Get("state")}, "error": {"access_denied"}, "error_description": {"the user said no"}}
		cb.RawQuery = q.Encode()
		wantRefused(t, b.get(t, cb.String()), http.StatusBadRequest)
		f.berth.wantLogged(t, "provider returned error access_denied: the user said no")
	})

	t.Run("response from another issuer", func(t *testing.T) {
		t.Parallel()
		b := newBrowser(t)
		cb := b.toCallback(t, f.berth, f.berth.loginURL("example"), user2)
		q := cb.Query()
		q.Set("iss", "https://attacker.example")
		cb.RawQuery = q.Encode()
		wantRefused(t, b.get(t, cb.String()), http.StatusBadRequest)
		f.berth.wantLogged(t, "response names issuer https://attacker.example")
	})

	t.Run("bad code", func(t *testing.T) {
		t.Parallel()
		b := newBrowser(t)
		cb := b.toCallback(t, f.berth, f.berth.loginURL("example"), user2)
		q := cb.Query()
		q.Set("code", "not-a-code")
		cb.RawQuery = q.Encode()
		wantRefused(t, b.get(t, cb.String()), http.StatusBadRequest)
	})

	t.Run("ID token for another audience", func(t *testing.T) {
		t.Parallel()
		b := newBrowser(t)
		p := b.signIn(t, f.berth, f.berth.loginURL("mixup"), user2)
		wantRefused(t, p, http.StatusBadRequest)
		f.berth.wantLogged(t, "audience is not valid")
		// The provider issued the tokens, to the other client: the refusal
		// is berth's check of the ID token's audience.
		authorize, _ := f.op.requests()
		seen := false
		for _, a := range authorize {
			seen = seen || a.Get("client_id") == wrongClientID
		}
		if !seen {
			t.Error("berth never asked the provider for a code as the mixup client")
		}
	})
}
