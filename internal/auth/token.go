package auth

import (
	"errors"
	"fmt"
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
func (t *TokenIssuer) Verify(raw string) (access.Principal, error) {
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
	return access.Principal{UserID: claims.Subject, Role: claims.Role, SessionID: claims.SessionID}, nil
}
