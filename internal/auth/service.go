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
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/berthhq/berth/internal/access"
	"github.com/berthhq/berth/internal/audit"
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
	store      *store.Store
	tokens     *TokenIssuer
	cfg        Config
	audit      *audit.Recorder
	now        func() time.Time
	dummyHash  func() string
	principals *principalCache
	shared     *sharedReads // nil: no shared cache (see UseSharedCache)
	// accounts slows password guessing per account; addresses slows
	// password and API key guessing per source address.
	accounts  *throttle
	addresses *throttle
}

// Throttling: per account, 5 failures are free, then each failure doubles
// the wait (1s, 2s, 4s … up to 15 minutes); per source address, 20 are free.
// Failures are forgotten 15 minutes after the last one.
const (
	freeAccountFailures = 5
	freeAddressFailures = 20
	throttleBase        = time.Second
	throttleMax         = 15 * time.Minute
	throttleForget      = 15 * time.Minute
)

// NewService returns a Service. rec records security events; now is the
// clock.
func NewService(st *store.Store, tokens *TokenIssuer, cfg Config, rec *audit.Recorder, now func() time.Time) (*Service, error) {
	// A real hash of a random password: a login for an unknown email is
	// verified against it so it costs as much as one for a known email.
	// Hashing takes a while (argon2id is slow on purpose), so it is done in
	// the background rather than on the start-up path; the first login
	// that needs it waits for it.
	dummy := sync.OnceValue(func() string {
		h, err := HashPassword(rand.Text())
		if err != nil {
			panic("auth: hashing the dummy password: " + err.Error()) // only a broken crypto/rand fails
		}
		return h
	})
	go dummy()
	return &Service{
		store:      st,
		tokens:     tokens,
		cfg:        cfg,
		audit:      rec,
		now:        now,
		dummyHash:  dummy,
		principals: newPrincipalCache(),
		accounts:   newThrottle(freeAccountFailures, throttleBase, throttleMax, throttleForget, now),
		addresses:  newThrottle(freeAddressFailures, throttleBase, throttleMax, throttleForget, now),
	}, nil
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

// Login checks an email and password and starts a session. Failures are
// throttled per account and per source address (see the constants above);
// whether the account exists never changes the answer or its cost.
func (s *Service) Login(ctx context.Context, email, password string, client Client) (*store.User, *Tokens, error) {
	email = normalizeEmail(email)
	acct, addr := email, client.SourceAddress
	if d := max(s.accounts.wait(acct), s.addresses.wait(addr)); d > 0 {
		s.audit.Record(ctx, audit.Event{Action: audit.ActionLogin, Outcome: audit.Failure,
			Details: map[string]string{"email": email, "reason": "throttled"}})
		return nil, nil, tooManyAttempts(d)
	}
	u, err := s.checkPassword(ctx, email, password)
	if err != nil {
		if errors.Is(err, errBadCredentials) {
			s.accounts.fail(acct)
			s.addresses.fail(addr)
			s.audit.Record(ctx, audit.Event{Action: audit.ActionLogin, Outcome: audit.Failure,
				Details: map[string]string{"email": email}})
		}
		return nil, nil, err
	}
	s.accounts.reset(acct)
	now := s.now().UTC()
	if err := s.store.SetUserLastLogin(ctx, u.ID, now); err != nil {
		return nil, nil, err
	}
	u.LastLoginAt = &now
	tokens, err := s.startSession(ctx, u, client)
	if err != nil {
		return nil, nil, err
	}
	s.audit.Record(ctx, audit.Event{Action: audit.ActionLogin, ActorID: u.ID, TargetType: "user", TargetID: u.ID})
	return u, tokens, nil
}

// checkPassword returns the account if the password is right and the
// account enabled, and errBadCredentials otherwise — after the same argon2id
// work either way.
func (s *Service) checkPassword(ctx context.Context, email, password string) (*store.User, error) {
	u, err := s.store.FindUserByEmail(ctx, email)
	if errors.Is(err, fault.ErrNotFound) {
		_, _ = VerifyPassword(s.dummyHash(), password)
		return nil, errBadCredentials
	}
	if err != nil {
		return nil, err
	}
	if u.PasswordHash == "" {
		_, _ = VerifyPassword(s.dummyHash(), password)
		return nil, errBadCredentials
	}
	ok, err := VerifyPassword(u.PasswordHash, password)
	if err != nil {
		return nil, fmt.Errorf("auth: verify password of %s: %w", u.ID, err)
	}
	if !ok || u.Disabled {
		return nil, errBadCredentials
	}
	return u, nil
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
		return nil, s.revokeReused(ctx, rt, now)
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
			return nil, s.revokeReused(ctx, rt, now)
		}
		return nil, err
	}
	access, expires, err := s.tokens.Issue(u.ID, sess.ID, u.Role)
	if err != nil {
		return nil, err
	}
	return &Tokens{AccessToken: access, AccessExpiresAt: expires, RefreshToken: raw, RefreshExpiresAt: next.ExpiresAt}, nil
}

// revokeReused ends the session of a refresh token presented a second time:
// one of its two holders is not the user, so the whole family goes.
func (s *Service) revokeReused(ctx context.Context, rt *store.RefreshToken, now time.Time) error {
	if err := s.store.RevokeSession(ctx, rt.SessionID, now); err != nil {
		return err
	}
	s.principals.forget("s:" + rt.SessionID)
	if sess, err := s.store.FindSession(ctx, rt.SessionID); err == nil {
		s.forgetSession(sess) // its cookie too, in the shared cache
	} else {
		s.invalidateSession(ctx, &store.Session{ID: rt.SessionID})
	}
	s.audit.Record(ctx, audit.Event{Action: audit.ActionRefreshReuse, Outcome: audit.Failure, ActorID: rt.UserID,
		TargetType: "session", TargetID: rt.SessionID})
	return errBadRefresh
}

// Logout revokes the principal's session: its refresh tokens, access tokens
// and browser cookie stop working on their next use.
func (s *Service) Logout(ctx context.Context, p access.Principal) error {
	if p.SessionID == "" {
		return fault.New(fault.ErrFailedPrecondition, "an API key has no session to end; revoke the key instead")
	}
	sess, err := s.store.FindSession(ctx, p.SessionID)
	if err != nil {
		return err
	}
	if err := s.store.RevokeSession(ctx, sess.ID, s.now().UTC()); err != nil {
		return err
	}
	s.forgetSession(sess)
	s.invalidateSession(ctx, sess)
	s.audit.Record(ctx, audit.Event{Action: audit.ActionLogout, TargetType: "session", TargetID: sess.ID})
	return nil
}

// CurrentUser returns the principal's account.
func (s *Service) CurrentUser(ctx context.Context, p access.Principal) (*store.User, error) {
	return s.store.FindUserByID(ctx, p.UserID)
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
