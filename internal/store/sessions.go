package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/berthhq/berth/internal/fault"
)

// ErrTokenUsed means a refresh token was already exchanged: UseRefreshToken
// lost to an earlier use of the same token, perhaps by someone else holding
// it. Match it with errors.Is.
var ErrTokenUsed = errors.New("refresh token already used")

const sessionColumns = `id, user_id, created_at, expires_at, revoked_at, source_address, user_agent, method, cookie_hash`

// MethodPassword is the Session.Method of a session started with a password,
// and what CreateSession stores when none is given. A session started by
// OIDC login has the method "oidc:" followed by the provider's name.
const MethodPassword = "password"

// #nosec G101 -- column names, not a credential
const refreshTokenColumns = `id, session_id, user_id, token_hash, created_at, expires_at, used_at`

// CreateSession stores a new session and, when first is not nil, its first
// refresh token, in one transaction. first's SessionID and UserID default to
// the session's, and an empty Method to MethodPassword; an empty CookieHash
// is stored as none (an API session). A session for an account that does not
// exist is fault.NotFound("user"); a session id or cookie hash that is taken
// is a fault.ErrConflict. The records' times are set to their stored
// precision.
func (s *Store) CreateSession(ctx context.Context, sess *Session, first *RefreshToken) error {
	method := sess.Method
	if method == "" {
		method = MethodPassword
	}
	if first != nil {
		if first.SessionID == "" {
			first.SessionID = sess.ID
		}
		if first.UserID == "" {
			first.UserID = sess.UserID
		}
	}
	err := s.inTx(ctx, func(c conn) error {
		if _, err := c.exec(ctx, `INSERT INTO sessions (`+sessionColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			sess.ID, sess.UserID, micros(sess.CreatedAt), micros(sess.ExpiresAt), nullMicros(sess.RevokedAt),
			sess.SourceAddress, sess.UserAgent, method, nullBytes(sess.CookieHash)); err != nil {
			return err
		}
		if first != nil {
			return insertRefreshToken(ctx, c, first)
		}
		return nil
	})
	switch {
	case s.d.isForeignKeyViolation(err):
		return fault.NotFound("user")
	case s.d.isUniqueViolation(err):
		return fault.New(fault.ErrConflict, "a session with this id or cookie already exists")
	case err != nil:
		return fmt.Errorf("create session: %w", err)
	}
	sess.Method = method
	if len(sess.CookieHash) == 0 {
		sess.CookieHash = nil
	}
	sess.CreatedAt = storedTime(sess.CreatedAt)
	sess.ExpiresAt = storedTime(sess.ExpiresAt)
	sess.RevokedAt = storedTimePtr(sess.RevokedAt)
	if first != nil {
		normalizeRefreshToken(first)
	}
	return nil
}

// FindSession returns the session with the given id, revoked or not.
func (s *Store) FindSession(ctx context.Context, id string) (*Session, error) {
	return s.findSession(ctx, "find session", `SELECT `+sessionColumns+` FROM sessions WHERE id = ?`, id)
}

// FindSessionByCookie returns the browser session whose cookie has the given
// SHA-256 hash, revoked or expired or not: the caller checks both. An empty
// hash finds nothing.
func (s *Store) FindSessionByCookie(ctx context.Context, hash []byte) (*Session, error) {
	if len(hash) == 0 {
		return nil, fault.NotFound("session")
	}
	return s.findSession(ctx, "find session by cookie", `SELECT `+sessionColumns+` FROM sessions WHERE cookie_hash = ?`, hash)
}

// findSession reads one session with query; no row is
// fault.NotFound("session").
func (s *Store) findSession(ctx context.Context, op, query string, args ...any) (*Session, error) {
	var (
		sess             Session
		created, expires int64
		revoked          sql.NullInt64
	)
	err := s.conn().queryRow(ctx, query, args...).
		Scan(&sess.ID, &sess.UserID, &created, &expires, &revoked, &sess.SourceAddress, &sess.UserAgent,
			&sess.Method, &sess.CookieHash)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fault.NotFound("session")
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if len(sess.CookieHash) == 0 {
		sess.CookieHash = nil
	}
	sess.CreatedAt = fromMicros(created)
	sess.ExpiresAt = fromMicros(expires)
	sess.RevokedAt = timePtr(revoked)
	return &sess, nil
}

// RevokeSession ends a session at the given time, so none of its refresh
// tokens works any more. Revoking a revoked session changes nothing: the
// first revocation time stays.
func (s *Store) RevokeSession(ctx context.Context, id string, at time.Time) error {
	res, err := s.conn().exec(ctx, `UPDATE sessions SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL`, micros(at), id)
	if err != nil {
		return fmt.Errorf("revoke session: %w", err)
	}
	n, err := rowsAffected(res)
	if err != nil {
		return fmt.Errorf("revoke session: %w", err)
	}
	if n == 0 {
		var exists int
		if err := s.conn().queryRow(ctx, `SELECT COUNT(*) FROM sessions WHERE id = ?`, id).Scan(&exists); err != nil {
			return fmt.Errorf("revoke session: %w", err)
		}
		if exists == 0 {
			return fault.NotFound("session")
		}
	}
	return nil
}

// RevokeUserSessions ends, at the given time, every session of the account
// that is not revoked yet — signing it out everywhere — and returns how many
// it ended. Sessions already revoked keep their first revocation time. An
// account without sessions, or one that does not exist, has none to end.
func (s *Store) RevokeUserSessions(ctx context.Context, userID string, at time.Time) (int64, error) {
	n, err := revokeUserSessions(ctx, s.conn(), userID, at)
	if err != nil {
		return 0, fmt.Errorf("revoke user sessions: %w", err)
	}
	return n, nil
}

// revokeUserSessions revokes every unrevoked session of the account on c and
// returns how many.
func revokeUserSessions(ctx context.Context, c conn, userID string, at time.Time) (int64, error) {
	res, err := c.exec(ctx, `UPDATE sessions SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL`, micros(at), userID)
	if err != nil {
		return 0, err
	}
	return rowsAffected(res)
}

// FindRefreshToken returns the refresh token with the given SHA-256 hash,
// used or not.
func (s *Store) FindRefreshToken(ctx context.Context, hash []byte) (*RefreshToken, error) {
	var (
		rt               RefreshToken
		created, expires int64
		used             sql.NullInt64
	)
	err := s.conn().queryRow(ctx, `SELECT `+refreshTokenColumns+` FROM refresh_tokens WHERE token_hash = ?`, hash).
		Scan(&rt.ID, &rt.SessionID, &rt.UserID, &rt.TokenHash, &created, &expires, &used)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fault.NotFound("refresh token")
	}
	if err != nil {
		return nil, fmt.Errorf("find refresh token: %w", err)
	}
	rt.CreatedAt = fromMicros(created)
	rt.ExpiresAt = fromMicros(expires)
	rt.UsedAt = timePtr(used)
	return &rt, nil
}

// UseRefreshToken exchanges the refresh token with the given id at the given
// time, in one transaction: it marks the token used, only if it was not used
// yet, and stores next, its successor, when next is not nil. When the token
// was already used the error wraps ErrTokenUsed and nothing is stored: of
// two exchanges of one token, exactly one wins. An unknown id is
// fault.NotFound("refresh token").
func (s *Store) UseRefreshToken(ctx context.Context, id string, at time.Time, next *RefreshToken) error {
	err := s.inTx(ctx, func(c conn) error {
		res, err := c.exec(ctx, `UPDATE refresh_tokens SET used_at = ? WHERE id = ? AND used_at IS NULL`, micros(at), id)
		if err != nil {
			return err
		}
		n, err := rowsAffected(res)
		if err != nil {
			return err
		}
		if n == 0 {
			var exists int
			if err := c.queryRow(ctx, `SELECT COUNT(*) FROM refresh_tokens WHERE id = ?`, id).Scan(&exists); err != nil {
				return err
			}
			if exists == 0 {
				return fault.NotFound("refresh token")
			}
			return fmt.Errorf("refresh token %s: %w", id, ErrTokenUsed)
		}
		if next != nil {
			return insertRefreshToken(ctx, c, next)
		}
		return nil
	})
	if errors.Is(err, ErrTokenUsed) || errors.Is(err, fault.ErrNotFound) {
		return err
	}
	if s.d.isForeignKeyViolation(err) {
		return fault.NotFound("session")
	}
	if err != nil {
		return fmt.Errorf("use refresh token: %w", err)
	}
	if next != nil {
		normalizeRefreshToken(next)
	}
	return nil
}

func insertRefreshToken(ctx context.Context, c conn, rt *RefreshToken) error {
	_, err := c.exec(ctx, `INSERT INTO refresh_tokens (`+refreshTokenColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		rt.ID, rt.SessionID, rt.UserID, rt.TokenHash, micros(rt.CreatedAt), micros(rt.ExpiresAt), nullMicros(rt.UsedAt))
	return err
}

func normalizeRefreshToken(rt *RefreshToken) {
	rt.CreatedAt = storedTime(rt.CreatedAt)
	rt.ExpiresAt = storedTime(rt.ExpiresAt)
	rt.UsedAt = storedTimePtr(rt.UsedAt)
}
