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
	{"Children", testAPIKeyChildren},
	{"RevokeCascades", testRevokeAPIKeyCascades},
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
	revokedKeys, err := e.s.RevokeAPIKey(e.ctx, u.ID, k2.ID, e.tick())
	must(t, err)
	revoked := revokedKeys[0]

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
	equal(t, "revoked", got, []*store.APIKey{&want})
	equal(t, "stored", e.findKey(k.Prefix), &want)

	got, err = e.s.RevokeAPIKey(e.ctx, u.ID, k.ID, e.tick())
	must(t, err)
	equal(t, "revoked again keeps the first time", got, []*store.APIKey{&want})

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

func testAPIKeyChildren(t *testing.T, e *env) {
	u, other := e.user(), e.user()
	parent := e.apiKey(u, func(k *store.APIKey) { k.ManageKeys = true })
	child := e.apiKey(u, func(k *store.APIKey) { k.ParentID = parent.ID })
	equal(t, "found with its scope", e.findKey(parent.Prefix), parent)
	equal(t, "found with its parent", e.findKey(child.Prefix), child)
	byID, err := e.s.FindAPIKey(e.ctx, u.ID, child.ID)
	must(t, err)
	equal(t, "found by id", byID, child)
	_, err = e.s.FindAPIKey(e.ctx, other.ID, child.ID)
	wantMessage(t, err, fault.ErrNotFound, "API key not found")

	// A parent of another account, or one that does not exist, creates
	// nothing.
	for _, parentID := range []string{e.apiKey(other).ID, uuid.NewString()} {
		k := e.newAPIKey(u, func(k *store.APIKey) { k.ParentID = parentID })
		wantFault(t, e.s.CreateAPIKey(e.ctx, k), fault.ErrUnauthenticated)
		_, err := e.s.FindAPIKeyByPrefix(e.ctx, k.Prefix)
		wantFault(t, err, fault.ErrNotFound)
	}
}

func testRevokeAPIKeyCascades(t *testing.T, e *env) {
	u := e.user()
	root := e.apiKey(u, func(k *store.APIKey) { k.ManageKeys = true })
	child := e.apiKey(u, func(k *store.APIKey) { k.ParentID, k.ManageKeys = root.ID, true })
	grandchild := e.apiKey(u, func(k *store.APIKey) { k.ParentID = child.ID })
	sibling := e.apiKey(u)

	at := e.tick()
	got, err := e.s.RevokeAPIKey(e.ctx, u.ID, child.ID, at)
	must(t, err)
	if len(got) != 2 || got[0].ID != child.ID || got[1].ID != grandchild.ID {
		t.Fatalf("revoking the child revoked %v, want the child, then the grandchild", got)
	}
	for _, k := range got {
		equal(t, "revoked at", k.RevokedAt, ptr(micro(at)))
	}
	equal(t, "root untouched", e.findKey(root.Prefix).RevokedAt, (*time.Time)(nil))
	equal(t, "sibling untouched", e.findKey(sibling.Prefix).RevokedAt, (*time.Time)(nil))
	equal(t, "grandchild sees a revoked ancestor", e.findKey(grandchild.Prefix).AncestorRevoked, true)

	// A revoked key creates nothing.
	late := e.newAPIKey(u, func(k *store.APIKey) { k.ParentID = child.ID })
	wantFault(t, e.s.CreateAPIKey(e.ctx, late), fault.ErrUnauthenticated)

	// Revoking the root reaches every key below it.
	got, err = e.s.RevokeAPIKey(e.ctx, u.ID, root.ID, e.tick())
	must(t, err)
	if len(got) != 3 || got[0].ID != root.ID {
		t.Fatalf("revoking the root returned %v, want it and its two descendants", got)
	}
	equal(t, "an earlier revocation keeps its time", e.findKey(grandchild.Prefix).RevokedAt, ptr(micro(at)))
	equal(t, "the root has no ancestor", e.findKey(root.Prefix).AncestorRevoked, false)
}
