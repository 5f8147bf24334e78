// Package cache is berth's read-through cache for what the hot paths read
// (workspace records, memberships and permissions, sessions and
// revocations, stats): Get returns a key's value, calling the loader only
// when it has none, and Invalidate, called after a write commits, makes
// every later Get load again. Values are bytes; the caller encodes them.
//
// A Cache works in one of three modes, chosen on each call:
//
//   - No Valkey configured: a bounded LRU with a TTL, in this process.
//     There is one instance, and its writes invalidate it.
//   - Valkey configured and Up: values live in Valkey and are read with
//     server-assisted client-side caching (valkey-go's DoCache), so a
//     repeated read costs no round trip. A write deletes the key; Valkey
//     then invalidates the copy every instance holds.
//   - Valkey configured but Degraded: nothing is cached; every Get calls
//     the loader. A per-instance copy could not be invalidated by the
//     other instances' writes, so serving one would be serving stale data.
//
// # Coherence
//
// Valkey mode gives this guarantee, from every instance: a Get that starts
// after Invalidate(k) returned never returns a value of k loaded before
// that Invalidate began (it returns one loaded after the write committed).
// Four mechanisms make it hold, each closing one way to break it:
//
//   - The invalidation push travels on its own: measured on loopback,
//     about 42% of the reads made on instance B right after instance A's
//     write returned still found B's old local copy (valkey package,
//     BenchmarkStaleReads). Invalidate therefore waits valkey.Client's
//     SyncWindow (Settle) after its DEL, and an instance serves a local
//     copy only while its last answered PING was sent less than that
//     window ago (valkey.Client.Sync). A reply comes after every push
//     sent before it on the same connection, so such an instance has
//     applied every invalidation of a write that completed before the Get
//     began. The cost: a PING per half window per busy instance, and
//     SyncWindow (10ms by default) added to each Invalidate.
//   - A reader can load an old value from the database, a writer commit
//     and invalidate, and then the reader store the old value. Each key
//     has a generation in Valkey: the reader reads it before loading, the
//     writer replaces it (in the same script as its DEL), and the reader's
//     store is a script that writes the value only if the generation is
//     still the one it read.
//   - Valkey goes away. Reads on an instance that noticed load from the
//     source. An instance that has not noticed yet cannot renew its lease,
//     and Invalidate waits out the window even when its DEL failed, so
//     that instance serves nothing from memory either. Instances notice the
//     server's return at different times: Invalidate on an instance still
//     Degraded tries its DEL anyway (with a 100ms timeout), so that the
//     instances already back do not keep the old value.
//   - An instance may have missed invalidations, or failed to send its
//     own, while it could not reach Valkey. Each cache has an epoch in
//     Valkey, part of every key; on each recovery (and at its first
//     connection) an instance increments it and waits the window before it
//     is Up again, so every entry from before the outage is abandoned (it
//     expires with its TTL) on every instance.
//
// What it does not cover: an instance that writes while it cannot reach
// Valkey but others can (a partition, or Valkey answering it slower than
// the timeout): they serve the old value until the writer reconnects and
// flushes, or for at most the TTL. And a write whose instance dies between
// the commit and Invalidate: the old value lives until any instance
// reconnects or starts, or for at most the TTL. Values are served from
// memory only while round trips to Valkey take less than the window: when
// Valkey is slower, every Get reads from Valkey or loads.
//
// Without Valkey, the in-process LRU gives the same guarantee for its one
// instance, with a marker (its flight) per pending load against the
// load/invalidate race.
package cache

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/berthhq/berth/internal/telemetry"
	"github.com/berthhq/berth/internal/valkey"
)

// Options configure a Cache. The zero value of every field means its
// default.
type Options struct {
	// Valkey is the shared server; nil keeps values in this process.
	Valkey *valkey.Client
	// TTL bounds how long a value is kept without being read again from
	// the loader. Default 1 minute.
	TTL time.Duration
	// MaxEntries bounds the in-process LRU. Default 10,000.
	MaxEntries int
	// Registerer receives the cache's metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Logger receives failures to reach Valkey; nil discards them.
	Logger *slog.Logger
	// Now is the clock of the in-process LRU's expiries (Valkey keeps its
	// own); nil is time.Now.
	Now func() time.Time
}

// Cache is one named read-through cache. It is safe for concurrent use.
type Cache struct {
	name       string
	ttl        time.Duration
	maxEntries int
	log        *slog.Logger

	local  *lru           // without Valkey
	remote *remote        // with Valkey
	vk     *valkey.Client // nil without Valkey

	hits, misses       atomic.Uint64
	hitsM, clientHitsM prometheus.Counter
	missesM            prometheus.Counter
}

// New returns the cache called name (a word, such as "workspaces": it is
// the metrics' label and part of the Valkey keys).
func New(name string, opts Options) (*Cache, error) {
	if name == "" || strings.ContainsAny(name, ":{}* \t\n") {
		return nil, fmt.Errorf("cache: invalid name %q", name)
	}
	if opts.TTL <= 0 {
		opts.TTL = time.Minute
	}
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = 10_000
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	c := &Cache{name: name, ttl: opts.TTL, maxEntries: opts.MaxEntries, log: opts.Logger, vk: opts.Valkey}
	c.registerMetrics(opts.Registerer)
	if c.vk == nil {
		c.local = newLRU(opts.MaxEntries, opts.Now)
	} else {
		c.remote = newRemote(c.vk, name, opts.TTL)
		c.vk.OnRecovery(c.remote.flush)
	}
	return c, nil
}

// Get returns key's value: the cached one, or else load's, which it caches.
// An error of load is returned as it is, and nothing is cached. Concurrent
// Gets of a key that is missing share one call of load (on this instance),
// unless an Invalidate of the key came between them: a Get never receives
// a value whose load began before an Invalidate that returned before the
// Get began. Failures
// of Valkey are not errors: Get then calls load, and the client goes
// Degraded. The caller must not modify the returned bytes.
func (c *Cache) Get(ctx context.Context, key string, load func(context.Context) ([]byte, error)) ([]byte, error) {
	switch {
	case c.vk == nil:
		return c.local.get(ctx, key, c.ttl, load, c.counted)
	case c.vk.Up():
		return c.remote.get(ctx, key, load, c.counted)
	}
	// Degraded: a copy here could not be invalidated by the others.
	c.counted(false, false)
	return load(ctx)
}

// Invalidate makes every later Get of keys, on every instance, load again.
// Call it after the write that changed them committed. With Valkey it
// waits the client's SyncWindow, so that when it returns no instance
// serves the old values (see the package doc). ctx's end does not cut it
// short: the write has committed already.
//
// It invalidates in Valkey even while the client is Degraded (with a
// shorter timeout): other instances may have reconnected before this one
// noticed Valkey was back, and they must not keep the old value. When
// Valkey cannot be reached, it still waits the window: an instance that
// cannot reach Valkey either is then past its lease and serves nothing
// from memory. What could not be invalidated is left to the flush of the
// client's recovery; the failure is logged when the client was Up.
func (c *Cache) Invalidate(ctx context.Context, keys ...string) {
	if len(keys) == 0 {
		return
	}
	if c.vk == nil {
		c.local.invalidate(keys)
		return
	}
	defer c.vk.Settle()
	up := c.vk.Up()
	timeout := c.remote.timeout
	if !up {
		timeout = degradedTimeout
	}
	switch err := c.remote.invalidate(context.WithoutCancel(ctx), keys, timeout); {
	case err != nil && up:
		c.log.Warn("cache: invalidation failed; flushing when Valkey is back", "cache", c.name, "err", err)
	case err == nil && !up:
		c.vk.CheckNow() // Valkey answers again: recover sooner
	}
}

// degradedTimeout bounds an invalidation attempted while the client is
// Degraded, when Valkey is most likely still down.
const degradedTimeout = 100 * time.Millisecond

// Stats returns the hits and misses counted since New.
func (c *Cache) Stats() (hits, misses uint64) { return c.hits.Load(), c.misses.Load() }

// counted records a hit (client: served from this process's memory) or a
// miss.
func (c *Cache) counted(hit, client bool) {
	if hit {
		c.hits.Add(1)
		c.hitsM.Inc()
		if client {
			c.clientHitsM.Inc()
		}
		return
	}
	c.misses.Add(1)
	c.missesM.Inc()
}

// registerMetrics creates the cache's metrics, labelled with its name, on
// reg (when not nil). The hit ratio is no metric of its own: it is a query
// over the counters, over any window —
// rate(berth_cache_hits_total[5m]) / (rate(berth_cache_hits_total[5m]) + rate(berth_cache_misses_total[5m])).
func (c *Cache) registerMetrics(reg prometheus.Registerer) {
	hits := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "berth_cache_hits_total",
		Help: "Cache reads answered without calling the loader.",
	}, []string{"cache"})
	clientHits := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "berth_cache_client_hits_total",
		Help: "Cache hits served from this process's memory, without a round trip to Valkey.",
	}, []string{"cache"})
	misses := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "berth_cache_misses_total",
		Help: "Cache reads that called the loader or waited for another read's call of it (including every read while Valkey is degraded).",
	}, []string{"cache"})
	if reg != nil {
		hits = telemetry.Register(reg, hits)
		clientHits = telemetry.Register(reg, clientHits)
		misses = telemetry.Register(reg, misses)
	}
	c.hitsM = hits.WithLabelValues(c.name)
	c.clientHitsM = clientHits.WithLabelValues(c.name)
	c.missesM = misses.WithLabelValues(c.name)
}
