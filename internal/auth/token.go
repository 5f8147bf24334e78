package auth

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/berthhq/berth/internal/access"
	"github.com/berthhq/berth/internal/store"
)

// accessClaims are the claims of an access token.
type accessClaims struct {
	jwt.RegisteredClaims
	// SessionID ("sid") names the session the token belongs to.
	SessionID string `json:"sid"`
	// Role is the account's global role when the token was issued.
	Role store.Role `json:"role"`
}

// TokenIssuer signs and verifies access tokens: EdDSA (Ed25519) only, with
// the key id in the header and issuer and audience checked.
type TokenIssuer struct {
	key      *SigningKey
	issuer   string
	audience string
	ttl      time.Duration
	now      func() time.Time
	parser   *jwt.Parser
	verified *verifiedCache
}

// NewTokenIssuer returns a TokenIssuer. now is the clock (time.Now in
// production).
func NewTokenIssuer(key *SigningKey, issuer, audience string, ttl time.Duration, now func() time.Time) *TokenIssuer {
	return &TokenIssuer{
		key:      key,
		issuer:   issuer,
		audience: audience,
		ttl:      ttl,
		now:      now,
		parser: jwt.NewParser(
			jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}),
			jwt.WithIssuer(issuer),
			jwt.WithAudience(audience),
			jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(),
			jwt.WithLeeway(5*time.Second),
			jwt.WithTimeFunc(now),
		),
		verified: newVerifiedCache(verifiedCacheSize),
	}
}

// Issue signs an access token for the user in the session and returns it
// with its expiry.
func (t *TokenIssuer) Issue(userID, sessionID string, role store.Role) (string, time.Time, error) {
	now := t.now().Truncate(time.Second)
	expires := now.Add(t.ttl)
	claims := accessClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    t.issuer,
			Subject:   userID,
			Audience:  jwt.ClaimStrings{t.audience},
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(expires),
			ID:        uuid.NewString(),
		},
		SessionID: sessionID,
		Role:      role,
	}
	token := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	token.Header["kid"] = t.key.ID
	signed, err := token.SignedString(t.key.private)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("auth: sign access token: %w", err)
	}
	return signed, expires, nil
}

// errBadToken is returned for every access token that does not verify; the
// reason is kept for logs only.
var errBadToken = errors.New("auth: invalid access token")

// Verify checks an access token's algorithm, key id, signature, issuer,
// audience and validity window, and returns the principal it names.
//
// A token that verified is remembered until it expires, so a client that
// sends the same token on every call pays for the signature check once; the
// cache is bounded and keyed by the whole token, so only its holder can hit
// it.
func (t *TokenIssuer) Verify(raw string) (access.Principal, error) {
	now := t.now()
	if p, ok := t.verified.get(raw, now); ok {
		return p, nil
	}
	var claims accessClaims
	_, err := t.parser.ParseWithClaims(raw, &claims, func(token *jwt.Token) (any, error) {
		if kid, _ := token.Header["kid"].(string); kid != t.key.ID {
			return nil, fmt.Errorf("unknown key id %q", kid)
		}
		return t.key.public, nil
	})
	if err != nil {
		return access.Principal{}, fmt.Errorf("%w: %w", errBadToken, err)
	}
	if claims.Subject == "" || claims.SessionID == "" {
		return access.Principal{}, fmt.Errorf("%w: missing sub or sid", errBadToken)
	}
	switch claims.Role {
	case store.RoleAdmin, store.RoleMember, store.RoleViewer:
	default:
		return access.Principal{}, fmt.Errorf("%w: unknown role %q", errBadToken, claims.Role)
	}
	p := access.Principal{UserID: claims.Subject, Role: claims.Role, SessionID: claims.SessionID}
	t.verified.put(raw, p, claims.NotBefore.Time, claims.ExpiresAt.Time)
	return p, nil
}

// verifiedCacheSize bounds the verified-token cache: about 1 KiB a token.
const verifiedCacheSize = 10_000

// verifiedCache remembers verified access tokens until they expire. When
// full, the oldest entry makes room (FIFO: a busy client's token is simply
// verified again).
type verifiedCache struct {
	mu      sync.Mutex
	entries map[string]verifiedEntry
	order   []string // insertion order, oldest first
	max     int
}

type verifiedEntry struct {
	p         access.Principal
	notBefore time.Time
	expires   time.Time
}

func newVerifiedCache(max int) *verifiedCache {
	return &verifiedCache{entries: make(map[string]verifiedEntry), max: max}
}

func (c *verifiedCache) get(raw string, now time.Time) (access.Principal, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[raw]
	// The parser allows 5s of leeway; the cache allows none, so it never
	// accepts what the parser would refuse.
	if !ok || now.Before(e.notBefore) || !now.Before(e.expires) {
		return access.Principal{}, false
	}
	return e.p, true
}

func (c *verifiedCache) put(raw string, p access.Principal, notBefore, expires time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[raw]; ok {
		return
	}
	for len(c.order) >= c.max {
		delete(c.entries, c.order[0])
		c.order = c.order[1:]
	}
	c.entries[raw] = verifiedEntry{p: p, notBefore: notBefore, expires: expires}
	c.order = append(c.order, raw)
}
