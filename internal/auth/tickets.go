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
	"github.com/berthhq/berth/internal/fault"
	"github.com/berthhq/berth/internal/store"
)

// TicketTTL is how long an unused stream ticket works.
const TicketTTL = 60 * time.Second

// CheckTicketTarget validates a stream target: "ws", "task:<uuid>" or
// "workspace:<uuid>".
func CheckTicketTarget(target string) error {
	if target == "ws" {
		return nil
	}
	kind, id, ok := strings.Cut(target, ":")
	if ok && (kind == "task" || kind == "workspace") {
		if _, err := uuid.Parse(id); err == nil {
			return nil
		}
	}
	return fault.Invalid("target", `must be "ws", "task:<id>" or "workspace:<id>"`)
}

// CreateStreamTicket issues a single-use ticket, valid for TicketTTL, that
// lets a client which cannot send headers (EventSource, a browser
// WebSocket) open one stream target as the principal.
func (s *Service) CreateStreamTicket(ctx context.Context, p access.Principal, target string) (string, time.Time, error) {
	if err := CheckTicketTarget(target); err != nil {
		return "", time.Time{}, err
	}
	buf := make([]byte, 32)
	_, _ = rand.Read(buf)
	ticket := "berth_tk_" + base64.RawURLEncoding.EncodeToString(buf)
	now := s.now().UTC()
	t := &store.StreamTicket{
		TicketHash: hashToken(ticket),
		UserID:     p.UserID,
		SessionID:  p.SessionID,
		Target:     target,
		CreatedAt:  now,
		ExpiresAt:  now.Add(TicketTTL),
	}
	if err := s.store.CreateStreamTicket(ctx, t); err != nil {
		return "", time.Time{}, err
	}
	return ticket, t.ExpiresAt, nil
}

var errBadTicket = fault.New(fault.ErrUnauthenticated, "stream ticket is invalid, expired, already used or for another stream")

// RedeemStreamTicket spends a ticket for target and returns the principal
// it was issued to, with the account's current role. A ticket works once,
// for its own target, within its lifetime, and only while the account (and
// the session it was issued under) is still good.
func (s *Service) RedeemStreamTicket(ctx context.Context, ticket, target string) (access.Principal, error) {
	t, err := s.store.RedeemStreamTicket(ctx, hashToken(ticket), s.now().UTC())
	if errors.Is(err, fault.ErrNotFound) {
		return access.Principal{}, errBadTicket
	}
	if err != nil {
		return access.Principal{}, err
	}
	if t.Target != target {
		return access.Principal{}, errBadTicket
	}
	u, err := s.store.FindUserByID(ctx, t.UserID)
	if err != nil {
		return access.Principal{}, err
	}
	if u.Disabled {
		return access.Principal{}, errBadTicket
	}
	if t.SessionID != "" {
		sess, err := s.store.FindSession(ctx, t.SessionID)
		if err != nil || sess.RevokedAt != nil {
			return access.Principal{}, errBadTicket
		}
	}
	return access.Principal{UserID: u.ID, Role: u.Role, SessionID: t.SessionID, Method: access.MethodTicket}, nil
}

// RecheckTicket re-validates, for a stream that stays open, the principal a
// ticket was redeemed for: the session it was issued under must still be
// live and the account enabled. It returns the principal with the
// account's current role. Like Authenticate it reads through the principal
// cache, so a long-lived stream can ask often.
func (s *Service) RecheckTicket(ctx context.Context, p access.Principal) (access.Principal, error) {
	if p.SessionID != "" {
		cur, err := s.sessionPrincipal(ctx, "s:"+p.SessionID, func() (*store.Session, error) {
			return s.findSession(ctx, p.SessionID)
		})
		if err != nil {
			if errors.Is(err, fault.ErrUnauthenticated) {
				return access.Principal{}, errBadTicket
			}
			return access.Principal{}, err
		}
		cur.Method = p.Method
		return cur, nil
	}
	now := s.now()
	key := "u:" + p.UserID
	e, ok := s.cachedPrincipal(key, now)
	if !ok {
		u, err := s.findUser(ctx, p.UserID)
		if err != nil && !errors.Is(err, fault.ErrNotFound) {
			return access.Principal{}, err
		}
		e = principalEntry{userID: p.UserID}
		if err != nil || u.Disabled {
			e.err = errBadTicket
		} else {
			e.p = access.Principal{UserID: u.ID, Role: u.Role}
		}
		s.cachePrincipal(key, e, now)
	}
	if e.err != nil {
		return access.Principal{}, e.err
	}
	cur := p
	if access.Rank(e.p.Role) < access.Rank(cur.Role) {
		cur.Role = e.p.Role // never more than at redemption, never more than now
	}
	return cur, nil
}
