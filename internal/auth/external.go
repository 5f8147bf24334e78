package auth

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/berthhq/berth/internal/audit"
	"github.com/berthhq/berth/internal/fault"
	"github.com/berthhq/berth/internal/store"
)

// SessionCookie is the name of the browser session cookie.
const SessionCookie = "berth_session"

// ExternalIdentity is a person as an OpenID provider vouches for them.
type ExternalIdentity struct {
	Provider string // berth's name for the provider
	Issuer   string
	Subject  string
	Email    string // display only: never used to find or link an account
	Name     string
}

// BrowserSession is a signed-in browser: the cookie to set, and whose it is.
type BrowserSession struct {
	Cookie    string
	ExpiresAt time.Time
	User      *store.User
	Created   bool // the account was created by this sign-in
}

// SignInExternal links or creates the account of an external identity (by
// issuer and subject only) and starts a browser session for it. Accounts
// are created even when registration is closed: the configured provider is
// the gate.
func (s *Service) SignInExternal(ctx context.Context, id ExternalIdentity, client Client) (*BrowserSession, error) {
	u, created, now, err := s.externalAccount(ctx, id)
	if err != nil {
		return nil, err
	}
	session, err := s.startBrowserSession(ctx, u, client, "oidc:"+id.Provider, now)
	if err != nil {
		return nil, err
	}
	session.Created = created
	s.audit.Record(ctx, audit.Event{Action: audit.ActionOIDCLogin, ActorID: u.ID, TargetType: "user", TargetID: u.ID,
		Details: map[string]string{"provider": id.Provider, "created": boolString(created)}})
	return session, nil
}

// externalAccount is the part of an external sign-in that both kinds share
// (SignInExternal for a browser, SignInExternalCLI for the CLI): it links
// or creates the account of id, refuses a disabled one and records the
// sign-in time, which it returns.
func (s *Service) externalAccount(ctx context.Context, id ExternalIdentity) (*store.User, bool, time.Time, error) {
	if id.Issuer == "" || id.Subject == "" {
		return nil, false, time.Time{}, fault.New(fault.ErrInvalid, "the identity has no issuer or subject")
	}
	now := s.now().UTC()
	created := false
	u, err := s.store.FindUserByIdentity(ctx, id.Issuer, id.Subject)
	switch {
	case errors.Is(err, fault.ErrNotFound):
		name := strings.TrimSpace(id.Name)
		if name == "" {
			name, _, _ = strings.Cut(id.Email, "@")
		}
		u = &store.User{ID: uuid.NewString(), Name: name, CreatedAt: now, UpdatedAt: now}
		if err := s.store.CreateUserWithIdentity(ctx, u, &store.Identity{
			Issuer: id.Issuer, Subject: id.Subject, Email: strings.ToLower(id.Email), CreatedAt: now,
		}); err != nil {
			return nil, false, time.Time{}, err
		}
		created = true
	case err != nil:
		return nil, false, time.Time{}, err
	default:
		if email := strings.ToLower(id.Email); email != "" && email != u.Email {
			if err := s.store.SetIdentityEmail(ctx, id.Issuer, id.Subject, email); err != nil {
				return nil, false, time.Time{}, err
			}
			u.Email = email
		}
	}
	if u.Disabled {
		s.audit.Record(ctx, audit.Event{Action: audit.ActionOIDCLogin, Outcome: audit.Failure, ActorID: u.ID,
			TargetType: "user", TargetID: u.ID, Details: map[string]string{"provider": id.Provider, "reason": "disabled"}})
		return nil, false, time.Time{}, fault.New(fault.ErrPermissionDenied, "this account is disabled")
	}
	if err := s.store.SetUserLastLogin(ctx, u.ID, now); err != nil {
		return nil, false, time.Time{}, err
	}
	u.LastLoginAt = &now
	return u, created, now, nil
}

// startBrowserSession stores a new cookie session for u, signed in by
// method ("password", "oidc:<provider>"), and returns the cookie to set.
// Only the cookie's hash is kept.
func (s *Service) startBrowserSession(ctx context.Context, u *store.User, client Client, method string, now time.Time) (*BrowserSession, error) {
	buf := make([]byte, 32)
	_, _ = rand.Read(buf) // crypto/rand.Read never fails
	cookie := "berth_sess_" + base64.RawURLEncoding.EncodeToString(buf)
	sess := &store.Session{
		ID:            uuid.NewString(),
		UserID:        u.ID,
		CreatedAt:     now,
		ExpiresAt:     now.Add(s.cfg.RefreshTTL),
		SourceAddress: client.SourceAddress,
		UserAgent:     truncate(client.UserAgent, 256),
		Method:        method,
		CookieHash:    hashToken(cookie),
	}
	if err := s.store.CreateSession(ctx, sess, nil); err != nil {
		return nil, err
	}
	return &BrowserSession{Cookie: cookie, ExpiresAt: sess.ExpiresAt, User: u}, nil
}

func boolString(b bool) string {
	if b {
		return "true"
	}
	return "false"
}
