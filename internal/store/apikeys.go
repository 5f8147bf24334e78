package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/berthhq/berth/internal/fault"
)

const apiKeyColumns = `id, user_id, name, prefix, key_hash, role, created_at, last_used_at, expires_at, revoked_at`

// CreateAPIKey stores a new API key. The caller fills every field; the
// optional times are usually nil. A prefix that is taken is a
// fault.ErrConflict (prefixes are random, so the caller may draw another);
// an owner that does not exist is fault.NotFound("user"). k's times are set
// to their stored precision.
func (s *Store) CreateAPIKey(ctx context.Context, k *APIKey) error {
	_, err := s.conn().exec(ctx, `INSERT INTO api_keys (`+apiKeyColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		k.ID, k.UserID, k.Name, k.Prefix, k.KeyHash, string(k.Role), micros(k.CreatedAt),
		nullMicros(k.LastUsedAt), nullMicros(k.ExpiresAt), nullMicros(k.RevokedAt))
	switch {
	case s.d.isForeignKeyViolation(err):
		return fault.NotFound("user")
	case s.d.isUniqueViolation(err):
		return fault.New(fault.ErrConflict, "an API key with this prefix or id already exists")
	case err != nil:
		return fmt.Errorf("create API key: %w", err)
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
// expired or not: the caller checks both, and the hash.
func (s *Store) FindAPIKeyByPrefix(ctx context.Context, prefix string) (*APIKey, error) {
	k, err := scanAPIKey(s.conn().queryRow(ctx, `SELECT `+apiKeyColumns+` FROM api_keys WHERE prefix = ?`, prefix))
	if errors.Is(err, fault.ErrNotFound) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("find API key: %w", err)
	}
	return k, nil
}

// RevokeAPIKey revokes the API key with the given id that belongs to the
// given account, at the given time, and returns it as it now is. Revoking a
// revoked key changes nothing: the first revocation time stays. Another
// account's key is fault.NotFound("API key"), exactly like one that does not
// exist, so key ids cannot be probed.
func (s *Store) RevokeAPIKey(ctx context.Context, userID, id string, at time.Time) (*APIKey, error) {
	k, err := scanAPIKey(s.conn().queryRow(ctx, `UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?)
		WHERE id = ? AND user_id = ?
		RETURNING `+apiKeyColumns, micros(at), id, userID))
	if errors.Is(err, fault.ErrNotFound) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("revoke API key: %w", err)
	}
	return k, nil
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
	)
	err := row.Scan(&k.ID, &k.UserID, &k.Name, &k.Prefix, &k.KeyHash, &role, &created, &lastUsed, &exp, &revoked)
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
	return &k, nil
}
