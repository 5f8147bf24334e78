package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"

	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
	"github.com/berthhq/berth/internal/gen/berth/v1/berthv1connect"
)

// defaultServer is where a fresh install looks: berth serve's default --addr.
const defaultServer = "http://127.0.0.1:8080"

// refreshMargin renews an access token this long before it expires, so a
// call never leaves with a token that dies on the way.
const refreshMargin = 30 * time.Second

// maxReplayBody is the largest unary request kept in memory so it can be
// sent again after a refresh (the server's default body limit).
const maxReplayBody = 4 << 20

// clients are the generated Connect clients of every service, on one server.
type clients struct {
	server    string
	auth      berthv1connect.AuthServiceClient
	workspace berthv1connect.WorkspaceServiceClient
	task      berthv1connect.TaskServiceClient
	stats     berthv1connect.StatsServiceClient
	admin     berthv1connect.AdminServiceClient
	tokens    *tokenSource
}

// normalizeServer checks a server URL and drops a trailing slash, so one
// server has one key in the credentials file.
func normalizeServer(raw string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", usageError{fmt.Errorf("server %q: want an http(s) URL such as %s", raw, defaultServer)}
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", usageError{fmt.Errorf("server %q: no user, query or fragment allowed", raw)}
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// newClients builds the clients for server over the Connect protocol on
// HTTP/1.1 (binary protobuf), authenticated by tokens.
func newClients(server string, base *http.Client, tokens *tokenSource) *clients {
	httpc := &http.Client{Transport: &authTransport{base: base.Transport, tokens: tokens}}
	c := connect.NewClient(connecthttp.NewTransport(httpc, server))
	return &clients{
		server:    server,
		auth:      berthv1connect.NewAuthServiceClient(c),
		workspace: berthv1connect.NewWorkspaceServiceClient(c),
		task:      berthv1connect.NewTaskServiceClient(c),
		stats:     berthv1connect.NewStatsServiceClient(c),
		admin:     berthv1connect.NewAdminServiceClient(c),
		tokens:    tokens,
	}
}

// tokenSource hands out the bearer token for calls: BERTH_TOKEN as is, or
// the stored access token, refreshed (rotating the refresh token, written
// back at once) when it is about to expire or the server refused it.
type tokenSource struct {
	static string // BERTH_TOKEN: an API key or access token, never refreshed
	server string
	store  credentialStore
	auth   berthv1connect.AuthServiceClient // unauthenticated, for RefreshToken
	now    func() time.Time

	mu    sync.Mutex
	creds *Credentials // nil: not logged in
}

// errNotLoggedIn is returned when a command needs credentials and has none.
var errNotLoggedIn = errors.New("not logged in: run `berth login` (or set BERTH_TOKEN)")

// canRefresh says whether a refused token can be replaced.
func (s *tokenSource) canRefresh() bool {
	if s == nil || s.static != "" {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.creds != nil && s.creds.RefreshToken != ""
}

// token returns the bearer token to send; "" when there is none (the call
// goes out anonymous and the server says what it needs). force renews it
// even when it has not expired, after the server refused it; refused is
// the token that was refused ("" when unknown), so that of two calls
// refused at once only the first refreshes.
func (s *tokenSource) token(ctx context.Context, force bool, refused string) (string, error) {
	if s == nil {
		return "", nil
	}
	if s.static != "" {
		return s.static, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.creds == nil {
		return "", nil
	}
	stale := s.now().Add(refreshMargin).After(s.creds.Expiry)
	if force && refused != "" && s.creds.AccessToken != refused {
		return s.creds.AccessToken, nil // another call refreshed already
	}
	if !stale && !force {
		return s.creds.AccessToken, nil
	}
	if s.creds.RefreshToken == "" {
		return s.creds.AccessToken, nil
	}
	res, err := s.auth.RefreshToken(ctx, &berthv1.RefreshTokenRequest{RefreshToken: s.creds.RefreshToken})
	if err != nil {
		if connect.CodeOf(err) == connect.CodeUnauthenticated {
			return "", fmt.Errorf("your session on %s has ended: run `berth login` again", s.server)
		}
		return "", fmt.Errorf("refreshing the access token: %w", err)
	}
	next := credentialsFromTokens(s.creds.Email, res.GetTokens())
	if err := s.store.update(func(f *credentialsFile) { f.Servers[s.server] = next }); err != nil {
		return "", err
	}
	s.creds = next
	return next.AccessToken, nil
}

// credentialsFromTokens turns a Login or RefreshToken answer into what is stored.
func credentialsFromTokens(email string, t *berthv1.Tokens) *Credentials {
	return &Credentials{
		Email:        email,
		AccessToken:  t.GetAccessToken(),
		RefreshToken: t.GetRefreshToken(),
		Expiry:       t.GetAccessTokenExpiresAt().AsTime(),
	}
}

// authTransport adds the bearer token to every request and, when the
// server answers a unary call with 401, refreshes the token and sends the
// call once more. Streams are not replayed here: the follow loop reconnects
// them itself, asking for a fresh token.
type authTransport struct {
	base   http.RoundTripper
	tokens *tokenSource
}

func (t *authTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	tok, err := t.tokens.token(ctx, false, "")
	if err != nil {
		if req.Body != nil {
			_ = req.Body.Close() // a RoundTripper must close the body, even on error
		}
		return nil, err
	}
	replay := t.tokens.canRefresh() && req.Body != nil && !isStream(req) &&
		req.ContentLength >= 0 && req.ContentLength <= maxReplayBody
	var body []byte
	if replay {
		body, err = io.ReadAll(io.LimitReader(req.Body, maxReplayBody+1))
		_ = req.Body.Close() // read in full; a close error changes nothing
		if err != nil {
			return nil, err
		}
	}
	send := func(tok string) (*http.Response, error) {
		r := req.Clone(ctx)
		if tok != "" {
			r.Header.Set("Authorization", "Bearer "+tok)
		}
		if replay {
			r.Body = io.NopCloser(bytes.NewReader(body))
			r.ContentLength = int64(len(body))
		}
		return t.base.RoundTrip(r)
	}
	res, err := send(tok)
	if err != nil || res.StatusCode != http.StatusUnauthorized || !replay {
		return res, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10)) // drained so the connection is reused
	_ = res.Body.Close()
	fresh, err := t.tokens.token(ctx, true, tok)
	if err != nil {
		return nil, err
	}
	return send(fresh)
}

// isStream says whether req is a Connect streaming call (enveloped content
// types), whose body is a pipe that cannot be read twice.
func isStream(req *http.Request) bool {
	return strings.HasPrefix(req.Header.Get("Content-Type"), "application/connect+")
}
