package storetest

import (
	"crypto/sha256"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/berthhq/berth/internal/fault"
	"github.com/berthhq/berth/internal/store"
)

var sessionTests = []test{
	{"CreateAndFind", testCreateSession},
	{"UnknownUser", testSessionUnknownUser},
	{"RefreshRotation", testRefreshRotation},
	{"ConcurrentRefresh", testConcurrentRefresh},
	{"UnknownRefreshToken", testUnknownRefreshToken},
	{"RevokeIdempotent", testRevokeSession},
}

// session starts a session of u with its first refresh token.
func (e *env) session(u *store.User) (*store.Session, *store.RefreshToken) {
	e.t.Helper()
	now := e.tick()
	sess := &store.Session{
		ID:            uuid.NewString(),
		UserID:        u.ID,
		CreatedAt:     now,
		ExpiresAt:     now.Add(30 * 24 * time.Hour),
		SourceAddress: "127.0.0.1",
		UserAgent:     "storetest",
	}
	first := e.refreshToken(sess, now)
	if err := e.s.CreateSession(e.ctx, sess, first); err != nil {
		e.t.Fatalf("create session: %v", err)
	}
	return sess, first
}

// refreshToken returns a new refresh token of sess, not stored.
func (e *env) refreshToken(sess *store.Session, now time.Time) *store.RefreshToken {
	id := uuid.NewString()
	hash := sha256.Sum256([]byte("token-" + id))
	return &store.RefreshToken{
		ID:        id,
		SessionID: sess.ID,
		UserID:    sess.UserID,
		TokenHash: hash[:],
		CreatedAt: now,
		ExpiresAt: now.Add(7 * 24 * time.Hour),
	}
}

func testCreateSession(t *testing.T, e *env) {
	u := e.user()
	sess, first := e.session(u)
	got, err := e.s.FindSession(e.ctx, sess.ID)
	must(t, err)
	equal(t, "session", got, sess)
	rt, err := e.s.FindRefreshToken(e.ctx, first.TokenHash)
	must(t, err)
	equal(t, "first token", rt, first)

	// A session may start without a token, and a token's ids default to its session's.
	bare := &store.Session{ID: uuid.NewString(), UserID: u.ID, CreatedAt: e.tick(), ExpiresAt: e.tick()}
	must(t, e.s.CreateSession(e.ctx, bare, nil))
	other := &store.Session{ID: uuid.NewString(), UserID: u.ID, CreatedAt: e.tick(), ExpiresAt: e.tick()}
	tok := e.refreshToken(other, e.tick())
	tok.SessionID, tok.UserID = "", ""
	must(t, e.s.CreateSession(e.ctx, other, tok))
	equal(t, "defaulted session id", tok.SessionID, other.ID)
	equal(t, "defaulted user id", tok.UserID, u.ID)

	_, err = e.s.FindSession(e.ctx, uuid.NewString())
	wantMessage(t, err, fault.ErrNotFound, "session not found")
}

func testSessionUnknownUser(t *testing.T, e *env) {
	now := e.tick()
	sess := &store.Session{ID: uuid.NewString(), UserID: uuid.NewString(), CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	first := e.refreshToken(sess, now)
	wantFault(t, e.s.CreateSession(e.ctx, sess, first), fault.ErrNotFound)
	_, err := e.s.FindSession(e.ctx, sess.ID)
	wantFault(t, err, fault.ErrNotFound)
	_, err = e.s.FindRefreshToken(e.ctx, first.TokenHash)
	wantFault(t, err, fault.ErrNotFound)
}

func testRefreshRotation(t *testing.T, e *env) {
	sess, first := e.session(e.user())

	usedAt := e.tick()
	next := e.refreshToken(sess, usedAt)
	must(t, e.s.UseRefreshToken(e.ctx, first.ID, usedAt, next))

	old, err := e.s.FindRefreshToken(e.ctx, first.TokenHash)
	must(t, err)
	if old.UsedAt == nil || !old.UsedAt.Equal(micro(usedAt)) {
		t.Fatalf("first token UsedAt = %v, want %v", old.UsedAt, micro(usedAt))
	}
	got, err := e.s.FindRefreshToken(e.ctx, next.TokenHash)
	must(t, err)
	equal(t, "next token", got, next)

	// The same token a second time: refused, nothing stored, first use kept.
	again := e.refreshToken(sess, e.tick())
	err = e.s.UseRefreshToken(e.ctx, first.ID, e.tick(), again)
	if !errors.Is(err, store.ErrTokenUsed) {
		t.Fatalf("second use of a token: error = %v, want ErrTokenUsed", err)
	}
	_, err = e.s.FindRefreshToken(e.ctx, again.TokenHash)
	wantFault(t, err, fault.ErrNotFound)
	old, err = e.s.FindRefreshToken(e.ctx, first.TokenHash)
	must(t, err)
	if !old.UsedAt.Equal(micro(usedAt)) {
		t.Fatalf("first token UsedAt moved to %v", old.UsedAt)
	}

	// The successor works once, and a token can be used without a successor.
	third := e.refreshToken(sess, e.tick())
	must(t, e.s.UseRefreshToken(e.ctx, next.ID, e.tick(), third))
	must(t, e.s.UseRefreshToken(e.ctx, third.ID, e.tick(), nil))
	if err := e.s.UseRefreshToken(e.ctx, third.ID, e.tick(), nil); !errors.Is(err, store.ErrTokenUsed) {
		t.Fatalf("reuse of the last token: error = %v, want ErrTokenUsed", err)
	}
}

func testConcurrentRefresh(t *testing.T, e *env) {
	sess, first := e.session(e.user())
	const n = 8
	nexts := make([]*store.RefreshToken, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		at := e.tick()
		nexts[i] = e.refreshToken(sess, at)
		wg.Go(func() {
			<-start
			errs[i] = e.s.UseRefreshToken(e.ctx, first.ID, at, nexts[i])
		})
	}
	close(start)
	wg.Wait()
	won := 0
	for i, err := range errs {
		_, findErr := e.s.FindRefreshToken(e.ctx, nexts[i].TokenHash)
		switch {
		case err == nil:
			won++
			must(t, findErr)
		case errors.Is(err, store.ErrTokenUsed):
			wantFault(t, findErr, fault.ErrNotFound)
		default:
			t.Fatalf("exchange %d: %v", i, err)
		}
	}
	if won != 1 {
		t.Fatalf("%d of %d simultaneous exchanges of one token succeeded, want exactly 1", won, n)
	}
}

func testUnknownRefreshToken(t *testing.T, e *env) {
	hash := sha256.Sum256([]byte("never issued"))
	_, err := e.s.FindRefreshToken(e.ctx, hash[:])
	wantMessage(t, err, fault.ErrNotFound, "refresh token not found")
	err = e.s.UseRefreshToken(e.ctx, uuid.NewString(), e.tick(), nil)
	wantFault(t, err, fault.ErrNotFound)
	if errors.Is(err, store.ErrTokenUsed) {
		t.Fatal("an unknown token is reported as used")
	}
}

func testRevokeSession(t *testing.T, e *env) {
	sess, _ := e.session(e.user())
	first := e.tick()
	must(t, e.s.RevokeSession(e.ctx, sess.ID, first))
	must(t, e.s.RevokeSession(e.ctx, sess.ID, e.tick()))
	got, err := e.s.FindSession(e.ctx, sess.ID)
	must(t, err)
	if got.RevokedAt == nil || !got.RevokedAt.Equal(micro(first)) {
		t.Fatalf("RevokedAt = %v, want the first revocation %v", got.RevokedAt, micro(first))
	}
	wantFault(t, e.s.RevokeSession(e.ctx, uuid.NewString(), e.tick()), fault.ErrNotFound)
}
