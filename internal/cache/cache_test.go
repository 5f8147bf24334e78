package cache_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/berthhq/berth/internal/cache"
	"github.com/berthhq/berth/internal/testsvc"
	"github.com/berthhq/berth/internal/valkey"
)

// testWindow is the clients' SyncWindow in these tests: small, so that the
// loops run fast and the lease has little slack.
const testWindow = 2 * time.Millisecond

// openValkey opens a client on url in the test's namespace, closed when the
// test ends. Every client of one test shares the namespace: they are the
// instances of one deployment.
func openValkey(t testing.TB, url string) *valkey.Client {
	t.Helper()
	return openValkeyWindow(t, url, testWindow)
}

// openValkeyWindow is openValkey with the given SyncWindow.
func openValkeyWindow(t testing.TB, url string, window time.Duration) *valkey.Client {
	t.Helper()
	c, err := valkey.Open(t.Context(), url, valkey.Options{
		Namespace:      "test-" + strings.ReplaceAll(t.Name(), "/", "-"),
		HealthInterval: 50 * time.Millisecond,
		SyncWindow:     window,
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

// newCache returns the cache name on vk (nil: in process).
func newCache(t testing.TB, name string, vk *valkey.Client, opts cache.Options) *cache.Cache {
	t.Helper()
	opts.Valkey = vk
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	c, err := cache.New(name, opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// db is the backing store of the tests: versions of keys, and how many
// times they were loaded.
type db struct {
	mu    sync.Mutex
	vals  map[string]int
	loads atomic.Int64
}

func newDB() *db { return &db{vals: make(map[string]int)} }

func (d *db) set(key string, v int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.vals[key] = v
}

// loader returns the loader of key.
func (d *db) loader(key string) func(context.Context) ([]byte, error) {
	return func(context.Context) ([]byte, error) {
		d.loads.Add(1)
		d.mu.Lock()
		defer d.mu.Unlock()
		return []byte(strconv.Itoa(d.vals[key])), nil
	}
}

// get reads key through c and returns its version, failing the test on an
// error.
func get(t testing.TB, c *cache.Cache, d *db, key string) int {
	t.Helper()
	b, err := c.Get(t.Context(), key, d.loader(key))
	if err != nil {
		t.Fatalf("Get %s: %v", key, err)
	}
	n, err := strconv.Atoi(string(b))
	if err != nil {
		t.Fatalf("Get %s: %q", key, b)
	}
	return n
}

func TestNameIsChecked(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"", "a:b", "a b", "x*"} {
		if _, err := cache.New(name, cache.Options{}); err == nil {
			t.Errorf("%q accepted", name)
		}
	}
}

func TestLocalReadThrough(t *testing.T) {
	t.Parallel()
	d := newDB()
	clock := newClock()
	c := newCache(t, "local", nil, cache.Options{MaxEntries: 3, TTL: 200 * time.Millisecond, Now: clock.now})
	d.set("a", 1)
	for range 2 {
		if got := get(t, c, d, "a"); got != 1 {
			t.Fatalf("got %d, want 1", got)
		}
	}
	if d.loads.Load() != 1 {
		t.Fatalf("second read loaded again: %d loads", d.loads.Load())
	}
	d.set("a", 2)
	c.Invalidate(t.Context(), "a")
	if got := get(t, c, d, "a"); got != 2 {
		t.Errorf("after Invalidate got %d, want 2", got)
	}

	// Bounded: four keys in a cache of three evict the least recent.
	for _, k := range []string{"b", "c", "d"} {
		get(t, c, d, k)
	}
	before := d.loads.Load()
	get(t, c, d, "a")
	if d.loads.Load() != before+1 {
		t.Error("the least recently used key was not evicted")
	}

	// Entries are fresh until their TTL passes on the cache's clock, and
	// expired ones load again.
	clock.advance(199 * time.Millisecond)
	before = d.loads.Load()
	get(t, c, d, "a")
	if d.loads.Load() != before {
		t.Error("an entry within its TTL loaded again")
	}
	clock.advance(50 * time.Millisecond)
	before = d.loads.Load()
	get(t, c, d, "a")
	if d.loads.Load() != before+1 {
		t.Error("an expired entry was served")
	}

	// A failed load is returned and not cached.
	boom := errors.New("boom")
	if _, err := c.Get(t.Context(), "e", func(context.Context) ([]byte, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Errorf("loader error: got %v", err)
	}
	if get(t, c, d, "e") != 0 {
		t.Error("failed load cached")
	}
	if h, m := c.Stats(); h == 0 || m == 0 {
		t.Errorf("stats: %d hits, %d misses", h, m)
	}
}

// TestLoadRacingInvalidate runs the classic race on both implementations:
// a reader loads the old value, a writer commits and invalidates, then the
// reader stores what it loaded. The next read must see the write.
func TestLoadRacingInvalidate(t *testing.T) {
	t.Parallel()
	r := testsvc.StartRedis(t)
	for _, mode := range []string{"local", "valkey"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			var a, b *cache.Cache
			if mode == "local" {
				a = newCache(t, "race", nil, cache.Options{})
				b = a
			} else {
				a = newCache(t, "race", openValkey(t, r.URL()), cache.Options{})
				b = newCache(t, "race", openValkey(t, r.URL()), cache.Options{})
			}
			d := newDB()
			d.set("k", 1)
			loaded, release := make(chan struct{}), make(chan struct{})
			done := make(chan []byte)
			go func() {
				v, _ := b.Get(context.Background(), "k", func(ctx context.Context) ([]byte, error) {
					v, err := d.loader("k")(ctx)
					close(loaded)
					<-release
					return v, err
				})
				done <- v
			}()
			<-loaded
			d.set("k", 2)
			a.Invalidate(t.Context(), "k")
			close(release)
			if v := <-done; string(v) != "1" {
				t.Fatalf("the racing read got %q, want the 1 it loaded", v)
			}
			for _, c := range []*cache.Cache{a, b} {
				if got := get(t, c, d, "k"); got != 2 {
					t.Errorf("after the write: got %d, want 2 (the racing load was stored)", got)
				}
			}
		})
	}
}

// TestTwoInstancesStayCoherent writes through instance A and reads through
// instance B, again and again: B never returns a version older than the
// last write whose Invalidate returned before its Get began. Readers run
// concurrently with the writes, and between writes B's reads must be
// served from its own memory (the point of the cache).
func TestTwoInstancesStayCoherent(t *testing.T) {
	t.Parallel()
	r := testsvc.StartRedis(t)
	a := newCache(t, "ws", openValkey(t, r.URL()), cache.Options{})
	regB := prometheus.NewRegistry()
	b := newCache(t, "ws", openValkey(t, r.URL()), cache.Options{Registerer: regB})
	d := newDB()
	keys := []string{"w1", "w2", "w3"}

	var completed [3]atomic.Int64 // per key: the last version whose Invalidate returned
	stop := make(chan struct{})
	var readers sync.WaitGroup
	var stale atomic.Int64
	var staleMsg atomic.Value
	for n := range 4 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				k := (i + n) % len(keys)
				floor := completed[k].Load()
				v, err := b.Get(context.Background(), keys[k], d.loader(keys[k]))
				if err != nil {
					staleMsg.Store(err.Error())
					stale.Add(1)
					return
				}
				if got, _ := strconv.Atoi(string(v)); int64(got) < floor {
					staleMsg.Store(fmt.Sprintf("%s: read %d after version %d was written", keys[k], got, floor))
					stale.Add(1)
				}
			}
		}()
	}

	const writes = 1500
	for i := 1; i <= writes; i++ {
		k := i % len(keys)
		d.set(keys[k], i)
		a.Invalidate(t.Context(), keys[k])
		completed[k].Store(int64(i))
		// And the simplest check: B right after the write.
		if got := get(t, b, d, keys[k]); got != i {
			t.Fatalf("write %d: B read %d right after", i, got)
		}
	}
	close(stop)
	readers.Wait()
	if n := stale.Load(); n > 0 {
		t.Fatalf("%d stale reads, e.g. %v", n, staleMsg.Load())
	}
	hits, misses := b.Stats()
	clientHits := counter(t, regB, "berth_cache_client_hits_total")
	t.Logf("B: %d hits (%v without a round trip), %d misses", hits, clientHits, misses)
	if clientHits < float64(writes) {
		t.Errorf("B served only %v reads from memory: the cache is not caching", clientHits)
	}
}

// TestOutage stops the server during a loop of reads and writes: no call
// fails, nothing is cached while Degraded (every read loads), and once the
// server is back the clients reconnect by themselves and caching resumes.
func TestOutage(t *testing.T) {
	t.Parallel()
	r := testsvc.StartRedis(t)
	vkA, vkB := openValkey(t, r.URL()), openValkey(t, r.URL())
	a := newCache(t, "ws", vkA, cache.Options{})
	b := newCache(t, "ws", vkB, cache.Options{})
	d := newDB()

	version := 0
	round := func() {
		version++
		d.set("k", version)
		a.Invalidate(t.Context(), "k")
		for j := range 5 {
			h0, m0 := b.Stats()
			upB := vkB.Up()
			if got := get(t, b, d, "k"); got != version {
				h1, m1 := b.Stats()
				t.Fatalf("version %d read %d: B read %d; A up %v, B up before %v after %v; hits +%d misses +%d", version, j, got, vkA.Up(), upB, vkB.Up(), h1-h0, m1-m0)
			}
			if got := get(t, a, d, "k"); got != version {
				t.Fatalf("version %d: A read %d", version, got)
			}
		}
	}
	for range 50 {
		round()
	}

	r.Stop()
	for !(!vkA.Up() && !vkB.Up()) {
		round() // reads go on, and see every write, while the clients notice
	}
	hits, _ := b.Stats()
	loads := d.loads.Load()
	for range 50 {
		round()
	}
	if h, _ := b.Stats(); h != hits || d.loads.Load() != loads+50*10 {
		t.Errorf("Degraded: %d hits (want none), %d loads (want one per read, %d)", h-hits, d.loads.Load()-loads, 50*10)
	}

	r.Start()
	for !(vkA.Up() && vkB.Up()) {
		round()
	}
	hits, _ = b.Stats()
	for range 50 {
		round()
	}
	if h, _ := b.Stats(); h < hits+50*3 {
		t.Errorf("after the outage only %d hits in 250 reads: caching did not resume", h-hits)
	}
}

// TestInvalidateWhileDegraded has instance B reconnect after an outage
// while A has not noticed Valkey's return yet: A's writes must still
// invalidate B's values, and tell A's client that Valkey is back.
func TestInvalidateWhileDegraded(t *testing.T) {
	t.Parallel()
	r := testsvc.StartRedis(t)
	vkA, err := valkey.Open(t.Context(), r.URL(), valkey.Options{
		Namespace:      "test-" + t.Name(),
		HealthInterval: time.Hour, // A notices nothing by itself
		SyncWindow:     testWindow,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(vkA.Close)
	vkB := openValkey(t, r.URL())
	a := newCache(t, "ws", vkA, cache.Options{})
	b := newCache(t, "ws", vkB, cache.Options{})
	d := newDB()

	r.Stop()
	vkA.ReportFailure(context.Background(), errors.New("connection refused (test)"))
	waitFor(t, "B Degraded", func() bool { return !vkB.Up() })
	r.Start()
	if err := vkB.WaitUp(t.Context()); err != nil {
		t.Fatal(err)
	}
	if vkA.Up() {
		t.Fatal("A recovered by itself; the test needs it Degraded")
	}
	d.set("k", 1)
	cached(t, b, d, "k", 1)
	d.set("k", 2)
	a.Invalidate(t.Context(), "k")
	if got := get(t, b, d, "k"); got != 2 {
		t.Errorf("after A's write B read %d, want 2", got)
	}
	waitFor(t, "A Up", vkA.Up)
}

// TestRecoveryFlushes leaves a value stale in Valkey (its write was not
// invalidated, as when the writer could not reach Valkey) and has one
// instance lose and regain Valkey: its recovery flushes every instance.
func TestRecoveryFlushes(t *testing.T) {
	t.Parallel()
	r := testsvc.StartRedis(t)
	vkA := openValkey(t, r.URL())
	a := newCache(t, "ws", vkA, cache.Options{})
	b := newCache(t, "ws", openValkey(t, r.URL()), cache.Options{})
	d := newDB()
	d.set("k", 1)
	cached(t, b, d, "k", 1)
	d.set("k", 2) // a write whose invalidation was lost
	if got := get(t, b, d, "k"); got != 1 {
		// A read can go to the source when a round trip was slower than
		// the window; the cached value stays, and the next read finds it.
		if got = get(t, b, d, "k"); got != 1 {
			t.Fatalf("got %d: the value was not cached, the test proves nothing", got)
		}
	}
	vkA.ReportFailure(context.Background(), errors.New("connection reset (test)"))
	if vkA.Up() {
		t.Fatal("still Up after a failure")
	}
	if err := vkA.WaitUp(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := get(t, b, d, "k"); got != 2 {
		t.Errorf("after A's recovery B read %d, want 2", got)
	}
	if got := get(t, a, d, "k"); got != 2 {
		t.Errorf("after A's recovery A read %d, want 2", got)
	}
}

// cached reads key through c until it is served from the cache with the
// value want, failing the test after 100 reads: the tests that show stale
// values are avoided must first have one cached.
func cached(t testing.TB, c *cache.Cache, d *db, key string, want int) {
	t.Helper()
	for range 100 {
		h, _ := c.Stats()
		if got := get(t, c, d, key); got != want {
			t.Fatalf("read %d, want %d", got, want)
		}
		if h2, _ := c.Stats(); h2 > h {
			return
		}
	}
	t.Fatalf("%s never served from the cache: the test proves nothing", key)
}
