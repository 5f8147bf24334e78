package ratelimit_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/berthhq/berth/internal/ratelimit"
	"github.com/berthhq/berth/internal/testsvc"
	"github.com/berthhq/berth/internal/valkey"
)

// clock is a settable clock for the local budgets.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// openValkey opens a client on url in the test's namespace.
func openValkey(t testing.TB, url string) *valkey.Client {
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

// allow calls l.Allow and fails the test on an error.
func allow(t testing.TB, l *ratelimit.Limiter, class, key string) ratelimit.Decision {
	t.Helper()
	d, err := l.Allow(context.Background(), class, key)
	if err != nil {
		t.Fatalf("Allow: %v", err)
	}
	return d
}

// TestBudget runs the same sequence on the local and the Valkey
// implementations: a burst of 3, then a refusal with the time to wait,
// Peek counting nothing, and budgets per key.
func TestBudget(t *testing.T) {
	t.Parallel()
	r := testsvc.StartRedis(t)
	classes := map[string]ratelimit.Class{"c": {Rate: 1, Burst: 3}, "off": {}}
	for _, mode := range []string{"local", "valkey"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			opts := ratelimit.Options{}
			if mode == "valkey" {
				opts.Valkey = openValkey(t, r.URL())
			}
			l := ratelimit.New(classes, opts)
			if _, err := l.Allow(t.Context(), "nope", "k"); !errors.Is(err, ratelimit.ErrUnknownClass) {
				t.Errorf("unknown class: %v", err)
			}
			if d := allow(t, l, "off", "k"); !d.Allowed || d.Limit != 0 {
				t.Errorf("unlimited class: %+v", d)
			}
			if d, _ := l.Peek(t.Context(), "c", "k"); !d.Allowed || d.Remaining != 3 {
				t.Errorf("peek at a full budget: %+v", d)
			}
			for want := 2; want >= 0; want-- {
				d := allow(t, l, "c", "k")
				if !d.Allowed || d.Limit != 3 || d.Remaining != want || d.RetryAfter != 0 {
					t.Errorf("request %d: %+v", 3-want, d)
				}
				if d.Reset <= time.Duration(2-want)*time.Second || d.Reset > time.Duration(3-want)*time.Second {
					t.Errorf("request %d: reset %v", 3-want, d.Reset)
				}
			}
			d := allow(t, l, "c", "k")
			if d.Allowed || d.Remaining != 0 || d.RetryAfter <= 900*time.Millisecond || d.RetryAfter > time.Second {
				t.Errorf("fourth request: %+v", d)
			}
			if p, _ := l.Peek(t.Context(), "c", "k"); p.Allowed {
				t.Errorf("peek at an empty budget: %+v", p)
			}
			if d := allow(t, l, "c", "other"); !d.Allowed || d.Remaining != 2 {
				t.Errorf("another key: %+v", d)
			}
			if err := d.Err("c"); !errors.Is(err, ratelimit.ErrLimited) {
				t.Errorf("Err: %v", err)
			}
		})
	}
}

func TestLocalRefillsAndForgets(t *testing.T) {
	t.Parallel()
	clk := &clock{t: time.Unix(1_000_000, 0)}
	reg := prometheus.NewRegistry()
	l := ratelimit.New(map[string]ratelimit.Class{"c": {Rate: 2, Burst: 2}}, ratelimit.Options{Now: clk.now, MaxLocalKeys: 2, Registerer: reg})
	allow(t, l, "c", "a")
	allow(t, l, "c", "a")
	if allow(t, l, "c", "a").Allowed {
		t.Fatal("third request at once allowed")
	}
	clk.add(500 * time.Millisecond)
	if d := allow(t, l, "c", "a"); !d.Allowed || d.Remaining != 0 {
		t.Errorf("after half a second (one token): %+v", d)
	}
	// Two other keys push a out: it starts again with a full budget.
	allow(t, l, "c", "b")
	allow(t, l, "c", "c")
	if d := allow(t, l, "c", "a"); d.Remaining != 1 {
		t.Errorf("a forgotten key: %+v", d)
	}
	if got := limited(t, reg, "c"); got != 1 {
		t.Errorf("berth_rate_limited_total{class=c} = %v, want 1", got)
	}
}

// TestSharedBudget draws on one key's budget from two instances at once:
// exactly the burst is allowed in all.
func TestSharedBudget(t *testing.T) {
	t.Parallel()
	r := testsvc.StartRedis(t)
	classes := map[string]ratelimit.Class{"c": {Rate: 0.001, Burst: 25}}
	a := ratelimit.New(classes, ratelimit.Options{Valkey: openValkey(t, r.URL())})
	b := ratelimit.New(classes, ratelimit.Options{Valkey: openValkey(t, r.URL())})
	var allowed atomic.Int32
	var wg sync.WaitGroup
	for i := range 8 {
		l := a
		if i%2 == 1 {
			l = b
		}
		wg.Go(func() {
			for range 20 {
				if allow(t, l, "c", "shared").Allowed {
					allowed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if n := allowed.Load(); n != 25 {
		t.Errorf("%d of 160 requests allowed across two instances, want the burst, 25", n)
	}
}

// TestOutage stops the server during a loop of decisions: none fails, the
// local budgets take over, and the shared budget is back after the restart.
func TestOutage(t *testing.T) {
	t.Parallel()
	r := testsvc.StartRedis(t)
	vk := openValkey(t, r.URL())
	classes := map[string]ratelimit.Class{"c": {Rate: 1e9, Burst: 1000}, "tight": {Rate: 0.001, Burst: 3}}
	a := ratelimit.New(classes, ratelimit.Options{Valkey: vk})
	b := ratelimit.New(classes, ratelimit.Options{Valkey: openValkey(t, r.URL())})

	loop := func(n int) {
		for range n {
			if d := allow(t, a, "c", "k"); !d.Allowed {
				t.Fatalf("refused: %+v", d)
			}
		}
	}
	loop(100)
	r.Stop()
	for vk.Up() {
		loop(10)
	}
	loop(100)
	// Degraded: each instance has its own budget.
	for range 3 {
		allow(t, a, "tight", "during")
	}
	if !allow(t, b, "tight", "during").Allowed {
		t.Error("B shares A's budget while Valkey is down?")
	}
	r.Start()
	for !vk.Up() {
		loop(10)
	}
	if err := openValkey(t, r.URL()).WaitUp(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitUp := time.Now().Add(10 * time.Second)
	for {
		for range 3 {
			allow(t, a, "tight", "after")
		}
		// B refuses only once it uses Valkey again (its own client may
		// reconnect a moment later than A's).
		if !allow(t, b, "tight", "after").Allowed {
			break
		}
		if time.Now().After(waitUp) {
			t.Fatal("the shared budget did not come back")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestSetHeaders(t *testing.T) {
	t.Parallel()
	h := http.Header{}
	ratelimit.SetHeaders(h, ratelimit.Decision{Allowed: false, Limit: 10, Remaining: 0, Reset: 4200 * time.Millisecond, RetryAfter: 300 * time.Millisecond})
	want := map[string]string{"RateLimit-Limit": "10", "RateLimit-Remaining": "0", "RateLimit-Reset": "5", "Retry-After": "1"}
	for k, v := range want {
		if got := h.Get(k); got != v {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}
	h = http.Header{}
	ratelimit.SetHeaders(h, ratelimit.Decision{Allowed: true, Limit: 10, Remaining: 9, Reset: time.Second})
	if h.Get("Retry-After") != "" || h.Get("RateLimit-Remaining") != "9" {
		t.Errorf("allowed: %v", h)
	}
	h = http.Header{}
	ratelimit.SetHeaders(h, ratelimit.Decision{Allowed: true})
	if len(h) != 0 {
		t.Errorf("unlimited: %v", h)
	}
}

// limited returns berth_rate_limited_total for class.
func limited(t testing.TB, reg *prometheus.Registry, class string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "berth_rate_limited_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "class" && lp.GetValue() == class {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return -1
}
