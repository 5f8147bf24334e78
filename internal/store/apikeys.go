package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/berthhq/berth/internal/fault"
)

// apiKeyColumns are the api_keys columns in scanAPIKey's order.
const apiKeyColumns = `id, user_id, name, prefix, key_hash, role, created_at, last_used_at, expires_at, revoked_at, manage_keys, parent_id` // #nosec G101 -- column names, not a credential

// ErrParentKeyRevoked is what CreateAPIKey says when the key creating the
// new one is revoked, or is not a key of the same account.
var ErrParentKeyRevoked = fault.New(fault.ErrUnauthenticated, "API key is invalid, expired or revoked")

// CreateAPIKey stores a new API key. The caller fills every field but
// AncestorRevoked; the optional times are usually nil. A prefix that is
// taken is a fault.ErrConflict (prefixes are random, so the caller may draw
// another); an owner that does not exist is fault.NotFound("user"). A key
// with a ParentID is stored only if that key belongs to the same account
// and is not revoked (checked by the INSERT itself), and is
// ErrParentKeyRevoked otherwise. k's times are set to their stored
// precision.
func (s *Store) CreateAPIKey(ctx context.Context, k *APIKey) error {
	res, err := s.conn().exec(ctx, `INSERT INTO api_keys (`+apiKeyColumns+`)
		SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?
		WHERE ? = '' OR EXISTS (SELECT 1 FROM api_keys p WHERE p.id = ? AND p.user_id = ? AND p.revoked_at IS NULL)`,
		k.ID, k.UserID, k.Name, k.Prefix, k.KeyHash, string(k.Role), micros(k.CreatedAt),
		nullMicros(k.LastUsedAt), nullMicros(k.ExpiresAt), nullMicros(k.RevokedAt), boolInt(k.ManageKeys), nullString(k.ParentID),
		k.ParentID, k.ParentID, k.UserID)
	switch {
	case s.d.isForeignKeyViolation(err):
		return fault.NotFound("user")
	case s.d.isUniqueViolation(err):
		return fault.New(fault.ErrConflict, "an API key with this prefix or id already exists")
	case err != nil:
		return fmt.Errorf("create API key: %w", err)
	}
	if n, err := rowsAffected(res); err != nil {
		return fmt.Errorf("create API key: %w", err)
	} else if n == 0 {
		return ErrParentKeyRevoked
	}
	k.CreatedAt = storedTime(k.CreatedAt)
	k.LastUsedAt = storedTimePtr(k.LastUsedAt)
	k.ExpiresAt = storedTimePtr(k.ExpiresAt)
	k.RevokedAt = storedTimePtr(k.RevokedAt)
	return nil
}

// ListAPIKeys returns the API keys of the account, newest first (ties by id),
// revoked and expired ones included. An account without keys, or one that
// does not exist, has an empty list.
func (s *Store) ListAPIKeys(ctx context.Context, userID string) ([]*APIKey, error) {
	rows, err := s.conn().query(ctx, `SELECT `+apiKeyColumns+` FROM api_keys WHERE user_id = ?
		ORDER BY created_at DESC, id DESC`, userID)
	if err != nil {
		return nil, fmt.Errorf("list API keys: %w", err)
	}
	defer rows.Close()
	keys := []*APIKey{}
	for rows.Next() {
		k, err := scanAPIKey(rows)
		if err != nil {
			return nil, fmt.Errorf("list API keys: %w", err)
		}
		keys = append(keys, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list API keys: %w", err)
	}
	return keys, nil
}

// FindAPIKeyByPrefix returns the API key with the given prefix, revoked or
// expired or not: the caller checks both, the hash, and AncestorRevoked,
// which it sets.
func (s *Store) FindAPIKeyByPrefix(ctx context.Context, prefix string) (*APIKey, error) {
	return s.findAPIKey(ctx, `prefix = ?`, prefix)
}

// FindAPIKey returns the API key with the given id of the given account,
// as FindAPIKeyByPrefix does. Another account's key is
// fault.NotFound("API key").
func (s *Store) FindAPIKey(ctx context.Context, userID, id string) (*APIKey, error) {
	return s.findAPIKey(ctx, `id = ? AND user_id = ?`, id, userID)
}

// findAPIKey reads the one key that matches where, and whether a key above
// it is revoked.
func (s *Store) findAPIKey(ctx context.Context, where string, args ...any) (*APIKey, error) {
	k, err := scanAPIKey(s.conn().queryRow(ctx, `SELECT `+apiKeyColumns+` FROM api_keys WHERE `+where, args...))
	if errors.Is(err, fault.ErrNotFound) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("find API key: %w", err)
	}
	if k.ParentID == "" {
		return k, nil
	}
	var revoked int64
	err = s.conn().queryRow(ctx, `WITH RECURSIVE chain (id, parent_id, revoked_at) AS (
			SELECT id, parent_id, revoked_at FROM api_keys WHERE id = ?
			UNION
			SELECT p.id, p.parent_id, p.revoked_at FROM api_keys p JOIN chain c ON p.id = c.parent_id
		)
		SELECT COUNT(*) FROM chain WHERE revoked_at IS NOT NULL`, k.ParentID).Scan(&revoked)
	if err != nil {
		return nil, fmt.Errorf("find API key: ancestors: %w", err)
	}
	k.AncestorRevoked = revoked > 0
	return k, nil
}

// RevokeAPIKey revokes the API key with the given id that belongs to the
// given account, at the given time, together with every key it created
// directly or through other keys, in one statement. It returns the keys as
// they now are, the named one first. Revoking a revoked key changes
// nothing: the first revocation time stays. Another account's key is
// fault.NotFound("API key"), exactly like one that does not exist, so key
// ids cannot be probed.
func (s *Store) RevokeAPIKey(ctx context.Context, userID, id string, at time.Time) ([]*APIKey, error) {
	rows, err := s.conn().query(ctx, `WITH RECURSIVE tree (id) AS (
			SELECT id FROM api_keys WHERE id = ? AND user_id = ?
			UNION
			SELECT k.id FROM api_keys k JOIN tree t ON k.parent_id = t.id
		)
		UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?)
		WHERE id IN (SELECT id FROM tree)
		RETURNING `+apiKeyColumns, id, userID, micros(at))
	if err != nil {
		return nil, fmt.Errorf("revoke API key: %w", err)
	}
	defer rows.Close()
	var keys []*APIKey
	for rows.Next() {
		k, err := scanAPIKey(rows)
		if err != nil {
			return nil, fmt.Errorf("revoke API key: %w", err)
		}
		if k.ID == id {
			keys = append([]*APIKey{k}, keys...)
		} else {
			keys = append(keys, k)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("revoke API key: %w", err)
	}
	if len(keys) == 0 {
		return nil, fault.NotFound("API key")
	}
	return keys, nil
}

// TouchAPIKey records that the API key was used at the given time. It never
// moves LastUsedAt back, so touches that arrive out of order keep the latest.
func (s *Store) TouchAPIKey(ctx context.Context, id string, at time.Time) error {
	t := micros(at)
	res, err := s.conn().exec(ctx, `UPDATE api_keys
		SET last_used_at = CASE WHEN last_used_at IS NULL OR last_used_at < ? THEN ? ELSE last_used_at END
		WHERE id = ?`, t, t, id)
	if err != nil {
		return fmt.Errorf("touch API key: %w", err)
	}
	n, err := rowsAffected(res)
	if err != nil {
		return fmt.Errorf("touch API key: %w", err)
	}
	if n == 0 {
		return fault.NotFound("API key")
	}
	return nil
}

// scanAPIKey reads one apiKeyColumns row; no row is fault.NotFound("API key").
func scanAPIKey(row scanner) (*APIKey, error) {
	var (
		k                      APIKey
		role                   string
		created                int64
		lastUsed, exp, revoked sql.NullInt64
		manage                 int64
		parent                 sql.NullString
	)
	err := row.Scan(&k.ID, &k.UserID, &k.Name, &k.Prefix, &k.KeyHash, &role, &created, &lastUsed, &exp, &revoked, &manage, &parent)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fault.NotFound("API key")
	}
	if err != nil {
		return nil, err
	}
	k.Role = Role(role)
	k.CreatedAt = fromMicros(created)
	k.LastUsedAt = timePtr(lastUsed)
	k.ExpiresAt = timePtr(exp)
	k.RevokedAt = timePtr(revoked)
	k.ManageKeys = manage != 0
	k.ParentID = parent.String
	return &k, nil
}
