package oidc_test

import (
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
)

// The example provider's test users (storage.NewUserStore): one whose
// username is fixed, one whose username names the issuer's host.
const (
	userPassword = "verysecure"
	user2        = "test-user2"
	user2Subject = "id2"
	user2Name    = "Test User2"
	user2Email   = "test-user2@zitadel.ch"
	user1Subject = "id1"
)

// user1 returns the username of the example provider's first test user.
func user1() string { return "test-user@127.0.0.1" }

// provider is a real OpenID provider, zitadel's example OP with its
// in-memory storage, serving on 127.0.0.1. In front of it sits a thin
// layer the tests steer: it can answer 503 as if the provider were down,
// translate client ids (to make the provider issue tokens for another
// client than the one berth is configured with), and records what berth
// sent to the authorization and token endpoints.
type provider struct {
	Issuer string

	mu sync.Mutex
	// down makes every request fail with 503.
	down bool
	// clientAs maps a client id berth sends to the client id the provider
	// sees, on the authorization and token endpoints.
	clientAs map[string]string
	// authorize are the query parameters of each authorization request.
	authorize []url.Values
	// token are the form parameters of each token request.
	token []url.Values
}

// client is a client to register at the provider.
type client struct {
	ID, Secret, RedirectURI string
}

// startProvider serves the example provider on ln, with clients
// registered, until the test ends.
func startProvider(t *testing.T, ln net.Listener, clients ...client) *provider {
	t.Helper()
	p := &provider{Issuer: "http://" + ln.Addr().String(), clientAs: map[string]string{}}
	registered := map[string]*storage.Client{}
	for _, c := range clients {
		registered[c.ID] = storage.WebClient(c.ID, c.Secret, c.RedirectURI)
	}
	store := storage.NewStorageWithClients(storage.NewUserStore(p.Issuer), registered)
	// A nil logger keeps SetupServer from replacing the process's default.
	router := exampleop.SetupServer(p.Issuer, store, nil, false)
	srv := &http.Server{Handler: p.wrap(router), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	// Close, not Shutdown: berth's pooled connections to the provider stay
	// open after berth stops, and nothing in flight needs to finish.
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("provider close: %v", err)
		}
	})
	return p
}

// setDown makes the provider answer every request with 503, or not.
func (p *provider) setDown(down bool) {
	p.mu.Lock()
	p.down = down
	p.mu.Unlock()
}

// seeClientAs makes the provider see client id from as client id as.
func (p *provider) seeClientAs(from, as string) {
	p.mu.Lock()
	p.clientAs[from] = as
	p.mu.Unlock()
}

// requests returns copies of the authorization and token requests seen.
func (p *provider) requests() (authorize, token []url.Values) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]url.Values(nil), p.authorize...), append([]url.Values(nil), p.token...)
}

func (p *provider) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		down := p.down
		clientAs := map[string]string{}
		for k, v := range p.clientAs {
			clientAs[k] = v
		}
		p.mu.Unlock()
		if down {
			http.Error(w, "provider down for the test", http.StatusServiceUnavailable)
			return
		}
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/auth":
			q := r.URL.Query()
			p.record(&p.authorize, q)
			if as, ok := clientAs[q.Get("client_id")]; ok {
				q.Set("client_id", as)
				r.URL.RawQuery = q.Encode()
			}
		case r.Method == http.MethodPost && r.URL.Path == "/oauth/token":
			if err := r.ParseForm(); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			form := r.PostForm
			p.record(&p.token, form)
			if id, secret, ok := r.BasicAuth(); ok {
				id, _ = url.QueryUnescape(id)
				secret, _ = url.QueryUnescape(secret)
				if as, ok := clientAs[id]; ok {
					r.SetBasicAuth(url.QueryEscape(as), url.QueryEscape(secret))
				}
			}
			if as, ok := clientAs[form.Get("client_id")]; ok {
				form.Set("client_id", as)
			}
			body := form.Encode()
			r.Body = http.NoBody
			if body != "" {
				r.Body = readCloser{strings.NewReader(body)}
			}
			r.ContentLength = int64(len(body))
			r.Header.Set("Content-Length", strconv.Itoa(len(body)))
			r.Form, r.PostForm = nil, nil
		}
		next.ServeHTTP(w, r)
	})
}

func (p *provider) record(to *[]url.Values, v url.Values) {
	p.mu.Lock()
	*to = append(*to, cloneValues(v))
	p.mu.Unlock()
}

func cloneValues(v url.Values) url.Values {
	c := url.Values{}
	for k, vs := range v {
		c[k] = append([]string(nil), vs...)
	}
	return c
}

type readCloser struct{ *strings.Reader }

func (readCloser) Close() error { return nil }
