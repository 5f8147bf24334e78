// Package admin holds account administration — listing accounts, changing
// roles, disabling and re-enabling — and reading the audit log.
//
// Its handler.go translates the generated AdminService to the Service
// here.
package admin

import (
	"context"
	"strings"
	"time"

	"github.com/berthhq/berth/internal/access"
	"github.com/berthhq/berth/internal/audit"
	"github.com/berthhq/berth/internal/fault"
	"github.com/berthhq/berth/internal/page"
	"github.com/berthhq/berth/internal/store"
)

// credentialCache is the authentication cache that must forget an account
// whose role or state changed, so the change applies on its next request.
type credentialCache interface {
	ForgetUser(userID string)
}

// Service administers accounts. Every method expects an admin principal
// (the access rules of AdminService guarantee it).
type Service struct {
	store *store.Store
	creds credentialCache
	audit *audit.Recorder
	now   func() time.Time
}

// NewService returns a Service. now is the clock.
func NewService(st *store.Store, creds credentialCache, rec *audit.Recorder, now func() time.Time) *Service {
	return &Service{store: st, creds: creds, audit: rec, now: now}
}

// UserQuery selects a page of accounts.
type UserQuery struct {
	Page   page.Request
	Search string
	Role   store.Role
}

// ListUsers returns a page of accounts and how many match in all.
func (s *Service) ListUsers(ctx context.Context, q UserQuery) ([]*store.User, int64, error) {
	return s.store.ListUsers(ctx, store.UserFilter{
		Search: strings.TrimSpace(q.Search),
		Role:   q.Role,
		Offset: q.Page.Offset(),
		Limit:  q.Page.Size,
	})
}

// SetUserRole changes an account's global role; it applies to the
// account's sessions and keys on their next request. The last enabled admin
// cannot be demoted.
func (s *Service) SetUserRole(ctx context.Context, userID string, role store.Role) (*store.User, error) {
	before, err := s.store.FindUserByID(ctx, userID)
	if err != nil {
		return nil, err
	}
	u, err := s.store.SetUserRole(ctx, userID, role, s.now().UTC())
	if err != nil {
		return nil, err
	}
	s.creds.ForgetUser(userID)
	s.audit.Record(ctx, audit.Event{Action: audit.ActionUserRole, TargetType: "user", TargetID: userID,
		Details: map[string]string{"from": string(before.Role), "to": string(role)}})
	return u, nil
}

// DisableUser disables an account: its sessions are revoked, and its access
// tokens, refresh tokens, cookies and API keys stop working on their next
// request. Admins cannot disable themselves, nor the last enabled admin.
func (s *Service) DisableUser(ctx context.Context, p access.Principal, userID string) (*store.User, error) {
	if userID == p.UserID {
		return nil, fault.New(fault.ErrFailedPrecondition, "you cannot disable your own account")
	}
	u, err := s.store.SetUserDisabled(ctx, userID, true, s.now().UTC())
	if err != nil {
		return nil, err
	}
	s.creds.ForgetUser(userID)
	s.audit.Record(ctx, audit.Event{Action: audit.ActionUserDisable, TargetType: "user", TargetID: userID})
	return u, nil
}

// EnableUser re-enables an account. Its old sessions stay revoked; API keys
// work again unless they were revoked.
func (s *Service) EnableUser(ctx context.Context, userID string) (*store.User, error) {
	u, err := s.store.SetUserDisabled(ctx, userID, false, s.now().UTC())
	if err != nil {
		return nil, err
	}
	s.creds.ForgetUser(userID)
	s.audit.Record(ctx, audit.Event{Action: audit.ActionUserEnable, TargetType: "user", TargetID: userID})
	return u, nil
}

// AuditQuery selects a page of audit events.
type AuditQuery struct {
	Page     page.Request
	Action   string
	ActorID  string
	TargetID string
}

// ListAuditEvents returns a page of audit events, newest first.
func (s *Service) ListAuditEvents(ctx context.Context, q AuditQuery) ([]*store.AuditEvent, int64, error) {
	return s.store.ListAuditEvents(ctx, store.AuditFilter{
		Action:   q.Action,
		ActorID:  q.ActorID,
		TargetID: q.TargetID,
		Offset:   q.Page.Offset(),
		Limit:    q.Page.Size,
	})
}
