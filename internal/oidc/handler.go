package oidc

import (
	"context"
	"crypto/subtle"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/zitadel/oidc/v3/pkg/client/rp"
	"github.com/zitadel/oidc/v3/pkg/oidc"

	"github.com/berthhq/berth/internal/auth"
	"github.com/berthhq/berth/internal/fault"
)

// What a browser is told when a sign-in fails. The reason, which may hold
// internals, goes only to the log.
const (
	msgStartAgain   = "This sign-in has expired or was already used, or it was started in another browser. Start again from the login page."
	msgRefused      = "The sign-in provider did not complete the sign-in. Start again from the login page."
	msgNotVerified  = "The sign-in could not be verified. Start again from the login page."
	msgUnreachable  = "The sign-in provider cannot be reached right now. Try again in a minute."
	msgInternal     = "Signing in failed on our side. Try again in a minute."
	msgNotSignedIn  = "You could not be signed in."
	msgBadCLI       = "This command-line sign-in link is malformed: its redirect must be http://127.0.0.1:<port>/<path> or http://[::1]:<port>/<path>. Run berth login again."
	maxLoggedDetail = 200
)

// login starts a sign-in: it seals a fresh state, nonce and PKCE verifier
// into the flow cookie and redirects the browser to the provider's
// authorization endpoint with the state, the nonce and the verifier's S256
// challenge.
func (h *Handler) login(w http.ResponseWriter, r *http.Request) {
	p := h.provider(w, r)
	if p == nil {
		return
	}
	noStore(w)
	// A command-line sign-in's parameters are checked before anything
	// else, the provider included: a redirect that is not the loopback
	// address of the machine the browser runs on is never followed.
	cliRedirect, cliChallenge, cliState, ok := cliParams(r.URL.Query())
	if !ok {
		h.refuse(w, r, p, http.StatusBadRequest, msgBadCLI, "cli_redirect, cli_challenge or cli_state malformed", nil)
		return
	}
	party, err := p.relyingParty(r.Context())
	if err != nil {
		h.refuse(w, r, p, http.StatusServiceUnavailable, msgUnreachable, "discovery failed", err)
		return
	}
	f := &flow{
		State:        randomToken(),
		Nonce:        randomToken(),
		Verifier:     randomToken(),
		ReturnTo:     returnPath(r.URL.Query().Get("return_to")),
		CLIRedirect:  cliRedirect,
		CLIChallenge: cliChallenge,
		CLIState:     cliState,
	}
	cookie, err := sealFlow(p.cookies, p.cookieName, f)
	if err != nil {
		h.refuse(w, r, p, http.StatusInternalServerError, msgInternal, "sealing the flow cookie failed", err)
		return
	}
	http.SetCookie(w, cookie)
	http.Redirect(w, r, rp.AuthURL(f.State, party,
		rp.WithCodeChallenge(oidc.NewSHACodeChallenge(f.Verifier)),
		rp.AuthURLOpt(rp.WithURLParam("nonce", f.Nonce)),
	), http.StatusFound)
}

// callback finishes a sign-in. The flow cookie is deleted first, whatever
// follows, so a callback works at most once; then the state must match the
// cookie's (and must not have been used before), an iss parameter must name
// this provider, the provider must not report an error, the code must be
// exchanged with the cookie's PKCE verifier, and the ID token must pass
// verification (signature by the provider's keys, issuer, audience = our
// client id, expiry, nonce = the cookie's). Only then is the identity
// signed in and the session cookie set.
func (h *Handler) callback(w http.ResponseWriter, r *http.Request) {
	p := h.provider(w, r)
	if p == nil {
		return
	}
	noStore(w)
	p.cookies.DeleteCookie(w, p.cookieName)
	f, err := openFlow(p.cookies, p.cookieName, r)
	if err != nil {
		h.refuse(w, r, p, http.StatusBadRequest, msgStartAgain, "no valid flow cookie", err)
		return
	}
	q := r.URL.Query()
	if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(f.State)) != 1 {
		h.refuse(w, r, p, http.StatusBadRequest, msgStartAgain, "state does not match the flow cookie", nil)
		return
	}
	if !h.used.claim(f.State, time.Now()) {
		h.refuse(w, r, p, http.StatusBadRequest, msgStartAgain, "callback replayed: its state was already used", nil)
		return
	}
	// RFC 9207: a provider that names itself in the response must be the
	// one this callback belongs to (a defence against mix-up attacks, on
	// top of each provider having its own redirect URI).
	if iss := q.Get("iss"); iss != "" && iss != p.cfg.Issuer {
		h.refuse(w, r, p, http.StatusBadRequest, msgRefused, "response names issuer "+clip(iss)+", not this provider's", nil)
		return
	}
	if e := q.Get("error"); e != "" {
		h.refuse(w, r, p, http.StatusBadRequest, msgRefused, "provider returned error "+clip(e)+": "+clip(q.Get("error_description")), nil)
		return
	}
	code := q.Get("code")
	if code == "" {
		h.refuse(w, r, p, http.StatusBadRequest, msgRefused, "callback has no code", nil)
		return
	}
	party, err := p.relyingParty(r.Context())
	if err != nil {
		h.refuse(w, r, p, http.StatusServiceUnavailable, msgUnreachable, "discovery failed", err)
		return
	}
	tokens, err := rp.CodeExchange[*oidc.IDTokenClaims](withNonce(r.Context(), f.Nonce), code, party, rp.WithCodeVerifier(f.Verifier))
	if err != nil {
		if isTransport(err) {
			h.refuse(w, r, p, http.StatusBadGateway, msgUnreachable, "code exchange could not reach the provider", err)
			return
		}
		h.refuse(w, r, p, http.StatusBadRequest, msgNotVerified, "code exchange or ID token verification failed", err)
		return
	}
	id := h.identity(r.Context(), p, party, tokens)
	if f.CLIRedirect != "" {
		h.finishCLI(w, r, p, f, id)
		return
	}
	session, err := h.signIn.SignInExternal(r.Context(), id, clientOf(r))
	if err == nil && (session == nil || session.Cookie == "" || session.User == nil) {
		err = errors.New("sign-in returned no session")
	}
	if err != nil {
		status, msg := signInRefusal(err)
		h.refuse(w, r, p, status, msg, "sign-in refused for subject "+clip(id.Subject), err)
		return
	}
	// #nosec G124 -- HttpOnly always; Secure follows --secure-cookies (off only
	// for plain-HTTP development); Lax, as the sign-in ends in a redirect
	// from the provider, which Strict would strip the cookie from.
	http.SetCookie(w, &http.Cookie{
		Name:     auth.SessionCookie,
		Value:    session.Cookie,
		Path:     "/",
		Expires:  session.ExpiresAt,
		HttpOnly: true,
		Secure:   h.secure,
		SameSite: http.SameSiteLaxMode,
	})
	h.logger.InfoContext(r.Context(), "oidc: signed in", "provider", p.cfg.Name, "user", session.User.ID, "created", session.Created)
	http.Redirect(w, r, f.ReturnTo, http.StatusSeeOther)
}

// finishCLI ends a command-line sign-in: instead of a session cookie, the
// browser takes a one-time code (bound to the account and to the CLI's
// PKCE challenge) to the CLI's loopback URL, with the CLI's state. The
// code is in no log line.
func (h *Handler) finishCLI(w http.ResponseWriter, r *http.Request, p *provider, f *flow, id auth.ExternalIdentity) {
	code, err := h.signIn.SignInExternalCLI(r.Context(), id, f.CLIChallenge)
	if err == nil && (code == nil || code.Code == "" || code.User == nil) {
		err = errors.New("sign-in returned no code")
	}
	if err != nil {
		status, msg := signInRefusal(err)
		h.refuse(w, r, p, status, msg, "command-line sign-in refused for subject "+clip(id.Subject), err)
		return
	}
	to, err := url.Parse(f.CLIRedirect)
	if err != nil { // checked at login, sealed since: only a bug gets here
		h.refuse(w, r, p, http.StatusInternalServerError, msgInternal, "sealed cli_redirect does not parse", err)
		return
	}
	to.RawQuery = url.Values{"code": {code.Code}, "state": {f.CLIState}}.Encode()
	h.logger.InfoContext(r.Context(), "oidc: signed in for the command line", "provider", p.cfg.Name, "user", code.User.ID, "created", code.Created)
	// #nosec G710 -- not an open redirect: the target is a loopback URL that
	// cliRedirect accepted at login (http://127.0.0.1 or [::1], a port, a
	// path) and that came back sealed and authenticated in the flow cookie.
	http.Redirect(w, r, to.String(), http.StatusFound)
}

// identity is the person the verified ID token names. The account is keyed
// by issuer and subject only; name and email are display attributes, taken
// from the ID token or, when it has neither, from the userinfo endpoint. An
// email is passed on only when the provider says it verified it, so an
// address nobody proved to own is never shown as someone's.
func (h *Handler) identity(ctx context.Context, p *provider, party rp.RelyingParty, tokens *oidc.Tokens[*oidc.IDTokenClaims]) auth.ExternalIdentity {
	claims := tokens.IDTokenClaims
	profile, email := claims.UserInfoProfile, claims.UserInfoEmail
	if displayName(profile) == "" && email.Email == "" && party.UserinfoEndpoint() != "" && tokens.AccessToken != "" {
		// Best effort: without it the account just has no display name.
		info, err := rp.Userinfo[*oidc.UserInfo](ctx, tokens.AccessToken, tokens.TokenType, claims.Subject, party)
		if err != nil {
			h.logger.WarnContext(ctx, "oidc: userinfo failed; signing in without a display name", "provider", p.cfg.Name, "error", err.Error())
		} else {
			profile, email = info.UserInfoProfile, info.UserInfoEmail
		}
	}
	id := auth.ExternalIdentity{
		Provider: p.cfg.Name,
		Issuer:   claims.Issuer,
		Subject:  claims.Subject,
		Name:     displayName(profile),
	}
	if bool(email.EmailVerified) {
		id.Email = email.Email
	}
	return id
}

// displayName picks the best name a profile offers.
func displayName(p oidc.UserInfoProfile) string {
	if n := strings.TrimSpace(p.Name); n != "" {
		return n
	}
	if n := strings.TrimSpace(p.GivenName + " " + p.FamilyName); n != "" {
		return n
	}
	if n := strings.TrimSpace(p.PreferredUsername); n != "" {
		return n
	}
	return strings.TrimSpace(p.Nickname)
}

// signInRefusal maps an error of SignInExternal to a status and a message
// for the browser: a fault's public message with its class's status (the
// one table, fault.Classes), or a generic 500 for anything else.
func signInRefusal(err error) (int, string) {
	fe, ok := errors.AsType[*fault.Error](err)
	if !ok {
		return http.StatusInternalServerError, msgInternal
	}
	class, _ := fault.Classify(err)
	if class.HTTP == http.StatusInternalServerError {
		// A fault of no known kind still carries a message for people.
		class.HTTP = http.StatusBadRequest
	}
	return class.HTTP, msgNotSignedIn + " " + sentence(fe.Message)
}

// refuse answers a failed sign-in with status and msg, and logs why.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, p *provider, status int, msg, reason string, err error) {
	attrs := []any{"provider", p.cfg.Name, "status", status, "reason", reason}
	if err != nil {
		attrs = append(attrs, "error", err.Error())
	}
	h.logger.WarnContext(r.Context(), "oidc: sign-in refused", attrs...)
	writeText(w, status, msg)
}

// clientOf describes where a callback comes from, for the session record.
func clientOf(r *http.Request) auth.Client {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	return auth.Client{SourceAddress: host, UserAgent: r.UserAgent()}
}

// isTransport reports whether err is a failure to reach the provider rather
// than an answer from it.
func isTransport(err error) bool {
	var netErr net.Error
	return errors.As(err, &netErr) || errors.Is(err, context.DeadlineExceeded)
}

// writeText answers with a short plain-text message.
func writeText(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(msg + "\n")) // #nosec G705 -- text/plain with nosniff, and msg is berth's own wording
}

// noStore keeps sign-in responses, which carry one-time cookies, out of
// caches.
func noStore(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
}

// clip shortens a value that comes from outside before it is logged.
func clip(s string) string {
	if len(s) > maxLoggedDetail {
		return s[:maxLoggedDetail] + "…"
	}
	return s
}

// sentence capitalises msg and ends it with a full stop.
func sentence(msg string) string {
	msg = strings.TrimSpace(msg)
	if msg == "" {
		return ""
	}
	msg = strings.ToUpper(msg[:1]) + msg[1:]
	if !strings.HasSuffix(msg, ".") {
		msg += "."
	}
	return msg
}
