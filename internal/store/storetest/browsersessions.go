package storetest

import (
	"crypto/sha256"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/berthhq/berth/internal/fault"
	"github.com/berthhq/berth/internal/store"
)

var browserSessionTests = []test{
	{"MethodAndCookie", testSessionMethodAndCookie},
	{"DuplicateCookie", testSessionDuplicateCookie},
	{"RevokeUserSessions", testRevokeUserSessions},
}

// cookieHash returns the SHA-256 of a new random cookie.
func cookieHash() []byte {
	h := sha256.Sum256([]byte("cookie-" + uuid.NewString()))
	return h[:]
}

// browserSession starts a session of u with a cookie, by the given method.
func (e *env) browserSession(u *store.User, method string) *store.Session {
	e.t.Helper()
	now := e.tick()
	sess := &store.Session{
		ID:            uuid.NewString(),
		UserID:        u.ID,
		CreatedAt:     now,
		ExpiresAt:     now.Add(12 * time.Hour),
		SourceAddress: "192.0.2.7",
		UserAgent:     "Mozilla/5.0",
		Method:        method,
		CookieHash:    cookieHash(),
	}
	if err := e.s.CreateSession(e.ctx, sess, nil); err != nil {
		e.t.Fatalf("create browser session: %v", err)
	}
	return sess
}

func testSessionMethodAndCookie(t *testing.T, e *env) {
	u := e.user()
	web := e.browserSession(u, "oidc:google")
	got, err := e.s.FindSession(e.ctx, web.ID)
	must(t, err)
	equal(t, "by id", got, web)
	got, err = e.s.FindSessionByCookie(e.ctx, web.CookieHash)
	must(t, err)
	equal(t, "by cookie", got, web)

	// An API session: the method defaults to password, and there is no cookie.
	api, _ := e.session(u)
	equal(t, "default method", api.Method, store.MethodPassword)
	got, err = e.s.FindSession(e.ctx, api.ID)
	must(t, err)
	equal(t, "API session", got, api)
	if got.Method != "password" || got.CookieHash != nil {
		t.Fatalf("API session read as method %q, cookie %x", got.Method, got.CookieHash)
	}
	// An empty cookie hash is none, and many sessions have none.
	bare := &store.Session{ID: uuid.NewString(), UserID: u.ID, CreatedAt: e.tick(), ExpiresAt: e.tick(), CookieHash: []byte{}}
	must(t, e.s.CreateSession(e.ctx, bare, nil))
	equal(t, "empty cookie written back", bare.CookieHash, []byte(nil))
	got, err = e.s.FindSession(e.ctx, bare.ID)
	must(t, err)
	equal(t, "session without cookie", got, bare)

	for _, hash := range [][]byte{cookieHash(), nil, {}} {
		_, err = e.s.FindSessionByCookie(e.ctx, hash)
		wantMessage(t, err, fault.ErrNotFound, "session not found")
	}

	// A revoked session is still found by its cookie; the caller checks.
	at := e.tick()
	must(t, e.s.RevokeSession(e.ctx, web.ID, at))
	got, err = e.s.FindSessionByCookie(e.ctx, web.CookieHash)
	must(t, err)
	equal(t, "revoked at", got.RevokedAt, ptr(micro(at)))
}

func testSessionDuplicateCookie(t *testing.T, e *env) {
	u := e.user()
	first := e.browserSession(u, store.MethodPassword)
	now := e.tick()
	dup := &store.Session{ID: uuid.NewString(), UserID: u.ID, CreatedAt: now, ExpiresAt: now.Add(time.Hour), CookieHash: first.CookieHash}
	wantFault(t, e.s.CreateSession(e.ctx, dup, nil), fault.ErrConflict)
	_, err := e.s.FindSession(e.ctx, dup.ID)
	wantFault(t, err, fault.ErrNotFound)
	got, err := e.s.FindSessionByCookie(e.ctx, first.CookieHash)
	must(t, err)
	equal(t, "the cookie's session", got.ID, first.ID)
}

func testRevokeUserSessions(t *testing.T, e *env) {
	u, other := e.user(), e.user()
	a, _ := e.session(u)
	b := e.browserSession(u, "oidc:github")
	old, _ := e.session(u)
	earlier := e.tick()
	must(t, e.s.RevokeSession(e.ctx, old.ID, earlier))
	theirs, _ := e.session(other)

	at := e.tick()
	n, err := e.s.RevokeUserSessions(e.ctx, u.ID, at)
	must(t, err)
	equal(t, "revoked", n, 2)
	equal(t, "a", e.sessionRevokedAt(a.ID), ptr(micro(at)))
	equal(t, "b", e.sessionRevokedAt(b.ID), ptr(micro(at)))
	equal(t, "an earlier revocation stays", e.sessionRevokedAt(old.ID), ptr(micro(earlier)))
	equal(t, "another account's", e.sessionRevokedAt(theirs.ID), (*time.Time)(nil))

	n, err = e.s.RevokeUserSessions(e.ctx, u.ID, e.tick())
	must(t, err)
	equal(t, "revoked again", n, 0)
	equal(t, "first revocation kept", e.sessionRevokedAt(a.ID), ptr(micro(at)))
	n, err = e.s.RevokeUserSessions(e.ctx, uuid.NewString(), e.tick())
	must(t, err)
	equal(t, "unknown account", n, 0)
}
