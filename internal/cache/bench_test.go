package cache_test

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	valkeygo "github.com/valkey-io/valkey-go"
	_ "modernc.org/sqlite"

	"github.com/berthhq/berth/internal/cache"
	"github.com/berthhq/berth/internal/testsvc"
	"github.com/berthhq/berth/internal/valkey"
)

// benchRows is how many records the benchmark database holds.
const benchRows = 10_000

// sqliteLoader returns a loader factory reading 256-byte records by id from
// a real SQLite database (the embedded store's engine), as the server's
// loaders would.
func sqliteLoader(b *testing.B) func(key string) func(context.Context) ([]byte, error) {
	b.Helper()
	db, err := sql.Open("sqlite", filepath.Join(b.TempDir(), "bench.db")+"?_pragma=journal_mode(WAL)")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	if _, err := db.Exec(`CREATE TABLE records (id TEXT PRIMARY KEY, data BLOB NOT NULL)`); err != nil {
		b.Fatal(err)
	}
	tx, err := db.Begin()
	if err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, 256)
	for i := range benchRows {
		if _, err := tx.Exec(`INSERT INTO records VALUES (?, ?)`, strconv.Itoa(i), payload); err != nil {
			b.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
	stmt, err := db.Prepare(`SELECT data FROM records WHERE id = ?`)
	if err != nil {
		b.Fatal(err)
	}
	return func(key string) func(context.Context) ([]byte, error) {
		return func(ctx context.Context) ([]byte, error) {
			var v []byte
			err := stmt.QueryRowContext(ctx, key).Scan(&v)
			return v, err
		}
	}
}

// openBenchValkey opens a client with the default SyncWindow.
func openBenchValkey(b *testing.B, url string) *valkey.Client {
	b.Helper()
	c, err := valkey.Open(b.Context(), url, valkey.Options{Namespace: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Close)
	if err := c.WaitUp(b.Context()); err != nil {
		b.Fatal(err)
	}
	return c
}

// BenchmarkRead compares the cost of one read of a hot record: the loader
// alone (a SQLite primary-key query), a plain Valkey GET (a round trip: what
// every read would cost without client-side caching), and a cache hit in
// each mode.
func BenchmarkRead(b *testing.B) {
	load := sqliteLoader(b)
	r := testsvc.StartRedis(b)
	ctx := context.Background()

	b.Run("loader-only", func(b *testing.B) {
		l := load("42")
		for b.Loop() {
			if _, err := l(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("valkey-GET-round-trip", func(b *testing.B) {
		vk := openBenchValkey(b, r.URL()).Valkey()
		if err := vk.Do(ctx, vk.B().Set().Key("bench:plain").Value(string(make([]byte, 256))).Build()).Error(); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if _, err := vk.Do(ctx, vk.B().Get().Key("bench:plain").Build()).AsBytes(); err != nil && !valkeygo.IsValkeyNil(err) {
				b.Fatal(err)
			}
		}
	})
	for _, mode := range []string{"local", "valkey"} {
		b.Run("cache-hit-"+mode, func(b *testing.B) {
			var vk *valkey.Client
			if mode == "valkey" {
				vk = openBenchValkey(b, r.URL())
			}
			c, err := cache.New("read"+mode, cache.Options{Valkey: vk, TTL: time.Hour})
			if err != nil {
				b.Fatal(err)
			}
			l := load("42")
			for range 3 {
				if _, err := c.Get(ctx, "42", l); err != nil {
					b.Fatal(err)
				}
			}
			h0, m0 := c.Stats()
			for b.Loop() {
				if _, err := c.Get(ctx, "42", l); err != nil {
					b.Fatal(err)
				}
			}
			h, m := c.Stats()
			b.ReportMetric(float64(h-h0)/float64(h-h0+m-m0), "hit-ratio")
		})
	}
}

// BenchmarkZipf runs a read-mostly workload (95% reads, 5% writes, each
// write invalidating its key) over 10,000 records whose popularity follows
// a Zipf law (s=1.1), in parallel, and reports the hit ratio and the loads
// per operation. The in-process LRU holds 1,000 entries, a tenth of the
// records; Valkey holds them all.
func BenchmarkZipf(b *testing.B) {
	load := sqliteLoader(b)
	r := testsvc.StartRedis(b)
	for _, mode := range []string{"local", "valkey"} {
		b.Run(mode, func(b *testing.B) {
			var vk *valkey.Client
			if mode == "valkey" {
				vk = openBenchValkey(b, r.URL())
			}
			c, err := cache.New(fmt.Sprintf("zipf%s%d", mode, b.N), cache.Options{Valkey: vk, TTL: time.Hour, MaxEntries: 1000})
			if err != nil {
				b.Fatal(err)
			}
			var loads atomic.Int64
			var seed atomic.Uint64
			b.SetParallelism(8) // writers wait out the SyncWindow: keep readers busy meanwhile
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				rnd := rand.New(rand.NewPCG(seed.Add(1), 7))
				zipf := rand.NewZipf(rnd, 1.1, 1, benchRows-1)
				ctx := context.Background()
				for pb.Next() {
					key := strconv.FormatUint(zipf.Uint64(), 10)
					if rnd.IntN(100) < 5 {
						c.Invalidate(ctx, key)
						continue
					}
					l := load(key)
					if _, err := c.Get(ctx, key, func(ctx context.Context) ([]byte, error) {
						loads.Add(1)
						return l(ctx)
					}); err != nil {
						b.Error(err)
						return
					}
				}
			})
			h, m := c.Stats()
			b.ReportMetric(float64(h)/float64(h+m), "hit-ratio")
			b.ReportMetric(float64(loads.Load())/float64(b.N), "loads/op")
		})
	}
}
