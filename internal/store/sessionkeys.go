package store

import (
	"context"
	"fmt"
)

// SessionKeys returns the id and cookie hash (nil for API sessions) of
// every session of the account, revoked or not, so that caches holding
// them can drop them all after a change to the account's sessions.
func (s *Store) SessionKeys(ctx context.Context, userID string) ([]Session, error) {
	rows, err := s.conn().query(ctx, `SELECT id, cookie_hash FROM sessions WHERE user_id = ?`, userID)
	if err != nil {
		return nil, fmt.Errorf("session keys: %w", err)
	}
	defer rows.Close()
	var out []Session
	for rows.Next() {
		var sess Session
		if err := rows.Scan(&sess.ID, &sess.CookieHash); err != nil {
			return nil, fmt.Errorf("session keys: %w", err)
		}
		sess.UserID = userID
		out = append(out, sess)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("session keys: %w", err)
	}
	return out, nil
}
