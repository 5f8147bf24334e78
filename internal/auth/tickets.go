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

// ResumeTTL is how long the resume ticket an SSE stream opened with a
// ticket hands its browser (in a cookie) works: long enough for a stream
// that drops after hours to resume, and never past the session or key it
// stands for, which every redemption and heartbeat checks again.
const ResumeTTL = 12 * time.Hour

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
	return s.issueTicket(ctx, p, target, TicketTTL)
}

// ResumeTicket issues the single-use ticket, valid for ResumeTTL, with
// which an SSE stream that p opened with a ticket for target is resumed
// after the browser's automatic reconnect (whose URL still carries the
// spent ticket). Each resumption spends it and gets a new one.
func (s *Service) ResumeTicket(ctx context.Context, p access.Principal, target string) (string, time.Time, error) {
	return s.issueTicket(ctx, p, target, ResumeTTL)
}

func (s *Service) issueTicket(ctx context.Context, p access.Principal, target string, ttl time.Duration) (string, time.Time, error) {
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
		APIKeyID:   p.APIKeyID,
		Target:     target,
		CreatedAt:  now,
		ExpiresAt:  now.Add(ttl),
	}
	if err := s.store.CreateStreamTicket(ctx, t); err != nil {
		return "", time.Time{}, err
	}
	return ticket, t.ExpiresAt, nil
}

var errBadTicket = fault.New(fault.ErrUnauthenticated, "stream ticket is invalid, expired, already used or for another stream")

// RedeemStreamTicket spends a ticket for target and returns the principal
// it was issued to, with the account's current role — or, for a ticket an
// API key asked for, the lower of the key's role and the account's, so a
// viewer key's ticket opens a viewer's stream. A ticket works once, for its
// own target, within its lifetime, and only while the account (and the
// session or key it was issued under) is still good.
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
	p := access.Principal{UserID: u.ID, Role: u.Role, SessionID: t.SessionID, APIKeyID: t.APIKeyID, Method: access.MethodTicket}
	if t.APIKeyID != "" {
		if p.Role, err = s.keyRole(ctx, u.ID, t.APIKeyID, u.Role); err != nil {
			return access.Principal{}, err
		}
	}
	return p, nil
}

// keyRole returns the role a ticket of the API key id acts with: the lower
// of the key's and userRole; errBadTicket once the key is revoked (or a
// key above it is) or expired. The key is read from the store, not the
// cache: tickets are redeemed once and re-checked every heartbeat at most.
func (s *Service) keyRole(ctx context.Context, userID, id string, userRole store.Role) (store.Role, error) {
	k, err := s.store.FindAPIKey(ctx, userID, id)
	if errors.Is(err, fault.ErrNotFound) {
		return "", errBadTicket
	}
	if err != nil {
		return "", err
	}
	if k.RevokedAt != nil || k.AncestorRevoked || k.ExpiresAt != nil && !s.now().Before(*k.ExpiresAt) {
		return "", errBadTicket
	}
	if access.Rank(k.Role) < access.Rank(userRole) {
		return k.Role, nil
	}
	return userRole, nil
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
	if p.APIKeyID != "" {
		role, err := s.keyRole(ctx, p.UserID, p.APIKeyID, cur.Role)
		if err != nil {
			return access.Principal{}, err
		}
		cur.Role = role
	}
	return cur, nil
}
