// Package auth holds berth's accounts and credentials: password accounts
// (argon2id), sessions with short-lived access tokens (EdDSA JWT) and
// single-use refresh tokens stored as hashes, and the authentication of
// incoming requests.
//
// Its handler.go translates the generated AuthService to the Service
// here.
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
	// PasswordHashMemoryMiB is the memory password hashing may take at
	// once (see HashSlots); 0 means 160 MiB.
	PasswordHashMemoryMiB int64
	// Shared, when set, makes authentication read sessions, accounts and
	// API keys through its caches (normally Valkey-backed) instead of
	// through this instance's own short-lived principal cache, which other
	// instances' changes cannot reach (see shared.go).
	Shared *SharedCaches
}

// Service signs people in and authenticates requests.
type Service struct {
	store      *store.Store
	tokens     *TokenIssuer
	cfg        Config
	audit      *audit.Recorder
	now        func() time.Time
	dummyHash  func() string
	hashes     *hashGate
	principals *principalCache
	shared     *sharedReads // nil: no shared cache (Config.Shared)
	// accounts slows password guessing per account. Guessing per source
	// address (passwords, API keys, tokens, tickets) is limited by the
	// server's failed-sign-in budget, which every protocol front spends.
	accounts *throttle
}

// Throttling: per account, 5 failures are free, then each failure doubles
// the wait (1s, 2s, 4s … up to 15 minutes). Failures are forgotten 15
// minutes after the last one.
const (
	freeAccountFailures = 5
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
	// that needs it waits for it. It takes a hashing slot like any other
	// hash, waiting as long as it must.
	if cfg.PasswordHashMemoryMiB <= 0 {
		cfg.PasswordHashMemoryMiB = 160
	}
	hashes := newHashGate(cfg.PasswordHashMemoryMiB)
	dummy := sync.OnceValue(func() string {
		var (
			h   string
			err error
		)
		_ = hashes.run(context.Background(), -1, func() { h, err = HashPassword(rand.Text()) }) // waits forever: no error
		if err != nil {
			panic("auth: hashing the dummy password: " + err.Error()) // only a broken crypto/rand fails
		}
		return h
	})
	go dummy()
	var shared *sharedReads
	if c := cfg.Shared; c != nil {
		shared = &sharedReads{sessions: c.Sessions, users: c.Users, keys: c.Keys}
	}
	return &Service{
		shared:     shared,
		store:      st,
		tokens:     tokens,
		cfg:        cfg,
		audit:      rec,
		now:        now,
		dummyHash:  dummy,
		hashes:     hashes,
		principals: newPrincipalCache(),
		accounts:   newThrottle(freeAccountFailures, throttleBase, throttleMax, throttleForget, now),
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
//
// Every attempt that gets as far as the password costs exactly one hash,
// taken before the email is looked at: a taken email costs what a new one
// costs, and answers no faster. (The AlreadyExists answer itself says that
// the email is taken, as any sign-up must; the server spends the caller's
// failed-sign-in budget on it, so emails cannot be probed in bulk.) With
// registration closed, a server that has an account refuses before hashing
// — a refusal that says nothing about any email — and the rule is checked
// again, atomically, when the account is stored.
func (s *Service) Register(ctx context.Context, email, password, name string, client Client) (*store.User, *Tokens, error) {
	email = normalizeEmail(email)
	if strings.EqualFold(password, email) {
		return nil, nil, fault.Invalid("password", "must not be the same as the email")
	}
	if open, err := s.RegistrationOpen(ctx); err != nil {
		return nil, nil, err
	} else if !open {
		return nil, nil, store.ErrRegistrationClosed
	}
	if name = strings.TrimSpace(name); name == "" {
		name, _, _ = strings.Cut(email, "@")
	}
	hash, err := s.hashes.hash(ctx, password)
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
	create := s.store.CreateUser
	if !s.cfg.AllowRegistration {
		create = s.store.CreateFirstUser // only while no account exists, decided in the INSERT
	}
	if err := create(ctx, u); err != nil {
		s.audit.Record(ctx, audit.Event{Action: audit.ActionRegister, Outcome: audit.Failure,
			Details: map[string]string{"email": email, "reason": registerFailure(err)}})
		return nil, nil, err
	}
	s.audit.Record(ctx, audit.Event{Action: audit.ActionRegister, Outcome: audit.Success, ActorID: u.ID,
		TargetType: "user", TargetID: u.ID, Details: map[string]string{"email": u.Email, "role": string(u.Role)}})
	tokens, err := s.startSession(ctx, u, client)
	if err != nil {
		return nil, nil, err
	}
	return u, tokens, nil
}

// registerFailure names, for the audit log, why an account was not made.
func registerFailure(err error) string {
	switch {
	case errors.Is(err, store.ErrRegistrationClosed):
		return "registration closed"
	case errors.Is(err, fault.ErrConflict):
		return "email taken"
	}
	return "error"
}

// Login checks an email and password and starts a session. Failures are
// throttled per account (see the constants above; per source address the
// server's failed-sign-in budget applies, before Login is called); whether
// the account exists never changes the answer or its cost. A refusal for
// lack of a hashing slot is no failure: it is not counted.
func (s *Service) Login(ctx context.Context, email, password string, client Client) (*store.User, *Tokens, error) {
	u, err := s.checkLogin(ctx, email, password)
	if err != nil {
		return nil, nil, err
	}
	tokens, err := s.startSession(ctx, u, client)
	if err != nil {
		return nil, nil, err
	}
	s.audit.Record(ctx, audit.Event{Action: audit.ActionLogin, ActorID: u.ID, TargetType: "user", TargetID: u.ID})
	return u, tokens, nil
}

// LoginBrowser signs in with a password as Login does, but starts a cookie
// session (the kind an OIDC sign-in starts) instead of issuing tokens: the
// web console's script then never holds a credential.
func (s *Service) LoginBrowser(ctx context.Context, email, password string, client Client) (*BrowserSession, error) {
	u, err := s.checkLogin(ctx, email, password)
	if err != nil {
		return nil, err
	}
	session, err := s.startBrowserSession(ctx, u, client, "password", *u.LastLoginAt)
	if err != nil {
		return nil, err
	}
	s.audit.Record(ctx, audit.Event{Action: audit.ActionLogin, ActorID: u.ID, TargetType: "user", TargetID: u.ID,
		Details: map[string]string{"session": "cookie"}})
	return session, nil
}

// checkLogin is the password check both logins share: the per-account
// throttle, the password, and the last-login time.
func (s *Service) checkLogin(ctx context.Context, email, password string) (*store.User, error) {
	email = normalizeEmail(email)
	acct := email
	if d := s.accounts.wait(acct); d > 0 {
		s.audit.Record(ctx, audit.Event{Action: audit.ActionLogin, Outcome: audit.Failure,
			Details: map[string]string{"email": email, "reason": "throttled"}})
		return nil, &ThrottledError{Free: freeAccountFailures, Wait: d}
	}
	u, err := s.checkPassword(ctx, email, password)
	if err != nil {
		if errors.Is(err, errBadCredentials) {
			s.accounts.fail(acct)
			s.audit.Record(ctx, audit.Event{Action: audit.ActionLogin, Outcome: audit.Failure,
				Details: map[string]string{"email": email}})
		}
		return nil, err
	}
	s.accounts.reset(acct)
	now := s.now().UTC()
	if err := s.store.SetUserLastLogin(ctx, u.ID, now); err != nil {
		return nil, err
	}
	u.LastLoginAt = &now
	return u, nil
}

// checkPassword returns the account if the password is right and the
// account enabled, and errBadCredentials otherwise — after the same argon2id
// work either way.
func (s *Service) checkPassword(ctx context.Context, email, password string) (*store.User, error) {
	u, err := s.store.FindUserByEmail(ctx, email)
	if errors.Is(err, fault.ErrNotFound) || err == nil && u.PasswordHash == "" {
		// The same work, in the same kind of slot, as a real check. Its
		// only errors are the gate's (busy, or the caller gave up).
		if _, err := s.hashes.verify(ctx, s.dummyHash(), password); err != nil {
			return nil, err
		}
		return nil, errBadCredentials
	}
	if err != nil {
		return nil, err
	}
	ok, err := s.hashes.verify(ctx, u.PasswordHash, password)
	if errors.Is(err, errBadHash) {
		return nil, fmt.Errorf("auth: verify password of %s: %w", u.ID, err)
	}
	if err != nil {
		return nil, err // busy, or the caller gave up: not a failed sign-in
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
