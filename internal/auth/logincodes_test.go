package auth_test

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/berthhq/berth/internal/auth"
	"github.com/berthhq/berth/internal/fault"
)

// pkce returns a verifier and its S256 challenge.
func pkce(seed string) (verifier, challenge string) {
	verifier = strings.Repeat(seed, 43)[:43]
	sum := sha256.Sum256([]byte(verifier))
	return verifier, base64.RawURLEncoding.EncodeToString(sum[:])
}

var cliIdentity = auth.ExternalIdentity{Provider: "idp", Issuer: "https://idp.example", Subject: "s-cli", Email: "cli@example.com", Name: "CLI"}

// TestLoginCodes: a command-line sign-in's code works once, within its 60
// seconds, only with the verifier of its challenge, never as a stream
// ticket, and a stream ticket never works as a code.
func TestLoginCodes(t *testing.T) {
	t.Parallel()
	svc, c := newService(t, true)
	ctx := t.Context()
	verifier, challenge := pkce("v")

	if _, err := svc.SignInExternalCLI(ctx, cliIdentity, "short"); !errors.Is(err, fault.ErrInvalid) {
		t.Errorf("SignInExternalCLI with a malformed challenge: %v, want ErrInvalid", err)
	}

	code, err := svc.SignInExternalCLI(ctx, cliIdentity, challenge)
	if err != nil || !code.Created || !code.ExpiresAt.Equal(c.t.Add(auth.LoginCodeTTL)) || auth.LoginCodeTTL > time.Minute {
		t.Fatalf("SignInExternalCLI = %+v, %v", code, err)
	}
	// Not a stream ticket.
	for _, target := range []string{"ws", "cli-login:" + challenge} {
		if _, err := svc.RedeemStreamTicket(ctx, code.Code, target); !errors.Is(err, fault.ErrUnauthenticated) {
			t.Errorf("login code redeemed as a stream ticket for %q: %v", target, err)
		}
	}
	// Those attempts spent it (a ticket is spent before its target is
	// compared): take a fresh one.
	code, err = svc.SignInExternalCLI(ctx, cliIdentity, challenge)
	if err != nil {
		t.Fatal(err)
	}
	u, tokens, err := svc.ExchangeLoginCode(ctx, code.Code, verifier, auth.Client{SourceAddress: "127.0.0.1"})
	if err != nil || u.ID != code.User.ID || tokens.AccessToken == "" || tokens.RefreshToken == "" {
		t.Fatalf("ExchangeLoginCode = %v, %+v, %v", u, tokens, err)
	}
	if _, _, err := svc.ExchangeLoginCode(ctx, code.Code, verifier, auth.Client{}); !errors.Is(err, fault.ErrUnauthenticated) {
		t.Errorf("second exchange: %v, want Unauthenticated", err)
	}

	// Expired: at 60 s it no longer works.
	late, err := svc.SignInExternalCLI(ctx, cliIdentity, challenge)
	if err != nil {
		t.Fatal(err)
	}
	c.t = c.t.Add(auth.LoginCodeTTL)
	if _, _, err := svc.ExchangeLoginCode(ctx, late.Code, verifier, auth.Client{}); !errors.Is(err, fault.ErrUnauthenticated) {
		t.Errorf("exchange at expiry: %v, want Unauthenticated", err)
	}

	// Just before expiry it works, with its own verifier only.
	other, otherChallenge := pkce("w")
	inTime, err := svc.SignInExternalCLI(ctx, cliIdentity, otherChallenge)
	if err != nil {
		t.Fatal(err)
	}
	c.t = c.t.Add(auth.LoginCodeTTL - time.Second)
	if _, _, err := svc.ExchangeLoginCode(ctx, inTime.Code, verifier, auth.Client{}); !errors.Is(err, fault.ErrUnauthenticated) {
		t.Errorf("exchange with another code's verifier: %v, want Unauthenticated", err)
	}
	if _, _, err := svc.ExchangeLoginCode(ctx, inTime.Code, other, auth.Client{}); !errors.Is(err, fault.ErrUnauthenticated) {
		t.Errorf("exchange after a wrong verifier: %v, want Unauthenticated (the code is spent)", err)
	}
	again, err := svc.SignInExternalCLI(ctx, cliIdentity, otherChallenge)
	if err != nil {
		t.Fatal(err)
	}
	c.t = c.t.Add(auth.LoginCodeTTL - time.Second)
	if _, _, err := svc.ExchangeLoginCode(ctx, again.Code, other, auth.Client{}); err != nil {
		t.Errorf("exchange 59 s after issue: %v", err)
	}

	// A stream ticket is not a login code, whatever verifier comes with it.
	_, tok := signUp(t, svc, "streams@example.com")
	ticket, _, err := svc.CreateStreamTicket(ctx, principalOf(t, svc, tok), "ws")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := svc.ExchangeLoginCode(ctx, ticket, verifier, auth.Client{}); !errors.Is(err, fault.ErrUnauthenticated) {
		t.Errorf("stream ticket exchanged as a login code: %v", err)
	}
}
