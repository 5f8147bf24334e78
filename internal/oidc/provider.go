package oidc

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/zitadel/oidc/v3/pkg/client/rp"
	httphelper "github.com/zitadel/oidc/v3/pkg/http"

	"github.com/berthhq/berth/internal/config"
)

// discoveryTimeout bounds one attempt at fetching a discovery document.
const discoveryTimeout = 5 * time.Second

// provider is one configured provider and, once discovery has succeeded,
// its relying party.
type provider struct {
	cfg         config.OIDCProvider
	redirectURI string
	loginURL    string
	httpClient  *http.Client

	// The flow cookie's name, and the handler that seals it (see flow.go).
	cookieName string
	cookies    *httphelper.CookieHandler

	mu    sync.Mutex
	party rp.RelyingParty // nil until discovery succeeds
	// attempt is the discovery in progress, shared by the logins that wait
	// for it; nil when none runs.
	attempt *discovery
}

// discovery is one attempt at discovery; done closes when it ends.
type discovery struct {
	done  chan struct{}
	party rp.RelyingParty
	err   error
}

// newProvider prepares pc for a server at publicURL, whose path (as
// browsers see it) is publicPath. The flow cookie is sent only to the
// provider's own endpoints.
func newProvider(pc config.OIDCProvider, publicURL, publicPath string, secure bool, client *http.Client) *provider {
	return &provider{
		cfg:         pc,
		redirectURI: pc.RedirectURI(publicURL),
		loginURL:    publicURL + "/auth/oidc/" + pc.Name + "/login",
		httpClient:  client,
		cookieName:  flowCookieName(pc),
		cookies:     flowCookies(pc, publicPath+"/auth/oidc/"+pc.Name+"/", secure),
	}
}

// relyingParty returns the provider's relying party, running discovery
// first if it has not succeeded yet. Logins that arrive while an attempt
// runs wait for it rather than starting their own; a failed attempt is not
// remembered, so the next login tries again.
func (p *provider) relyingParty(ctx context.Context) (rp.RelyingParty, error) {
	p.mu.Lock()
	if p.party != nil {
		p.mu.Unlock()
		return p.party, nil
	}
	if d := p.attempt; d != nil {
		p.mu.Unlock()
		select {
		case <-d.done:
			return d.party, d.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	d := &discovery{done: make(chan struct{})}
	p.attempt = d
	p.mu.Unlock()

	// The attempt serves every waiter, so it does not end when this
	// caller's request does; it has its own time limit.
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), discoveryTimeout)
	defer cancel()
	d.party, d.err = rp.NewRelyingPartyOIDC(dctx, p.cfg.Issuer, p.cfg.ClientID, p.cfg.ClientSecret.Reveal(), p.redirectURI, p.cfg.Scopes,
		rp.WithHTTPClient(p.httpClient),
		// The nonce to expect is the one in this login's flow cookie,
		// carried to the verifier in the context (see withNonce).
		rp.WithVerifierOpts(rp.WithNonce(nonceFrom)),
		// Accept the algorithms the provider says it signs ID tokens with
		// (RS256 alone otherwise); "none" is never accepted.
		rp.WithSigningAlgsFromDiscovery(),
	)

	p.mu.Lock()
	if d.err == nil {
		p.party = d.party
	}
	p.attempt = nil
	p.mu.Unlock()
	close(d.done)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return d.party, d.err
}

type nonceKey struct{}

// withNonce returns ctx carrying the nonce the ID token must hold.
func withNonce(ctx context.Context, nonce string) context.Context {
	return context.WithValue(ctx, nonceKey{}, nonce)
}

// nonceFrom returns the nonce withNonce put in ctx. The callback always
// puts one there; were it missing, the verifier would compare the token's
// nonce with "" and pass a token that has none, so nonceFrom returns a
// value no provider issues instead.
func nonceFrom(ctx context.Context) string {
	if n, ok := ctx.Value(nonceKey{}).(string); ok && n != "" {
		return n
	}
	return "berth: no nonce in context"
}
