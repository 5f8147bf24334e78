package auth_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/berthhq/berth/internal/auth"
	"github.com/berthhq/berth/internal/store"
)

// clock is a settable fake clock.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newKey(t *testing.T) (*auth.SigningKey, ed25519.PrivateKey) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return auth.NewSigningKey(priv), priv
}

func TestTokenRoundTrip(t *testing.T) {
	t.Parallel()
	key, _ := newKey(t)
	c := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	issuer := auth.NewTokenIssuer(key, "berth", "berth-api", 15*time.Minute, c.now)
	raw, expires, err := issuer.Issue("user-1", "session-1", store.RoleMember)
	if err != nil {
		t.Fatal(err)
	}
	if !expires.Equal(c.t.Add(15 * time.Minute)) {
		t.Errorf("expires %v", expires)
	}
	p, err := issuer.Verify(raw)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if p.UserID != "user-1" || p.SessionID != "session-1" || p.Role != store.RoleMember {
		t.Errorf("principal = %+v", p)
	}
}

// TestTokenAttacks: every forged, misdirected or stale token is rejected.
func TestTokenAttacks(t *testing.T) {
	t.Parallel()
	key, priv := newKey(t)
	otherKey, otherPriv := newKey(t)
	c := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	issuer := auth.NewTokenIssuer(key, "berth", "berth-api", 15*time.Minute, c.now)

	claims := func(mod func(jwt.MapClaims)) jwt.MapClaims {
		m := jwt.MapClaims{
			"iss": "berth", "aud": []string{"berth-api"}, "sub": "user-1", "sid": "s-1", "role": "admin",
			"iat": c.t.Unix(), "nbf": c.t.Unix(), "exp": c.t.Add(time.Minute).Unix(),
		}
		if mod != nil {
			mod(m)
		}
		return m
	}
	sign := func(m jwt.MapClaims, kid string, k ed25519.PrivateKey) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, m)
		tok.Header["kid"] = kid
		s, err := tok.SignedString(k)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	valid := sign(claims(nil), key.ID, priv)
	if _, err := issuer.Verify(valid); err != nil {
		t.Fatalf("control token rejected: %v", err)
	}

	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, claims(nil)).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	hsTok := jwt.NewWithClaims(jwt.SigningMethodHS256, claims(nil))
	hsTok.Header["kid"] = key.ID
	hs, err := hsTok.SignedString([]byte(priv.Public().(ed25519.PublicKey)))
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(valid, ".")
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	sig[0] ^= 0xff
	badSig := parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(sig)

	for name, raw := range map[string]string{
		"alg none":          none,
		"alg swap to HS256": hs,
		"bad signature":     badSig,
		"other key":         sign(claims(nil), otherKey.ID, otherPriv),
		"unknown kid":       sign(claims(nil), "nope", priv),
		"no kid":            sign(claims(nil), "", priv),
		"expired":           sign(claims(func(m jwt.MapClaims) { m["exp"] = c.t.Add(-time.Minute).Unix() }), key.ID, priv),
		"no expiry":         sign(claims(func(m jwt.MapClaims) { delete(m, "exp") }), key.ID, priv),
		"not yet valid":     sign(claims(func(m jwt.MapClaims) { m["nbf"] = c.t.Add(time.Minute).Unix() }), key.ID, priv),
		"issued in future":  sign(claims(func(m jwt.MapClaims) { m["iat"] = c.t.Add(time.Hour).Unix() }), key.ID, priv),
		"wrong issuer":      sign(claims(func(m jwt.MapClaims) { m["iss"] = "someone-else" }), key.ID, priv),
		"wrong audience":    sign(claims(func(m jwt.MapClaims) { m["aud"] = []string{"other-api"} }), key.ID, priv),
		"no session":        sign(claims(func(m jwt.MapClaims) { delete(m, "sid") }), key.ID, priv),
		"unknown role":      sign(claims(func(m jwt.MapClaims) { m["role"] = "root" }), key.ID, priv),
		"garbage":           "not.a.jwt",
	} {
		if _, err := issuer.Verify(raw); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestSigningKeyFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "keys", "jwt.pem")
	first, err := auth.LoadOrCreateSigningKey(path)
	if err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(path)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode: %v %v", info, err)
	}
	again, err := auth.LoadOrCreateSigningKey(path)
	if err != nil || again.ID != first.ID {
		t.Fatalf("reloaded key %v, %v; want id %s", again, err, first.ID)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := auth.LoadOrCreateSigningKey(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("world-readable key accepted: %v", err)
	}
}

func TestPasswordHash(t *testing.T) {
	t.Parallel()
	hash, err := auth.HashPassword("correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(hash, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Errorf("hash %q", hash)
	}
	other, _ := auth.HashPassword("correct horse battery")
	if other == hash {
		t.Error("two hashes of one password are equal: no salt")
	}
	for pw, want := range map[string]bool{"correct horse battery": true, "correct horse batterY": false, "": false} {
		if ok, err := auth.VerifyPassword(hash, pw); err != nil || ok != want {
			t.Errorf("VerifyPassword(%q) = %v, %v", pw, ok, err)
		}
	}
	if _, err := auth.VerifyPassword("$bcrypt$nope", "x"); err == nil {
		t.Error("malformed hash accepted")
	}
	// A stored hash that asks for more memory than the hashing budget
	// counts per hash (4 GiB here), or for a key of unbounded length, is
	// refused before anything is allocated.
	parts := strings.Split(hash, "$")
	for _, bad := range []string{
		strings.Replace(hash, "m=19456", "m=4194304", 1),
		strings.Join(append(parts[:5:5], strings.Repeat("A", 200)), "$"),
	} {
		if _, err := auth.VerifyPassword(bad, "correct horse battery"); err == nil {
			t.Errorf("hash %q accepted", bad)
		}
	}
}

// TestVerifiedTokenExpires: a token verified (and so cached) once is still
// refused after it expires.
func TestVerifiedTokenExpires(t *testing.T) {
	t.Parallel()
	key, _ := newKey(t)
	c := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	issuer := auth.NewTokenIssuer(key, "berth", "berth-api", time.Minute, c.now)
	raw, _, err := issuer.Issue("u", "s", store.RoleViewer)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := issuer.Verify(raw); err != nil {
			t.Fatalf("fresh token: %v", err)
		}
	}
	c.t = c.t.Add(time.Minute + 6*time.Second) // past expiry and the parser's 5s leeway
	if _, err := issuer.Verify(raw); err == nil {
		t.Fatal("expired token accepted from the cache")
	}
}
