package auth

import (
	"context"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/berthhq/berth/internal/access"
	"github.com/berthhq/berth/internal/fault"
	"github.com/berthhq/berth/internal/store"
)

// Credentials are what a request presents; the server fills them from the
// Authorization and X-API-Key headers and the session cookie.
type Credentials struct {
	Authorization string // the whole header value, "Bearer …"
	APIKey        string // the X-API-Key header
	Cookie        string // the value of the SessionCookie cookie
}

// errNoCredentials says how to authenticate.
var errNoCredentials = fault.New(fault.ErrUnauthenticated,
	`this call needs credentials: send "Authorization: Bearer <access token or API key>" (get a token from AuthService.Login)`)

// errBadAccessToken is the one answer for access tokens that do not work,
// whatever the reason (logged as the cause).
func errBadAccessToken(cause error) error {
	return &fault.Error{Kind: fault.ErrUnauthenticated, Message: "access token is invalid, expired or revoked; refresh it or sign in again", Cause: cause}
}

var (
	errBadAPIKey  = fault.New(fault.ErrUnauthenticated, "API key is invalid, expired or revoked")
	errBadSession = fault.New(fault.ErrUnauthenticated, "browser session is invalid, expired or ended; sign in again")
)

// Authenticate turns a request's credentials into a principal. An
// Authorization header wins over X-API-Key, which wins over the cookie.
// Sessions, keys and accounts are checked on every request (through a short
// cache that revocation, disabling and role changes clear at once), so a
// logged-out session, a revoked key or a disabled account stops working on
// its next request, and role changes apply at once.
func (s *Service) Authenticate(ctx context.Context, c Credentials) (access.Principal, error) {
	switch {
	case c.Authorization != "":
		scheme, token, ok := strings.Cut(c.Authorization, " ")
		token = strings.TrimSpace(token)
		if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
			return access.Principal{}, errNoCredentials
		}
		if strings.HasPrefix(token, apiKeyPrefix) {
			return s.authenticateAPIKey(ctx, token)
		}
		return s.authenticateToken(ctx, token)
	case c.APIKey != "":
		return s.authenticateAPIKey(ctx, strings.TrimSpace(c.APIKey))
	case c.Cookie != "":
		return s.authenticateCookie(ctx, c.Cookie)
	}
	return access.Principal{}, errNoCredentials
}

func (s *Service) authenticateToken(ctx context.Context, token string) (access.Principal, error) {
	claims, err := s.tokens.Verify(token)
	if err != nil {
		return access.Principal{}, errBadAccessToken(err)
	}
	p, err := s.sessionPrincipal(ctx, "s:"+claims.SessionID, func() (*store.Session, error) {
		return s.findSession(ctx, claims.SessionID)
	})
	if err != nil {
		return access.Principal{}, err
	}
	if p.UserID != claims.UserID {
		return access.Principal{}, errBadAccessToken(errors.New("token subject is not the session's user"))
	}
	p.Method = access.MethodToken
	return p, nil
}

func (s *Service) authenticateCookie(ctx context.Context, cookie string) (access.Principal, error) {
	hash := hashToken(cookie)
	p, err := s.sessionPrincipal(ctx, "c:"+hex.EncodeToString(hash), func() (*store.Session, error) {
		sess, err := s.findSessionByCookie(ctx, hash)
		if errors.Is(err, fault.ErrNotFound) {
			return nil, errBadSession
		}
		return sess, err
	})
	if err != nil {
		if errors.Is(err, fault.ErrUnauthenticated) {
			return access.Principal{}, errBadSession
		}
		return access.Principal{}, err
	}
	p.Method = access.MethodCookie
	return p, nil
}

// sessionPrincipal checks that a session is live and its account enabled,
// through the principal cache.
func (s *Service) sessionPrincipal(ctx context.Context, key string, find func() (*store.Session, error)) (access.Principal, error) {
	now := s.now()
	if e, ok := s.cachedPrincipal(key, now); ok {
		if e.err != nil {
			return access.Principal{}, e.err
		}
		return e.p, nil
	}
	sess, err := find()
	if errors.Is(err, fault.ErrNotFound) {
		err = errBadAccessToken(err)
	}
	if err != nil {
		if errors.Is(err, fault.ErrUnauthenticated) {
			s.cachePrincipal(key, principalEntry{err: err}, now)
		}
		return access.Principal{}, err
	}
	p, err := s.livePrincipal(ctx, sess, now)
	if err != nil && !errors.Is(err, fault.ErrUnauthenticated) {
		return access.Principal{}, err
	}
	s.cachePrincipal(key, principalEntry{p: p, err: err, userID: sess.UserID}, now)
	return p, err
}

func (s *Service) livePrincipal(ctx context.Context, sess *store.Session, now time.Time) (access.Principal, error) {
	if sess.RevokedAt != nil || !now.Before(sess.ExpiresAt) {
		return access.Principal{}, errBadAccessToken(errors.New("session revoked or expired"))
	}
	u, err := s.findUser(ctx, sess.UserID)
	if err != nil {
		return access.Principal{}, err
	}
	if u.Disabled {
		return access.Principal{}, errBadAccessToken(errors.New("account disabled"))
	}
	return access.Principal{UserID: u.ID, Role: u.Role, SessionID: sess.ID}, nil
}

// authenticateAPIKey checks an API key. Guessing is limited by the
// server's failed-sign-in budget per source address, which every front
// spends on an Unauthenticated answer; a key is 256 random bits, so the
// budget is there against floods rather than against a lucky guess.
func (s *Service) authenticateAPIKey(ctx context.Context, key string) (access.Principal, error) {
	prefix, ok := apiKeyLookupPrefix(key)
	if !ok {
		return access.Principal{}, errBadAPIKey
	}
	now := s.now()
	hash := hashToken(key)
	e, ok := s.cachedPrincipal("k:"+prefix, now)
	if !ok {
		var err error
		e, err = s.loadAPIKey(ctx, prefix, now)
		if err != nil {
			return access.Principal{}, err
		}
		s.cachePrincipal("k:"+prefix, e, now)
	}
	if e.keyHash == nil || subtle.ConstantTimeCompare(hash, e.keyHash) != 1 {
		return access.Principal{}, errBadAPIKey
	}
	if e.err != nil {
		return access.Principal{}, e.err
	}
	if e.keyExpires != nil && !now.Before(*e.keyExpires) {
		return access.Principal{}, errBadAPIKey
	}
	return e.p, nil
}

// loadAPIKey reads a key and its account into a cache entry. An unknown
// prefix is an entry that matches no key.
func (s *Service) loadAPIKey(ctx context.Context, prefix string, now time.Time) (principalEntry, error) {
	// Loading from the store happens at most once per cache lifetime: a
	// cheap place to note that the key was used.
	k, err := s.findKey(ctx, prefix, func(k *store.APIKey) error {
		if k.RevokedAt != nil {
			return nil
		}
		return s.store.TouchAPIKey(ctx, k.ID, now.UTC())
	})
	if errors.Is(err, fault.ErrNotFound) {
		return principalEntry{}, nil
	}
	if err != nil {
		return principalEntry{}, err
	}
	e := principalEntry{keyHash: k.KeyHash, keyExpires: k.ExpiresAt, userID: k.UserID}
	if k.RevokedAt != nil || k.AncestorRevoked {
		e.err = errBadAPIKey
		return e, nil
	}
	u, err := s.findUser(ctx, k.UserID)
	if err != nil {
		return principalEntry{}, err
	}
	if u.Disabled {
		e.err = errBadAPIKey
		return e, nil
	}
	role := k.Role
	if access.Rank(u.Role) < access.Rank(role) {
		role = u.Role // a key never outranks its owner, even after a demotion
	}
	e.p = access.Principal{UserID: u.ID, Role: role, APIKeyID: k.ID, ManageKeys: k.ManageKeys, Method: access.MethodAPIKey}
	return e, nil
}

// cachedPrincipal looks key up in this instance's principal cache, which is
// used only without a shared cache: other instances' changes cannot reach
// it, while the shared cache's entries are invalidated everywhere.
func (s *Service) cachedPrincipal(key string, now time.Time) (principalEntry, bool) {
	if s.shared != nil {
		return principalEntry{}, false
	}
	return s.principals.get(key, now)
}

// cachePrincipal remembers an entry in this instance's principal cache,
// unless a shared cache is in use.
func (s *Service) cachePrincipal(key string, e principalEntry, now time.Time) {
	if s.shared == nil {
		s.principals.put(key, e, now)
	}
}

// principalTTL bounds how long another instance's revocation can go unseen
// here; revocations made through this instance apply at once.
const principalTTL = 15 * time.Second

// maxPrincipals bounds the cache; when full it starts over.
const maxPrincipals = 50_000

// principalCache remembers, briefly, who a session, cookie or API key acts
// as — or that it does not work.
type principalCache struct {
	mu      sync.Mutex
	entries map[string]principalEntry
}

type principalEntry struct {
	p          access.Principal
	err        error // set when the credential does not work
	userID     string
	keyHash    []byte     // API keys: the stored hash to compare against
	keyExpires *time.Time // API keys: when the key expires
	loaded     time.Time
}

func newPrincipalCache() *principalCache {
	return &principalCache{entries: make(map[string]principalEntry)}
}

func (c *principalCache) get(key string, now time.Time) (principalEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok || now.Sub(e.loaded) >= principalTTL {
		return principalEntry{}, false
	}
	return e, true
}

func (c *principalCache) put(key string, e principalEntry, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= maxPrincipals {
		clear(c.entries)
	}
	e.loaded = now
	c.entries[key] = e
}

func (c *principalCache) forget(key string) {
	c.mu.Lock()
	delete(c.entries, key)
	c.mu.Unlock()
}

// forgetUser drops every entry of one account (after it was disabled or
// its role changed).
func (c *principalCache) forgetUser(userID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.entries {
		if e.userID == userID || e.p.UserID == userID {
			delete(c.entries, k)
		}
	}
}

// ForgetUser makes the next request of userID's sessions and keys read the
// account afresh; call it after disabling an account or changing its role.
func (s *Service) ForgetUser(userID string) {
	s.principals.forgetUser(userID)
	if s.shared == nil {
		return
	}
	ctx := context.Background()
	s.shared.users.Invalidate(ctx, userID)
	// Disabling an account revokes its sessions in the store: every
	// instance's copy of them goes too. Should listing them fail, the
	// copies expire with the cache's TTL; the account's own record (just
	// invalidated) still refuses them while it is disabled.
	sessions, err := s.store.SessionKeys(ctx, userID)
	if err != nil {
		return
	}
	keys := make([]string, 0, 2*len(sessions))
	for _, sess := range sessions {
		keys = append(keys, "id:"+sess.ID)
		if sess.CookieHash != nil {
			keys = append(keys, "cookie:"+hex.EncodeToString(sess.CookieHash))
		}
	}
	s.shared.sessions.Invalidate(ctx, keys...)
}

// forgetSession drops a session from the cache, whichever way it is
// presented.
func (s *Service) forgetSession(sess *store.Session) {
	s.principals.forget("s:" + sess.ID)
	if sess.CookieHash != nil {
		s.principals.forget("c:" + hex.EncodeToString(sess.CookieHash))
	}
}
