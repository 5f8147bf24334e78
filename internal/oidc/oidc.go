// Package oidc signs people in to berth through OpenID Connect providers.
// It is the relying party of the authorization code flow with PKCE, state
// and nonce, serving GET /auth/oidc/{provider}/login and
// GET /auth/oidc/{provider}/callback: once a provider has vouched for
// someone (an ID token whose signature, issuer, audience, expiry and nonce
// check out), it hands the identity to the sign-in seam of internal/auth,
// sets the browser session cookie and sends the browser back where it
// started. A sign-in started by the CLI (berth login --oidc, with
// cli_redirect) ends instead at the CLI's loopback address with a one-time
// code that AuthService.ExchangeLoginCode turns into tokens.
//
// The protocol work is github.com/zitadel/oidc/v3 (pkg/client/rp for
// discovery, the code exchange and ID token verification); the flow's
// secrets travel in a cookie sealed with gorilla/securecookie (see
// flow.go).
package oidc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/berthhq/berth/internal/auth"
	"github.com/berthhq/berth/internal/config"
)

// SignIn is what the callback needs from internal/auth: turn an identity a
// provider vouched for into a browser session, linking or creating the
// account by issuer and subject.
type SignIn interface {
	SignInExternal(ctx context.Context, id auth.ExternalIdentity, client auth.Client) (*auth.BrowserSession, error)
	// SignInExternalCLI does the same for a command-line sign-in, but
	// issues a one-time code bound to the CLI's PKCE challenge instead of
	// a session.
	SignInExternalCLI(ctx context.Context, id auth.ExternalIdentity, challenge string) (*auth.LoginCode, error)
}

// Config is what New needs.
type Config struct {
	// PublicURL is the URL browsers reach berth at (config.Config.PublicURL):
	// redirect URIs, login URLs and cookie paths are built from it.
	PublicURL string
	// Providers are the configured providers (config.Config.OIDC).
	Providers []config.OIDCProvider
	// SecureCookies marks the flow and session cookies Secure.
	SecureCookies bool
	// HTTPClient makes the calls to providers (discovery, token, keys,
	// userinfo). Nil means a client with a 10s timeout.
	HTTPClient *http.Client
	// Logger receives one line per refused sign-in, with the reason, and
	// the outcome of discovery. Nil discards.
	Logger *slog.Logger
}

// Provider is a configured provider as a login page lists it.
type Provider struct {
	// Name is the provider's name in URLs, such as "google".
	Name string
	// DisplayName is the text for its button, such as "Google".
	DisplayName string
	// LoginURL is the absolute URL that starts a sign-in with it; an
	// optional return_to query parameter (a path on this site) says where
	// the browser lands afterwards.
	LoginURL string
}

// startupDiscoveryTimeout bounds how long New waits for the providers'
// discovery documents; a provider that does not answer in time is retried
// on its next login.
const startupDiscoveryTimeout = 5 * time.Second

// Handler serves /auth/oidc/{provider}/login and /callback.
type Handler struct {
	secure    bool
	logger    *slog.Logger
	signIn    SignIn
	providers map[string]*provider
	list      []Provider
	used      *usedStates
	mux       *http.ServeMux
}

// New returns the handler for cfg's providers. It fetches every provider's
// discovery document (in parallel, for at most 5s): a provider that cannot
// be reached is logged and retried on its next login, so a provider that
// is down never stops berth from starting. Discovery that succeeds is kept
// for the life of the process; the provider's signing keys are refetched
// when a token names a key not seen before.
func New(ctx context.Context, cfg Config, signIn SignIn) (*Handler, error) {
	if signIn == nil {
		return nil, errors.New("oidc: no sign-in service")
	}
	public, err := url.Parse(cfg.PublicURL)
	if len(cfg.Providers) > 0 && (err != nil || public.Scheme == "" || public.Host == "") {
		return nil, fmt.Errorf("oidc: public URL %q is not an absolute URL", cfg.PublicURL)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	client := cfg.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	h := &Handler{
		secure:    cfg.SecureCookies,
		logger:    logger,
		signIn:    signIn,
		providers: map[string]*provider{},
		used:      newUsedStates(),
		mux:       http.NewServeMux(),
	}
	for _, pc := range cfg.Providers {
		if _, dup := h.providers[pc.Name]; dup {
			return nil, fmt.Errorf("oidc: provider %q configured twice", pc.Name)
		}
		p := newProvider(pc, cfg.PublicURL, public.EscapedPath(), cfg.SecureCookies, client)
		h.providers[pc.Name] = p
		h.list = append(h.list, Provider{Name: pc.Name, DisplayName: pc.DisplayName, LoginURL: p.loginURL})
	}
	h.mux.HandleFunc("GET /auth/oidc/{provider}/login", h.login)
	h.mux.HandleFunc("GET /auth/oidc/{provider}/callback", h.callback)

	ctx, cancel := context.WithTimeout(ctx, startupDiscoveryTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, p := range h.providers {
		wg.Go(func() {
			if _, err := p.relyingParty(ctx); err != nil {
				logger.WarnContext(ctx, "oidc: provider unreachable at start; berth runs without it and retries discovery on its next login",
					"provider", p.cfg.Name, "issuer", p.cfg.Issuer, "error", err.Error())
				return
			}
			logger.InfoContext(ctx, "oidc: provider ready", "provider", p.cfg.Name, "issuer", p.cfg.Issuer, "redirect_uri", p.redirectURI)
		})
	}
	wg.Wait()
	return h, nil
}

// ServeHTTP serves the login and callback endpoints of every provider;
// mount it on /auth/oidc/.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mux.ServeHTTP(w, r)
}

// Providers lists the configured providers, sorted by name, for
// ListAuthProviders.
func (h *Handler) Providers() []Provider {
	return append([]Provider(nil), h.list...)
}

// provider looks up the request's provider, answering 404 when there is
// none by that name.
func (h *Handler) provider(w http.ResponseWriter, r *http.Request) *provider {
	p := h.providers[r.PathValue("provider")]
	if p == nil {
		writeText(w, http.StatusNotFound, "There is no sign-in provider by that name.")
	}
	return p
}
