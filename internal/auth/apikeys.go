package auth

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
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

// errViewerKeyManages refuses key management to a viewer key: a viewer
// key is for reading, and managing keys is a write.
var errViewerKeyManages = fault.New(fault.ErrPermissionDenied,
	"a viewer API key cannot create, list or revoke API keys; sign in, or use a member or admin key created with manage_keys")

// errKeyCannotManage refuses key management to a key created without
// manage_keys.
var errKeyCannotManage = fault.New(fault.ErrPermissionDenied,
	"this API key was created without manage_keys, so it cannot create, list or revoke API keys; sign in, or use a key created with manage_keys")

// keyManager returns the API key a principal acts through, after checking
// that it may manage keys: nil for a signed-in session (which always may),
// errViewerKeyManages or errKeyCannotManage for a key that may not. The key
// is read from the store rather than the cache, so a scope is never older
// than the call.
func (s *Service) keyManager(ctx context.Context, p access.Principal) (*store.APIKey, error) {
	if p.APIKeyID == "" {
		return nil, nil
	}
	if p.Role == store.RoleViewer {
		return nil, errViewerKeyManages
	}
	k, err := s.store.FindAPIKey(ctx, p.UserID, p.APIKeyID)
	if errors.Is(err, fault.ErrNotFound) {
		return nil, errBadAPIKey
	}
	if err != nil {
		return nil, err
	}
	now := s.now()
	if k.RevokedAt != nil || k.AncestorRevoked || k.ExpiresAt != nil && !now.Before(*k.ExpiresAt) {
		return nil, errBadAPIKey
	}
	if !k.ManageKeys {
		return nil, errKeyCannotManage
	}
	return k, nil
}

// NewAPIKey is what CreateAPIKey is asked for.
type NewAPIKey struct {
	// Name labels the key.
	Name string
	// Role is the key's role; empty means the principal's own.
	Role store.Role
	// ExpiresAt is when the key stops working; nil means never, unless the
	// principal is a key that expires (see CreateAPIKey).
	ExpiresAt *time.Time
	// ManageKeys lets the key create, list and revoke keys.
	ManageKeys bool
}

// CreateAPIKey creates a key for the principal's account, with a role no
// higher than the principal's own (defaulting to it), and returns the key —
// the only time it exists outside the caller's hands — with its record.
//
// A principal that is an API key must have been created with manage_keys
// and not be a viewer key. The key it creates records it as its parent: it
// expires no later than the parent (a later or missing expiry is lowered to
// the parent's), and it ends when the parent is revoked.
func (s *Service) CreateAPIKey(ctx context.Context, p access.Principal, req NewAPIKey) (string, *store.APIKey, error) {
	parent, err := s.keyManager(ctx, p)
	if err != nil {
		return "", nil, err
	}
	role := req.Role
	if role == "" {
		role = p.Role
	}
	if access.Rank(role) > access.Rank(p.Role) {
		return "", nil, fault.New(fault.ErrPermissionDenied, "a key's role (%s) cannot be higher than your own (%s)", role, p.Role)
	}
	if req.ManageKeys && role == store.RoleViewer {
		return "", nil, fault.Invalid("manage_keys", "a viewer key can never manage keys; give the key the member or admin role, or leave manage_keys unset")
	}
	name := strings.TrimSpace(req.Name)
	if name == "" {
		return "", nil, fault.Invalid("name", "must not be blank")
	}
	now := s.now().UTC()
	expires := req.ExpiresAt
	if expires != nil && !expires.After(now) {
		return "", nil, fault.Invalid("expires_at", "must be in the future")
	}
	parentID := ""
	if parent != nil {
		parentID = parent.ID
		if parent.ExpiresAt != nil && (expires == nil || expires.After(*parent.ExpiresAt)) {
			expires = parent.ExpiresAt // never outlive the key that made it
		}
	}
	buf := make([]byte, 32)
	_, _ = rand.Read(buf)
	key := apiKeyPrefix + base64.RawURLEncoding.EncodeToString(buf)
	prefix, _ := apiKeyLookupPrefix(key)
	k := &store.APIKey{
		ID:         uuid.NewString(),
		UserID:     p.UserID,
		Name:       name,
		Prefix:     prefix,
		KeyHash:    hashToken(key),
		Role:       role,
		CreatedAt:  now,
		ExpiresAt:  expires,
		ManageKeys: req.ManageKeys,
		ParentID:   parentID,
	}
	if err := s.store.CreateAPIKey(ctx, k); err != nil {
		return "", nil, err
	}
	s.audit.Record(ctx, audit.Event{Action: audit.ActionAPIKeyCreate, TargetType: "api_key", TargetID: k.ID,
		Details: map[string]string{"name": name, "role": string(role), "prefix": prefix,
			"manage_keys": boolString(req.ManageKeys), "parent_id": parentID}})
	return key, k, nil
}

// ListAPIKeys lists the principal's keys, newest first. A key principal
// needs manage_keys, as for CreateAPIKey.
func (s *Service) ListAPIKeys(ctx context.Context, p access.Principal) ([]*store.APIKey, error) {
	if _, err := s.keyManager(ctx, p); err != nil {
		return nil, err
	}
	return s.store.ListAPIKeys(ctx, p.UserID)
}

// RevokeAPIKey revokes one of the principal's keys and every key it
// created, directly or through others; they stop working on their next
// request. A key principal needs manage_keys, as for CreateAPIKey.
func (s *Service) RevokeAPIKey(ctx context.Context, p access.Principal, id string) error {
	if _, err := s.keyManager(ctx, p); err != nil {
		return err
	}
	keys, err := s.store.RevokeAPIKey(ctx, p.UserID, id, s.now().UTC())
	if err != nil {
		return err
	}
	prefixes := make([]string, 0, len(keys))
	for _, k := range keys {
		s.principals.forget("k:" + k.Prefix)
		prefixes = append(prefixes, k.Prefix)
	}
	if s.shared != nil {
		s.shared.keys.Invalidate(ctx, prefixes...)
	}
	for _, k := range keys {
		s.audit.Record(ctx, audit.Event{Action: audit.ActionAPIKeyRevoke, TargetType: "api_key", TargetID: k.ID,
			Details: map[string]string{"requested": boolString(k.ID == id)}})
	}
	return nil
}
