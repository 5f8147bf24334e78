package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"strings"
	"time"

	"github.com/berthhq/berth/internal/audit"
	"github.com/berthhq/berth/internal/fault"
	"github.com/berthhq/berth/internal/store"
)

// LoginCodeTTL is how long the one-time code of a command-line OIDC
// sign-in works: the CLI exchanges it the moment its loopback listener
// receives it.
const LoginCodeTTL = 60 * time.Second

// loginCodeTarget prefixes the stream-ticket target of a login code: the
// code is stored as a stream ticket (hashed, single use, expiring, bound
// to its user) whose target is this prefix and the PKCE challenge. A
// stream target is never of this form (CheckTicketTarget), so a login code
// cannot open a stream and a stream ticket cannot sign anyone in.
const loginCodeTarget = "cli-login:"

// LoginCode is the one-time code a command-line OIDC sign-in hands the
// CLI's loopback listener.
type LoginCode struct {
	Code      string
	ExpiresAt time.Time
	User      *store.User
	Created   bool // the account was created by this sign-in
}

// errBadLoginCode is the one answer to every code that does not sign in:
// unknown, used, expired, presented with the wrong verifier, or of an
// account disabled since.
var errBadLoginCode = fault.New(fault.ErrUnauthenticated, "login code is invalid, expired, already used or not for this verifier; sign in again")

// SignInExternalCLI links or creates the account of an external identity
// as SignInExternal does, but instead of a browser session it issues a
// single-use code, valid for LoginCodeTTL, bound to the account and to
// challenge (the S256 PKCE challenge the CLI sent): ExchangeLoginCode
// turns it into tokens for whoever holds the matching verifier. Only the
// code's hash is stored.
func (s *Service) SignInExternalCLI(ctx context.Context, id ExternalIdentity, challenge string) (*LoginCode, error) {
	if len(challenge) != 43 {
		return nil, fault.Invalid("cli_challenge", "must be an S256 PKCE challenge")
	}
	u, created, now, err := s.externalAccount(ctx, id)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, 32)
	_, _ = rand.Read(buf) // crypto/rand.Read never fails
	code := "berth_lc_" + base64.RawURLEncoding.EncodeToString(buf)
	t := &store.StreamTicket{
		TicketHash: hashToken(code),
		UserID:     u.ID,
		Target:     loginCodeTarget + challenge,
		CreatedAt:  now,
		ExpiresAt:  now.Add(LoginCodeTTL),
	}
	if err := s.store.CreateStreamTicket(ctx, t); err != nil {
		return nil, err
	}
	s.audit.Record(ctx, audit.Event{Action: audit.ActionOIDCLogin, ActorID: u.ID, TargetType: "user", TargetID: u.ID,
		Details: map[string]string{"provider": id.Provider, "created": boolString(created), "session": "cli"}})
	return &LoginCode{Code: code, ExpiresAt: t.ExpiresAt, User: u, Created: created}, nil
}

// ExchangeLoginCode spends a code of SignInExternalCLI and, when verifier
// is the PKCE verifier of the challenge it is bound to and the account is
// still enabled, starts a session and returns its tokens. The code is
// spent whatever follows, so a wrong verifier burns it: a stolen code is
// worth one guess. Every refusal is the same Unauthenticated error, which
// the server counts as a failed sign-in of the caller's address.
func (s *Service) ExchangeLoginCode(ctx context.Context, code, verifier string, client Client) (*store.User, *Tokens, error) {
	if !strings.HasPrefix(code, "berth_lc_") {
		return nil, nil, errBadLoginCode
	}
	t, err := s.store.RedeemStreamTicket(ctx, hashToken(code), s.now().UTC())
	if errors.Is(err, fault.ErrNotFound) {
		return nil, nil, errBadLoginCode
	}
	if err != nil {
		return nil, nil, err
	}
	sum := sha256.Sum256([]byte(verifier))
	want := loginCodeTarget + base64.RawURLEncoding.EncodeToString(sum[:])
	if subtle.ConstantTimeCompare([]byte(t.Target), []byte(want)) != 1 {
		s.audit.Record(ctx, audit.Event{Action: audit.ActionOIDCLogin, Outcome: audit.Failure, ActorID: t.UserID,
			TargetType: "user", TargetID: t.UserID, Details: map[string]string{"session": "cli", "reason": "code verifier does not match"}})
		return nil, nil, errBadLoginCode
	}
	u, err := s.store.FindUserByID(ctx, t.UserID)
	if errors.Is(err, fault.ErrNotFound) {
		return nil, nil, errBadLoginCode
	}
	if err != nil {
		return nil, nil, err
	}
	if u.Disabled {
		s.audit.Record(ctx, audit.Event{Action: audit.ActionOIDCLogin, Outcome: audit.Failure, ActorID: u.ID,
			TargetType: "user", TargetID: u.ID, Details: map[string]string{"session": "cli", "reason": "disabled"}})
		return nil, nil, errBadLoginCode
	}
	tokens, err := s.startSession(ctx, u, client)
	if err != nil {
		return nil, nil, err
	}
	return u, tokens, nil
}
