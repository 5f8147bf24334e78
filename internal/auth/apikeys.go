package auth

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/berthhq/berth/internal/access"
	"github.com/berthhq/berth/internal/audit"
	"github.com/berthhq/berth/internal/fault"
	"github.com/berthhq/berth/internal/store"
)

// apiKeyPrefix starts every API key, so keys are recognisable (in a
// bearer header, and to secret scanners).
const apiKeyPrefix = "berth_"

// apiKeyLookupLen is how much of the key's random part is stored in clear as
// its lookup prefix; the rest is only ever stored hashed.
const apiKeyLookupLen = 8

// apiKeyLookupPrefix returns the stored lookup prefix of a key, or false if
// the string cannot be a berth API key.
func apiKeyLookupPrefix(key string) (string, bool) {
	random, ok := strings.CutPrefix(key, apiKeyPrefix)
	if !ok || len(random) != 43 { // 32 bytes, unpadded base64url
		return "", false
	}
	return apiKeyPrefix + random[:apiKeyLookupLen], true
}

// CreateAPIKey creates a key for the principal's account, with a role no
// higher than the principal's own (defaulting to it), and returns the key —
// the only time it exists outside the caller's hands — with its record.
func (s *Service) CreateAPIKey(ctx context.Context, p access.Principal, name string, role store.Role, expires *time.Time) (string, *store.APIKey, error) {
	if role == "" {
		role = p.Role
	}
	if access.Rank(role) > access.Rank(p.Role) {
		return "", nil, fault.New(fault.ErrPermissionDenied, "a key's role (%s) cannot be higher than your own (%s)", role, p.Role)
	}
	name = strings.TrimSpace(name)
	if name == "" {
		return "", nil, fault.Invalid("name", "must not be blank")
	}
	now := s.now().UTC()
	if expires != nil && !expires.After(now) {
		return "", nil, fault.Invalid("expires_at", "must be in the future")
	}
	buf := make([]byte, 32)
	_, _ = rand.Read(buf)
	key := apiKeyPrefix + base64.RawURLEncoding.EncodeToString(buf)
	prefix, _ := apiKeyLookupPrefix(key)
	k := &store.APIKey{
		ID:        uuid.NewString(),
		UserID:    p.UserID,
		Name:      name,
		Prefix:    prefix,
		KeyHash:   hashToken(key),
		Role:      role,
		CreatedAt: now,
		ExpiresAt: expires,
	}
	if err := s.store.CreateAPIKey(ctx, k); err != nil {
		return "", nil, err
	}
	s.audit.Record(ctx, audit.Event{Action: audit.ActionAPIKeyCreate, TargetType: "api_key", TargetID: k.ID,
		Details: map[string]string{"name": name, "role": string(role), "prefix": prefix}})
	return key, k, nil
}

// ListAPIKeys lists the principal's keys, newest first.
func (s *Service) ListAPIKeys(ctx context.Context, p access.Principal) ([]*store.APIKey, error) {
	return s.store.ListAPIKeys(ctx, p.UserID)
}

// RevokeAPIKey revokes one of the principal's keys; it stops working on its
// next request.
func (s *Service) RevokeAPIKey(ctx context.Context, p access.Principal, id string) error {
	k, err := s.store.RevokeAPIKey(ctx, p.UserID, id, s.now().UTC())
	if err != nil {
		return err
	}
	s.principals.forget("k:" + k.Prefix)
	if s.shared != nil {
		s.shared.keys.Invalidate(ctx, k.Prefix)
	}
	s.audit.Record(ctx, audit.Event{Action: audit.ActionAPIKeyRevoke, TargetType: "api_key", TargetID: k.ID})
	return nil
}
