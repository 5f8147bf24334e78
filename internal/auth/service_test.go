package auth_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/berthhq/berth/internal/access"
	"github.com/berthhq/berth/internal/audit"
	"github.com/berthhq/berth/internal/auth"
	"github.com/berthhq/berth/internal/fault"
	"github.com/berthhq/berth/internal/store"
)

// newService returns a Service on a fresh SQLite store with a settable clock.
func newService(t *testing.T, allowRegistration bool) (*auth.Service, *clock) {
	t.Helper()
	st, err := store.Open(t.Context(), filepath.Join(t.TempDir(), "berth.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{t: time.Now().UTC().Truncate(time.Second)}
	tokens := auth.NewTokenIssuer(auth.NewSigningKey(priv), "berth", "berth-api", 15*time.Minute, c.now)
	rec := audit.NewRecorder(st, slog.New(slog.NewTextHandler(io.Discard, nil)), c.now)
	svc, err := auth.NewService(st, tokens, auth.Config{AllowRegistration: allowRegistration, RefreshTTL: 24 * time.Hour}, rec, c.now)
	if err != nil {
		t.Fatal(err)
	}
	return svc, c
}

func signUp(t *testing.T, svc *auth.Service, email string) (*store.User, *auth.Tokens) {
	t.Helper()
	u, tok, err := svc.Register(t.Context(), email, "correct horse battery", "", auth.Client{SourceAddress: "10.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	return u, tok
}

func principalOf(t *testing.T, svc *auth.Service, tok *auth.Tokens) access.Principal {
	t.Helper()
	p, err := svc.Authenticate(t.Context(), auth.Credentials{Authorization: "Bearer " + tok.AccessToken})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestStreamTickets: a ticket works once, for its own target, within its
// 60 seconds, and not after its session ended.
func TestStreamTickets(t *testing.T) {
	t.Parallel()
	svc, c := newService(t, true)
	ctx := t.Context()
	u, tok := signUp(t, svc, "ticket@example.com")
	p := principalOf(t, svc, tok)
	target := "task:11111111-2222-4333-8444-555555555555"

	for _, bad := range []string{"", "task:", "task:not-a-uuid", "job:11111111-2222-4333-8444-555555555555", "ws:x"} {
		if _, _, err := svc.CreateStreamTicket(ctx, p, bad); !errors.Is(err, fault.ErrInvalid) {
			t.Errorf("target %q: %v", bad, err)
		}
	}

	ticket, expires, err := svc.CreateStreamTicket(ctx, p, target)
	if err != nil || !expires.Equal(c.t.Add(auth.TicketTTL)) {
		t.Fatalf("CreateStreamTicket: %v %v", expires, err)
	}
	if _, err := svc.RedeemStreamTicket(ctx, ticket, "workspace:11111111-2222-4333-8444-555555555555"); !errors.Is(err, fault.ErrUnauthenticated) {
		t.Errorf("other target: %v", err)
	}
	// The wrong-target attempt spent the ticket: single use means single use.
	if _, err := svc.RedeemStreamTicket(ctx, ticket, target); !errors.Is(err, fault.ErrUnauthenticated) {
		t.Errorf("spent ticket: %v", err)
	}

	ticket, _, _ = svc.CreateStreamTicket(ctx, p, target)
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for range 8 {
		wg.Go(func() {
			if got, err := svc.RedeemStreamTicket(ctx, ticket, target); err == nil {
				mu.Lock()
				wins++
				mu.Unlock()
				if got.UserID != u.ID || got.Method != access.MethodTicket {
					t.Errorf("redeemed as %+v", got)
				}
			}
		})
	}
	wg.Wait()
	if wins != 1 {
		t.Errorf("%d concurrent redeems succeeded, want 1", wins)
	}

	ticket, _, _ = svc.CreateStreamTicket(ctx, p, target)
	c.t = c.t.Add(auth.TicketTTL)
	if _, err := svc.RedeemStreamTicket(ctx, ticket, target); !errors.Is(err, fault.ErrUnauthenticated) {
		t.Errorf("expired ticket: %v", err)
	}

	ticket, _, _ = svc.CreateStreamTicket(ctx, p, "ws")
	if err := svc.Logout(ctx, p); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.RedeemStreamTicket(ctx, ticket, "ws"); !errors.Is(err, fault.ErrUnauthenticated) {
		t.Errorf("ticket of an ended session: %v", err)
	}
}

// TestLoginThrottleBackoff: after 5 free failures each failure doubles the
// wait; the wait passes with time; success resets the account.
func TestLoginThrottleBackoff(t *testing.T) {
	t.Parallel()
	svc, c := newService(t, true)
	ctx := t.Context()
	signUp(t, svc, "slow@example.com")
	client := auth.Client{SourceAddress: "10.0.0.2"}
	fail := func() error {
		_, _, err := svc.Login(ctx, "slow@example.com", "wrong password!", client)
		return err
	}
	for i := range 5 {
		if err := fail(); !errors.Is(err, fault.ErrUnauthenticated) {
			t.Fatalf("failure %d: %v", i+1, err)
		}
	}
	if err := fail(); !errors.Is(err, fault.ErrUnauthenticated) { // the 6th is checked, then locks 1s
		t.Fatalf("6th: %v", err)
	}
	if _, _, err := svc.Login(ctx, "slow@example.com", "correct horse battery", client); !errors.Is(err, fault.ErrResourceExhausted) {
		t.Fatalf("locked: %v", err)
	}
	c.t = c.t.Add(time.Second)
	if err := fail(); !errors.Is(err, fault.ErrUnauthenticated) { // 7th: locks 2s
		t.Fatalf("7th: %v", err)
	}
	c.t = c.t.Add(time.Second)
	if err := fail(); !errors.Is(err, fault.ErrResourceExhausted) {
		t.Fatalf("still locked after 1s of 2s: %v", err)
	}
	c.t = c.t.Add(time.Second)
	if _, _, err := svc.Login(ctx, "slow@example.com", "correct horse battery", client); err != nil {
		t.Fatalf("after the wait: %v", err)
	}
	for range 5 { // reset: five free failures again
		if err := fail(); !errors.Is(err, fault.ErrUnauthenticated) {
			t.Fatalf("after reset: %v", err)
		}
	}
}

// TestExternalSignIn links by issuer and subject only: the same subject is
// the same account whatever its email says, a different subject with the
// same email is a different account, and a password account with that
// email is untouched.
func TestExternalSignIn(t *testing.T) {
	t.Parallel()
	svc, _ := newService(t, false)
	ctx := t.Context()
	pw, _ := signUp(t, svc, "shared@example.com") // the first account: admin
	first, err := svc.SignInExternal(ctx, auth.ExternalIdentity{Provider: "idp", Issuer: "https://idp.example", Subject: "s-1", Email: "Shared@Example.com", Name: "Ext"}, auth.Client{})
	if err != nil {
		t.Fatal(err)
	}
	if !first.Created || first.User.ID == pw.ID || first.User.Email != "shared@example.com" || first.User.Role != store.RoleMember {
		t.Fatalf("first sign-in = %+v", first.User)
	}
	again, err := svc.SignInExternal(ctx, auth.ExternalIdentity{Provider: "idp", Issuer: "https://idp.example", Subject: "s-1", Email: "renamed@example.com"}, auth.Client{})
	if err != nil || again.Created || again.User.ID != first.User.ID || again.User.Email != "renamed@example.com" {
		t.Fatalf("second sign-in = %+v, %v", again, err)
	}
	other, err := svc.SignInExternal(ctx, auth.ExternalIdentity{Provider: "idp", Issuer: "https://other.example", Subject: "s-1", Email: "shared@example.com"}, auth.Client{})
	if err != nil || other.User.ID == first.User.ID {
		t.Fatalf("other issuer = %+v, %v", other, err)
	}
	p, err := svc.Authenticate(ctx, auth.Credentials{Cookie: first.Cookie})
	if err != nil || p.UserID != first.User.ID || p.Method != access.MethodCookie {
		t.Fatalf("cookie auth = %+v, %v", p, err)
	}
	if err := svc.Logout(ctx, p); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Authenticate(ctx, auth.Credentials{Cookie: first.Cookie}); !errors.Is(err, fault.ErrUnauthenticated) {
		t.Errorf("cookie after logout: %v", err)
	}
	if _, err := svc.Authenticate(context.Background(), auth.Credentials{Cookie: "berth_sess_made_up"}); !errors.Is(err, fault.ErrUnauthenticated) {
		t.Errorf("made-up cookie: %v", err)
	}
	// The password account still logs in with its password.
	if _, _, err := svc.Login(ctx, "shared@example.com", "correct horse battery", auth.Client{}); err != nil {
		t.Errorf("password login: %v", err)
	}
}

// TestKeyTickets: a stream ticket asked for by an API key acts as that key
// — with the key's role, not the account's — and stops working, at
// redemption and at every re-check, once the key is revoked.
func TestKeyTickets(t *testing.T) {
	t.Parallel()
	svc, _ := newService(t, true)
	ctx := t.Context()
	_, tok := signUp(t, svc, "admin@example.com") // the first account: an admin
	session := principalOf(t, svc, tok)
	key, k, err := svc.CreateAPIKey(ctx, session, auth.NewAPIKey{Name: "read-only", Role: store.RoleViewer})
	if err != nil {
		t.Fatal(err)
	}
	p, err := svc.Authenticate(ctx, auth.Credentials{APIKey: key})
	if err != nil || p.Role != store.RoleViewer || p.APIKeyID != k.ID {
		t.Fatalf("the viewer key authenticates as %+v, %v", p, err)
	}

	redeem := func() (access.Principal, error) {
		t.Helper()
		ticket, _, err := svc.CreateStreamTicket(ctx, p, "ws")
		if err != nil {
			t.Fatal(err)
		}
		return svc.RedeemStreamTicket(ctx, ticket, "ws")
	}
	got, err := redeem()
	if err != nil {
		t.Fatal(err)
	}
	if got.Role != store.RoleViewer || got.APIKeyID != k.ID || got.UserID != session.UserID {
		t.Fatalf("a viewer key's ticket redeems as %+v, want the key's viewer role", got)
	}
	if cur, err := svc.RecheckTicket(ctx, got); err != nil || cur.Role != store.RoleViewer {
		t.Fatalf("RecheckTicket = %+v, %v", cur, err)
	}
	unused, _, err := svc.CreateStreamTicket(ctx, p, "ws")
	if err != nil {
		t.Fatal(err)
	}

	if err := svc.RevokeAPIKey(ctx, session, k.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.RecheckTicket(ctx, got); !errors.Is(err, fault.ErrUnauthenticated) {
		t.Errorf("re-check of an open stream after the key was revoked: %v, want unauthenticated", err)
	}
	if _, err := svc.RedeemStreamTicket(ctx, unused, "ws"); !errors.Is(err, fault.ErrUnauthenticated) {
		t.Errorf("a revoked key's ticket redeemed: %v, want unauthenticated", err)
	}
}
