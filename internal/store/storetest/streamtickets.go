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

var streamTicketTests = []test{
	{"Redeem", testRedeemStreamTicket},
	{"ExpiryBoundary", testStreamTicketExpiry},
	{"ConcurrentRedeem", testConcurrentRedeem},
	{"Refused", testStreamTicketRefused},
	{"DeleteExpired", testDeleteExpiredStreamTickets},
}

// noTicket is what a missing, used or expired ticket is.
const noTicket = "stream ticket not found"

// ticketTTL is how long the suite's tickets work.
const ticketTTL = 30 * time.Second

// ticket creates a stream ticket of u with defaults, as changed by mods.
func (e *env) ticket(u *store.User, mods ...func(*store.StreamTicket)) *store.StreamTicket {
	e.t.Helper()
	t := e.newTicket(u, mods...)
	if err := e.s.CreateStreamTicket(e.ctx, t); err != nil {
		e.t.Fatalf("create stream ticket: %v", err)
	}
	return t
}

// newTicket returns a stream ticket of u with defaults, not stored.
func (e *env) newTicket(u *store.User, mods ...func(*store.StreamTicket)) *store.StreamTicket {
	now := e.tick()
	hash := sha256.Sum256([]byte("ticket-" + uuid.NewString()))
	t := &store.StreamTicket{
		TicketHash: hash[:],
		UserID:     u.ID,
		Target:     "task:" + uuid.NewString(),
		CreatedAt:  now,
		ExpiresAt:  now.Add(ticketTTL),
	}
	for _, m := range mods {
		m(t)
	}
	return t
}

func testRedeemStreamTicket(t *testing.T, e *env) {
	u := e.user()
	sess, _ := e.session(u)
	tk := e.ticket(u, func(t *store.StreamTicket) { t.SessionID, t.Target = sess.ID, "ws" })
	at := tk.CreatedAt.Add(time.Second)
	got, err := e.s.RedeemStreamTicket(e.ctx, tk.TicketHash, at)
	must(t, err)
	want := *tk
	want.UsedAt = ptr(micro(at))
	equal(t, "redeemed", got, &want)

	// A ticket works once.
	_, err = e.s.RedeemStreamTicket(e.ctx, tk.TicketHash, at.Add(time.Second))
	wantMessage(t, err, fault.ErrNotFound, noTicket)

	// An API key's ticket has no session.
	apiTk := e.ticket(u)
	got, err = e.s.RedeemStreamTicket(e.ctx, apiTk.TicketHash, apiTk.CreatedAt)
	must(t, err)
	equal(t, "no session", got.SessionID, "")

	unknown := sha256.Sum256([]byte("never issued"))
	for _, hash := range [][]byte{unknown[:], nil, {}} {
		_, err = e.s.RedeemStreamTicket(e.ctx, hash, at)
		wantMessage(t, err, fault.ErrNotFound, noTicket)
	}
}

func testStreamTicketExpiry(t *testing.T, e *env) {
	u := e.user()
	tk := e.ticket(u)
	// At its expiry a ticket no longer works, and the refusal does not use it.
	_, err := e.s.RedeemStreamTicket(e.ctx, tk.TicketHash, tk.ExpiresAt)
	wantMessage(t, err, fault.ErrNotFound, noTicket)
	_, err = e.s.RedeemStreamTicket(e.ctx, tk.TicketHash, tk.ExpiresAt.Add(time.Hour))
	wantMessage(t, err, fault.ErrNotFound, noTicket)
	// One microsecond earlier — the stored precision — it still works.
	got, err := e.s.RedeemStreamTicket(e.ctx, tk.TicketHash, micro(tk.ExpiresAt).Add(-time.Microsecond))
	must(t, err)
	equal(t, "used just in time", got.UsedAt, ptr(micro(tk.ExpiresAt).Add(-time.Microsecond)))
}

func testConcurrentRedeem(t *testing.T, e *env) {
	u := e.user()
	const rounds, n = 10, 8
	warmUp(t, e, n)
	for round := range rounds {
		tk := e.ticket(u)
		errs := make([]error, n)
		got := make([]*store.StreamTicket, n)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range n {
			at := tk.CreatedAt.Add(time.Duration(i+1) * time.Millisecond)
			wg.Go(func() {
				<-start
				got[i], errs[i] = e.s.RedeemStreamTicket(e.ctx, tk.TicketHash, at)
			})
		}
		close(start)
		wg.Wait()
		won := 0
		for i, err := range errs {
			switch {
			case err == nil:
				won++
				equal(t, "winner's ticket", got[i].Target, tk.Target)
			case errors.Is(err, fault.ErrNotFound):
			default:
				t.Fatalf("round %d, redeem %d: %v", round, i, err)
			}
		}
		if won != 1 {
			t.Fatalf("round %d: %d of %d simultaneous redeems of one ticket succeeded, want exactly 1", round, won, n)
		}
	}
}

func testStreamTicketRefused(t *testing.T, e *env) {
	u := e.user()
	tk := e.ticket(u)
	dup := e.newTicket(u, func(t *store.StreamTicket) { t.TicketHash = tk.TicketHash })
	wantFault(t, e.s.CreateStreamTicket(e.ctx, dup), fault.ErrConflict)
	orphan := e.newTicket(&store.User{ID: uuid.NewString()})
	wantMessage(t, e.s.CreateStreamTicket(e.ctx, orphan), fault.ErrNotFound, "user not found")
	_, err := e.s.RedeemStreamTicket(e.ctx, orphan.TicketHash, orphan.CreatedAt)
	wantMessage(t, err, fault.ErrNotFound, noTicket)
	// The original is untouched by the refused duplicate.
	got, err := e.s.RedeemStreamTicket(e.ctx, tk.TicketHash, tk.CreatedAt)
	must(t, err)
	equal(t, "original target", got.Target, tk.Target)
}

func testDeleteExpiredStreamTickets(t *testing.T, e *env) {
	u := e.user()
	early := e.ticket(u)
	used := e.ticket(u)
	_, err := e.s.RedeemStreamTicket(e.ctx, used.TicketHash, used.CreatedAt)
	must(t, err)
	late := e.ticket(u, func(t *store.StreamTicket) { t.ExpiresAt = t.CreatedAt.Add(time.Hour) })

	// At used's expiry, early and used have expired; late has not.
	n, err := e.s.DeleteExpiredStreamTickets(e.ctx, used.ExpiresAt)
	must(t, err)
	equal(t, "deleted", n, 2)
	n, err = e.s.DeleteExpiredStreamTickets(e.ctx, used.ExpiresAt)
	must(t, err)
	equal(t, "deleted again", n, 0)

	// Recreating a deleted ticket's hash works: it is gone.
	again := e.ticket(u, func(t *store.StreamTicket) { t.TicketHash = early.TicketHash })
	_, err = e.s.RedeemStreamTicket(e.ctx, again.TicketHash, again.CreatedAt)
	must(t, err)
	_, err = e.s.RedeemStreamTicket(e.ctx, late.TicketHash, used.ExpiresAt)
	must(t, err)
}
