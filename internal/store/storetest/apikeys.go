package storetest

import (
	"crypto/sha256"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/berthhq/berth/internal/fault"
	"github.com/berthhq/berth/internal/store"
)

var apiKeyTests = []test{
	{"CreateAndFind", testAPIKeyCreateFind},
	{"Refused", testAPIKeyRefused},
	{"List", testListAPIKeys},
	{"Revoke", testRevokeAPIKey},
	{"Touch", testTouchAPIKey},
}

// apiKey creates an API key of u with defaults, as changed by mods.
func (e *env) apiKey(u *store.User, mods ...func(*store.APIKey)) *store.APIKey {
	e.t.Helper()
	k := e.newAPIKey(u, mods...)
	if err := e.s.CreateAPIKey(e.ctx, k); err != nil {
		e.t.Fatalf("create API key: %v", err)
	}
	return k
}

// newAPIKey returns an API key of u with defaults, not stored.
func (e *env) newAPIKey(u *store.User, mods ...func(*store.APIKey)) *store.APIKey {
	id := uuid.NewString()
	hash := sha256.Sum256([]byte("key-" + id))
	k := &store.APIKey{
		ID:        id,
		UserID:    u.ID,
		Name:      "ci " + id[:4],
		Prefix:    "bk_" + id[:8],
		KeyHash:   hash[:],
		Role:      store.RoleMember,
		CreatedAt: e.tick(),
	}
	for _, m := range mods {
		m(k)
	}
	return k
}

// findKey reads an API key back by its prefix and fails the test on an error.
func (e *env) findKey(prefix string) *store.APIKey {
	e.t.Helper()
	k, err := e.s.FindAPIKeyByPrefix(e.ctx, prefix)
	if err != nil {
		e.t.Fatalf("find API key %s: %v", prefix, err)
	}
	return k
}

func testAPIKeyCreateFind(t *testing.T, e *env) {
	u := e.user()
	exp := e.tick().Add(90 * 24 * time.Hour)
	k := e.apiKey(u, func(k *store.APIKey) {
		k.Role = store.RoleViewer
		k.ExpiresAt = &exp
	})
	equal(t, "expiry written back", k.ExpiresAt, ptr(micro(exp)))
	equal(t, "found", e.findKey(k.Prefix), k)
	plain := e.apiKey(u)
	equal(t, "without optional times", e.findKey(plain.Prefix), plain)

	_, err := e.s.FindAPIKeyByPrefix(e.ctx, "bk_missing")
	wantMessage(t, err, fault.ErrNotFound, "API key not found")
}

func testAPIKeyRefused(t *testing.T, e *env) {
	u := e.user()
	k := e.apiKey(u)
	dup := e.newAPIKey(u, func(d *store.APIKey) { d.Prefix = k.Prefix })
	wantFault(t, e.s.CreateAPIKey(e.ctx, dup), fault.ErrConflict)
	orphan := e.newAPIKey(&store.User{ID: uuid.NewString()})
	wantMessage(t, e.s.CreateAPIKey(e.ctx, orphan), fault.ErrNotFound, "user not found")
	keys, err := e.s.ListAPIKeys(e.ctx, u.ID)
	must(t, err)
	equal(t, "keys", keys, []*store.APIKey{k})
}

func testListAPIKeys(t *testing.T, e *env) {
	u, other := e.user(), e.user()
	k1 := e.apiKey(u)
	k2 := e.apiKey(u)
	// Two keys made at one instant sort by id, descending.
	at := e.tick()
	ka := e.apiKey(u, func(k *store.APIKey) { k.ID, k.CreatedAt = "a-"+k.ID, at })
	kz := e.apiKey(u, func(k *store.APIKey) { k.ID, k.CreatedAt = "z-"+k.ID, at })
	e.apiKey(other)
	revoked, err := e.s.RevokeAPIKey(e.ctx, u.ID, k2.ID, e.tick())
	must(t, err)

	keys, err := e.s.ListAPIKeys(e.ctx, u.ID)
	must(t, err)
	equal(t, "newest first, revoked included", keys, []*store.APIKey{kz, ka, revoked, k1})

	none, err := e.s.ListAPIKeys(e.ctx, e.user().ID)
	must(t, err)
	equal(t, "no keys", none, []*store.APIKey{})
}

func testRevokeAPIKey(t *testing.T, e *env) {
	u, mallory := e.user(), e.user()
	k := e.apiKey(u)

	// Another account's key is not found, and stays as it was.
	_, err := e.s.RevokeAPIKey(e.ctx, mallory.ID, k.ID, e.tick())
	wantMessage(t, err, fault.ErrNotFound, "API key not found")
	equal(t, "untouched", e.findKey(k.Prefix), k)

	first := e.tick()
	got, err := e.s.RevokeAPIKey(e.ctx, u.ID, k.ID, first)
	must(t, err)
	want := *k
	want.RevokedAt = ptr(micro(first))
	equal(t, "revoked", got, &want)
	equal(t, "stored", e.findKey(k.Prefix), &want)

	got, err = e.s.RevokeAPIKey(e.ctx, u.ID, k.ID, e.tick())
	must(t, err)
	equal(t, "revoked again keeps the first time", got, &want)

	_, err = e.s.RevokeAPIKey(e.ctx, u.ID, uuid.NewString(), e.tick())
	wantMessage(t, err, fault.ErrNotFound, "API key not found")
}

func testTouchAPIKey(t *testing.T, e *env) {
	k := e.apiKey(e.user())
	t1, t2, t3 := e.tick(), e.tick(), e.tick()
	must(t, e.s.TouchAPIKey(e.ctx, k.ID, t2))
	equal(t, "touched", e.findKey(k.Prefix).LastUsedAt, ptr(micro(t2)))
	must(t, e.s.TouchAPIKey(e.ctx, k.ID, t1))
	equal(t, "an older touch does not move it back", e.findKey(k.Prefix).LastUsedAt, ptr(micro(t2)))
	must(t, e.s.TouchAPIKey(e.ctx, k.ID, t3))
	equal(t, "a newer touch moves it on", e.findKey(k.Prefix).LastUsedAt, ptr(micro(t3)))
	wantMessage(t, e.s.TouchAPIKey(e.ctx, uuid.NewString(), t3), fault.ErrNotFound, "API key not found")
}
