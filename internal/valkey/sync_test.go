package valkey_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/berthhq/berth/internal/testsvc"
	"github.com/berthhq/berth/internal/valkey"
)

// staleReads writes a new value of a key on a n times, and each time reads it
// on b through the client-side cache right after the write returned, with
// b's copy warmed beforehand. lease says whether the writer settles and
// the reader syncs (what internal/cache does). It returns the reads that
// returned the old value, and the reads served from b's memory.
func staleReads(tb testing.TB, a, b *valkey.Client, n int, lease bool) (stale, local int) {
	ctx := context.Background()
	va, vb := a.Valkey(), b.Valkey()
	key := a.Key("stale-probe")
	for i := range n {
		if err := va.Do(ctx, va.B().Set().Key(key).Value(strconv.Itoa(i)).Build()).Error(); err != nil {
			tb.Fatal(err)
		}
		if err := vb.DoCache(ctx, vb.B().Get().Key(key).Cache(), time.Minute).Error(); err != nil {
			tb.Fatal(err)
		}
		// Read again until served from memory: b holds the value i.
		for {
			if lease {
				syncLease(tb, b)
			}
			r := vb.DoCache(ctx, vb.B().Get().Key(key).Cache(), time.Minute)
			if r.IsCacheHit() {
				break
			}
		}
		if err := va.Do(ctx, va.B().Set().Key(key).Value(strconv.Itoa(i+1)).Build()).Error(); err != nil {
			tb.Fatal(err)
		}
		if lease {
			a.Settle()
			syncLease(tb, b)
		}
		r := vb.DoCache(ctx, vb.B().Get().Key(key).Cache(), time.Minute)
		v, err := r.ToString()
		if err != nil {
			tb.Fatal(err)
		}
		if r.IsCacheHit() {
			local++
		}
		if v != strconv.Itoa(i+1) {
			stale++
		}
	}
	return stale, local
}

// syncLease calls c.Sync until it succeeds: a round trip slower than the window
// (a scheduling hiccup) makes it fail, and the cache then reads through.
func syncLease(tb testing.TB, c *valkey.Client) {
	tb.Helper()
	for range 100 {
		err := c.Sync(context.Background())
		if err == nil {
			return
		}
		if !errors.Is(err, valkey.ErrNotSynced) {
			tb.Fatal(err)
		}
	}
	tb.Fatal("no round trip within the window in 100 tries")
}

// TestSyncAndSettleCloseTheWindow checks the lease of Sync and Settle on the
// client's own connection: a read on B after a write on A returned, made
// through the client-side cache, never sees the old value.
func TestSyncAndSettleCloseTheWindow(t *testing.T) {
	t.Parallel()
	r := testsvc.StartRedis(t)
	opts := valkey.Options{SyncWindow: 2 * time.Millisecond}
	a, b := open(t, r.URL(), opts), open(t, r.URL(), opts)
	const n = 1000
	stale, local := staleReads(t, a, b, n, true)
	if stale != 0 {
		t.Errorf("%d of %d reads after a write returned the old value", stale, n)
	}
	if local != 0 {
		t.Errorf("%d reads of a changed key served from memory", local)
	}
}

// BenchmarkStaleReads measures the window the lease closes: how
// often B's client-side cache still returns the old value right after A's
// write returned, with plain DoCache (stale/op), and with the lease.
func BenchmarkStaleReads(b *testing.B) {
	r := testsvc.StartRedis(b)
	for _, lease := range []bool{false, true} {
		b.Run("lease="+strconv.FormatBool(lease), func(b *testing.B) {
			opts := valkey.Options{SyncWindow: 2 * time.Millisecond}
			ca, cb := open(b, r.URL(), opts), open(b, r.URL(), opts)
			b.ResetTimer()
			stale, _ := staleReads(b, ca, cb, b.N, lease)
			b.ReportMetric(float64(stale)/float64(b.N), "stale/op")
		})
	}
}
