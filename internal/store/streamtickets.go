package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/berthhq/berth/internal/fault"
)

const streamTicketColumns = `ticket_hash, user_id, session_id, target, created_at, expires_at, used_at, api_key_id`

// errNoTicket is what RedeemStreamTicket says of a ticket that is missing,
// used or expired alike, so a caller learns nothing about which.
var errNoTicket = fault.NotFound("stream ticket")

// CreateStreamTicket stores a new stream ticket. The caller fills every field
// but UsedAt. An owner that does not exist is fault.NotFound("user"); a hash
// that is taken is a fault.ErrConflict. t's times are set to their stored
// precision.
func (s *Store) CreateStreamTicket(ctx context.Context, t *StreamTicket) error {
	_, err := s.conn().exec(ctx, `INSERT INTO stream_tickets (`+streamTicketColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		t.TicketHash, t.UserID, t.SessionID, t.Target, micros(t.CreatedAt), micros(t.ExpiresAt), nullMicros(t.UsedAt), t.APIKeyID)
	switch {
	case s.d.isForeignKeyViolation(err):
		return fault.NotFound("user")
	case s.d.isUniqueViolation(err):
		return fault.New(fault.ErrConflict, "this stream ticket already exists")
	case err != nil:
		return fmt.Errorf("create stream ticket: %w", err)
	}
	t.CreatedAt = storedTime(t.CreatedAt)
	t.ExpiresAt = storedTime(t.ExpiresAt)
	t.UsedAt = storedTimePtr(t.UsedAt)
	return nil
}

// RedeemStreamTicket uses the ticket with the given SHA-256 hash at the given
// time and returns it, with UsedAt set. It succeeds only for a ticket that
// is unused and not expired (at is before ExpiresAt), and it marks the
// ticket used in the same statement that checks it, so of two redeems of one
// ticket at once exactly one wins. A ticket that is missing, used or expired
// is one and the same fault.NotFound("stream ticket").
func (s *Store) RedeemStreamTicket(ctx context.Context, hash []byte, at time.Time) (*StreamTicket, error) {
	if len(hash) == 0 {
		return nil, errNoTicket
	}
	t, err := scanStreamTicket(s.conn().queryRow(ctx, `UPDATE stream_tickets SET used_at = ?
		WHERE ticket_hash = ? AND used_at IS NULL AND expires_at > ?
		RETURNING `+streamTicketColumns, micros(at), hash, micros(at)))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errNoTicket
	}
	if err != nil {
		return nil, fmt.Errorf("redeem stream ticket: %w", err)
	}
	return t, nil
}

// DeleteExpiredStreamTickets deletes every ticket that has expired by the
// given time (ExpiresAt at or before it), used or not, and returns how many
// it deleted. A ticket that RedeemStreamTicket would still take at that
// time stays.
func (s *Store) DeleteExpiredStreamTickets(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.conn().exec(ctx, `DELETE FROM stream_tickets WHERE expires_at <= ?`, micros(before))
	if err != nil {
		return 0, fmt.Errorf("delete expired stream tickets: %w", err)
	}
	n, err := rowsAffected(res)
	if err != nil {
		return 0, fmt.Errorf("delete expired stream tickets: %w", err)
	}
	return n, nil
}

// scanStreamTicket reads one streamTicketColumns row; no row is
// sql.ErrNoRows.
func scanStreamTicket(row scanner) (*StreamTicket, error) {
	var (
		t                StreamTicket
		created, expires int64
		used             sql.NullInt64
	)
	if err := row.Scan(&t.TicketHash, &t.UserID, &t.SessionID, &t.Target, &created, &expires, &used, &t.APIKeyID); err != nil {
		return nil, err
	}
	t.CreatedAt = fromMicros(created)
	t.ExpiresAt = fromMicros(expires)
	t.UsedAt = timePtr(used)
	return &t, nil
}
