// Package auth holds berth's accounts and credentials: password accounts
// (argon2id), sessions with short-lived access tokens (EdDSA JWT) and
// single-use refresh tokens stored as hashes, and the authentication of
// incoming requests.
//
// auth imports internal/store, internal/access and internal/fault; its
// handler.go translates the generated AuthService to the Service here.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/berthhq/berth/internal/access"
	"github.com/berthhq/berth/internal/fault"
	"github.com/berthhq/berth/internal/store"
)

// Config tunes the Service.
type Config struct {
	// AllowRegistration opens Register to anyone; the first account may
	// always be registered so a fresh server can be set up.
	AllowRegistration bool
	// RefreshTTL is how long a refresh token (and so a session) lives
	// unused.
	RefreshTTL time.Duration
}

// Service signs people in and authenticates requests.
type Service struct {
	store     *store.Store
	tokens    *TokenIssuer
	cfg       Config
	now       func() time.Time
	dummyHash string
}

// NewService returns a Service. now is the clock.
func NewService(st *store.Store, tokens *TokenIssuer, cfg Config, now func() time.Time) (*Service, error) {
	// A real hash of a random password: a login for an unknown email is
	// verified against it so it costs as much as one for a known email.
	dummy, err := HashPassword(rand.Text())
	if err != nil {
		return nil, err
	}
	return &Service{store: st, tokens: tokens, cfg: cfg, now: now, dummyHash: dummy}, nil
}

// Tokens are the credentials of a session.
type Tokens struct {
	AccessToken      string
	AccessExpiresAt  time.Time
	RefreshToken     string
	RefreshExpiresAt time.Time
}

// Client describes where a sign-in comes from, for the session record.
type Client struct {
	SourceAddress string
	UserAgent     string
}

// errBadCredentials is the one answer to every failed login, so a caller
// cannot learn whether an account exists.
var errBadCredentials = fault.New(fault.ErrUnauthenticated, "invalid email or password")

// errBadRefresh is the one answer to every refresh token that does not work.
var errBadRefresh = fault.New(fault.ErrUnauthenticated, "refresh token is invalid, expired or already used; sign in again")

// Register creates a password account and signs it in.
func (s *Service) Register(ctx context.Context, email, password, name string, client Client) (*store.User, *Tokens, error) {
	email = normalizeEmail(email)
	if strings.EqualFold(password, email) {
		return nil, nil, fault.Invalid("password", "must not be the same as the email")
	}
	if !s.cfg.AllowRegistration {
		n, err := s.store.CountUsers(ctx)
		if err != nil {
			return nil, nil, err
		}
		if n > 0 {
			return nil, nil, fault.New(fault.ErrPermissionDenied, "registration is closed on this server; ask an administrator for an account")
		}
	}
	if name = strings.TrimSpace(name); name == "" {
		name, _, _ = strings.Cut(email, "@")
	}
	hash, err := HashPassword(password)
	if err != nil {
		return nil, nil, err
	}
	now := s.now().UTC()
	u := &store.User{
		ID:           uuid.NewString(),
		Email:        email,
		Name:         name,
		PasswordHash: hash,
		CreatedAt:    now,
		UpdatedAt:    now,
	}
	if err := s.store.CreateUser(ctx, u); err != nil {
		return nil, nil, err
	}
	tokens, err := s.startSession(ctx, u, client)
	if err != nil {
		return nil, nil, err
	}
	return u, tokens, nil
}

// Login checks an email and password and starts a session.
func (s *Service) Login(ctx context.Context, email, password string, client Client) (*store.User, *Tokens, error) {
	u, err := s.store.FindUserByEmail(ctx, normalizeEmail(email))
	if errors.Is(err, fault.ErrNotFound) {
		_, _ = VerifyPassword(s.dummyHash, password)
		return nil, nil, errBadCredentials
	}
	if err != nil {
		return nil, nil, err
	}
	if u.PasswordHash == "" {
		_, _ = VerifyPassword(s.dummyHash, password)
		return nil, nil, errBadCredentials
	}
	ok, err := VerifyPassword(u.PasswordHash, password)
	if err != nil {
		return nil, nil, fmt.Errorf("auth: verify password of %s: %w", u.ID, err)
	}
	if !ok || u.Disabled {
		return nil, nil, errBadCredentials
	}
	now := s.now().UTC()
	if err := s.store.SetUserLastLogin(ctx, u.ID, now); err != nil {
		return nil, nil, err
	}
	u.LastLoginAt = &now
	tokens, err := s.startSession(ctx, u, client)
	if err != nil {
		return nil, nil, err
	}
	return u, tokens, nil
}

// Refresh exchanges a refresh token for new tokens. Presenting a token that
// was already exchanged revokes its whole session: one of the two holders is
// not the user.
func (s *Service) Refresh(ctx context.Context, refreshToken string) (*Tokens, error) {
	rt, err := s.store.FindRefreshToken(ctx, hashToken(refreshToken))
	if errors.Is(err, fault.ErrNotFound) {
		return nil, errBadRefresh
	}
	if err != nil {
		return nil, err
	}
	now := s.now().UTC()
	if rt.UsedAt != nil {
		if err := s.store.RevokeSession(ctx, rt.SessionID, now); err != nil {
			return nil, err
		}
		return nil, errBadRefresh
	}
	if !now.Before(rt.ExpiresAt) {
		return nil, errBadRefresh
	}
	sess, err := s.store.FindSession(ctx, rt.SessionID)
	if err != nil {
		return nil, err
	}
	if sess.RevokedAt != nil {
		return nil, errBadRefresh
	}
	u, err := s.store.FindUserByID(ctx, rt.UserID)
	if err != nil {
		return nil, err
	}
	if u.Disabled {
		return nil, errBadRefresh
	}
	raw, next := s.newRefreshToken(sess.ID, u.ID, now)
	if err := s.store.UseRefreshToken(ctx, rt.ID, now, next); err != nil {
		if errors.Is(err, store.ErrTokenUsed) {
			// Lost a race with another exchange of the same token: reuse.
			if err := s.store.RevokeSession(ctx, rt.SessionID, now); err != nil {
				return nil, err
			}
			return nil, errBadRefresh
		}
		return nil, err
	}
	access, expires, err := s.tokens.Issue(u.ID, sess.ID, u.Role)
	if err != nil {
		return nil, err
	}
	return &Tokens{AccessToken: access, AccessExpiresAt: expires, RefreshToken: raw, RefreshExpiresAt: next.ExpiresAt}, nil
}

// Logout revokes the principal's session, so its refresh tokens stop working.
func (s *Service) Logout(ctx context.Context, p access.Principal) error {
	if p.SessionID == "" {
		return fault.New(fault.ErrFailedPrecondition, "this credential has no session to end")
	}
	return s.store.RevokeSession(ctx, p.SessionID, s.now().UTC())
}

// CurrentUser returns the principal's account.
func (s *Service) CurrentUser(ctx context.Context, p access.Principal) (*store.User, error) {
	return s.store.FindUserByID(ctx, p.UserID)
}

// Authenticate turns the value of an Authorization header into a principal.
// Every failure is the same Unauthenticated error; the reason is wrapped for
// the server's log.
func (s *Service) Authenticate(_ context.Context, authorization string) (access.Principal, error) {
	scheme, token, ok := strings.Cut(authorization, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return access.Principal{}, fault.New(fault.ErrUnauthenticated, `send "Authorization: Bearer <access token>"`)
	}
	p, err := s.tokens.Verify(strings.TrimSpace(token))
	if err != nil {
		return access.Principal{}, &fault.Error{Kind: fault.ErrUnauthenticated, Message: "access token is invalid or expired", Cause: err}
	}
	return p, nil
}

func (s *Service) startSession(ctx context.Context, u *store.User, client Client) (*Tokens, error) {
	now := s.now().UTC()
	sess := &store.Session{
		ID:            uuid.NewString(),
		UserID:        u.ID,
		CreatedAt:     now,
		ExpiresAt:     now.Add(s.cfg.RefreshTTL),
		SourceAddress: client.SourceAddress,
		UserAgent:     truncate(client.UserAgent, 256),
	}
	raw, first := s.newRefreshToken(sess.ID, u.ID, now)
	if err := s.store.CreateSession(ctx, sess, first); err != nil {
		return nil, err
	}
	access, expires, err := s.tokens.Issue(u.ID, sess.ID, u.Role)
	if err != nil {
		return nil, err
	}
	return &Tokens{AccessToken: access, AccessExpiresAt: expires, RefreshToken: raw, RefreshExpiresAt: first.ExpiresAt}, nil
}

func (s *Service) newRefreshToken(sessionID, userID string, now time.Time) (string, *store.RefreshToken) {
	buf := make([]byte, 32)
	_, _ = rand.Read(buf) // crypto/rand.Read never fails
	raw := "berth_rt_" + base64.RawURLEncoding.EncodeToString(buf)
	return raw, &store.RefreshToken{
		ID:        uuid.NewString(),
		SessionID: sessionID,
		UserID:    userID,
		TokenHash: hashToken(raw),
		CreatedAt: now,
		ExpiresAt: now.Add(s.cfg.RefreshTTL),
	}
}

func hashToken(raw string) []byte {
	sum := sha256.Sum256([]byte(raw))
	return sum[:]
}

func normalizeEmail(email string) string {
	return strings.ToLower(strings.TrimSpace(email))
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}

// RegistrationOpen reports whether Register accepts a new account now: when
// registration is allowed, or while the server has no account at all.
func (s *Service) RegistrationOpen(ctx context.Context) (bool, error) {
	if s.cfg.AllowRegistration {
		return true, nil
	}
	n, err := s.store.CountUsers(ctx)
	if err != nil {
		return false, err
	}
	return n == 0, nil
}
