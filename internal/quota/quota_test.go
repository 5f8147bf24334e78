package quota_test

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berthhq/berth/internal/fault"
	"github.com/berthhq/berth/internal/quota"
	"github.com/berthhq/berth/internal/testsvc"
	"github.com/berthhq/berth/internal/valkey"
)

// acquire takes n slots of key and returns their releases; it fails the
// test on a refusal.
func acquire(t *testing.T, s *quota.Streams, key string, n int) []func() {
	t.Helper()
	var out []func()
	for i := range n {
		release, err := s.Acquire(t.Context(), key)
		if err != nil {
			t.Fatalf("slot %d of %s: %v", i+1, key, err)
		}
		out = append(out, release)
	}
	return out
}

// wantRefused fails the test unless err is a quota refusal naming what.
func wantRefused(t *testing.T, err error, what string) {
	t.Helper()
	if !errors.Is(err, fault.ErrResourceExhausted) {
		t.Fatalf("err = %v, want a ResourceExhausted refusal", err)
	}
	if msg, _ := fault.Message(err); !strings.Contains(msg, what) {
		t.Fatalf("message %q does not name %q", msg, what)
	}
	if d, ok := fault.RetryAfter(err); !ok || d <= 0 {
		t.Fatalf("refusal suggests no retry delay")
	}
}

func TestPerPrincipal(t *testing.T) {
	t.Parallel()
	s := quota.New(quota.Options{PerPrincipal: 3})
	t.Cleanup(s.Close)
	releases := acquire(t, s, "user:a", 3)
	_, err := s.Acquire(t.Context(), "user:a")
	wantRefused(t, err, "max-streams-per-user (3)")
	acquire(t, s, "user:b", 3) // another principal has its own count
	// Released slots come back, and a release twice gives back one.
	releases[0]()
	releases[0]()
	acquire(t, s, "user:a", 1)
	if _, err := s.Acquire(t.Context(), "user:a"); err == nil {
		t.Fatal("a double release gave back two slots")
	}
	for _, r := range releases[1:] {
		r()
	}
	acquire(t, s, "user:a", 2)
	if mine, total := s.Held("user:a"); mine != 3 || total != 6 {
		t.Fatalf("held = %d of %d, want 3 of 6", mine, total)
	}
}

func TestTotal(t *testing.T) {
	t.Parallel()
	s := quota.New(quota.Options{PerPrincipal: 10, Total: 4})
	t.Cleanup(s.Close)
	acquire(t, s, "user:a", 2)
	rs := acquire(t, s, "user:b", 2)
	_, err := s.Acquire(t.Context(), "user:c")
	wantRefused(t, err, "the server holds its most streams (4)")
	rs[0]()
	acquire(t, s, "user:c", 1)
}

// TestConcurrent: many acquisitions at once never pass the cap.
func TestConcurrent(t *testing.T) {
	t.Parallel()
	s := quota.New(quota.Options{PerPrincipal: 8})
	t.Cleanup(s.Close)
	var wg sync.WaitGroup
	var mu sync.Mutex
	granted := 0
	for range 100 {
		wg.Go(func() {
			if _, err := s.Acquire(t.Context(), "user:a"); err == nil {
				mu.Lock()
				granted++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if granted != 8 {
		t.Fatalf("granted %d, want 8", granted)
	}
}

// openValkey opens a client on url in the test's namespace.
func openValkey(t *testing.T, url string) *valkey.Client {
	t.Helper()
	c, err := valkey.Open(t.Context(), url, valkey.Options{
		Namespace:      "test-" + strings.ReplaceAll(t.Name(), "/", "-"),
		HealthInterval: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	if err := c.WaitUp(t.Context()); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestShared: with Valkey, two instances share one count per principal;
// the slots of an instance that stops renewing them (it died) expire.
func TestShared(t *testing.T) {
	t.Parallel()
	r := testsvc.StartRedis(t)
	const ttl = 600 * time.Millisecond
	a := quota.New(quota.Options{PerPrincipal: 4, Valkey: openValkey(t, r.URL()), TTL: ttl})
	b := quota.New(quota.Options{PerPrincipal: 4, Valkey: openValkey(t, r.URL()), TTL: ttl})
	t.Cleanup(b.Close)
	acquire(t, a, "user:a", 3)
	rs := acquire(t, b, "user:a", 1)
	_, err := b.Acquire(t.Context(), "user:a")
	wantRefused(t, err, "max-streams-per-user (4)")
	_, err = a.Acquire(t.Context(), "user:a")
	wantRefused(t, err, "max-streams-per-user (4)")
	rs[0]() // a release on b frees a slot for a (in the background)
	eventually(t, func() bool { _, err := a.Acquire(t.Context(), "user:a"); return err == nil })

	// Renewal keeps a's slots alive past their TTL...
	time.Sleep(3 * ttl)
	if _, err := b.Acquire(t.Context(), "user:a"); err == nil {
		t.Fatal("a's renewed slots expired")
	}
	// ...until a stops renewing: then they expire and b may take them.
	a.Close()
	eventually(t, func() bool { _, err := b.Acquire(t.Context(), "user:a"); return err == nil })
}

// eventually polls ok until it holds, failing the test after 30 seconds.
func eventually(t *testing.T, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatal("the condition never held")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
