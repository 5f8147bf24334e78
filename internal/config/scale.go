package config

import (
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Database chooses the record store.
type Database struct {
	// URL is a postgres:// (or postgresql://) URL; empty means the SQLite
	// file in DataDir. It may hold a password, so it is a Secret.
	URL Secret
	// MaxConns sizes the Postgres connection pool.
	MaxConns int64
}

// Valkey configures the optional Valkey (or Redis) server shared by
// instances: caches, rate limits and cross-instance events.
type Valkey struct {
	// URL is redis:// or rediss:// (TLS) with optional user:password and
	// db number; empty means in-process caches, limits and events.
	URL Secret
	// CacheTTL bounds how long a cached workspace record lives; 0 turns
	// the workspace read cache off.
	CacheTTL time.Duration
}

// Rate is one rate-limit class: PerSecond requests a second on average,
// with bursts of Burst. A zero Rate is no limit.
type Rate struct {
	PerSecond float64
	Burst     int
}

// Off reports whether the class does not limit.
func (r Rate) Off() bool { return r.PerSecond <= 0 }

func (r Rate) String() string {
	if r.Off() {
		return "0"
	}
	return strconv.FormatFloat(r.PerSecond, 'g', -1, 64) + ":" + strconv.Itoa(r.Burst)
}

// RateLimits are the rate-limit classes.
type RateLimits struct {
	// Anonymous limits unauthenticated requests per source address.
	Anonymous Rate
	// AuthFailures limits failed authentications per source address and
	// per account.
	AuthFailures Rate
	// Principal limits authenticated requests per user or API key.
	Principal Rate
	// TaskCreate limits task creation per user.
	TaskCreate Rate
	// WSCommand limits WebSocket commands per connection.
	WSCommand Rate
	// TrustedProxies are the proxies whose X-Forwarded-For is believed;
	// from anyone else the header is ignored and the peer address is the
	// source address.
	TrustedProxies []netip.Prefix
}

func (s *flagSet) addScaleFlags(c *Config) {
	s.section("Store, Valkey and scale-out")
	s.secret(&c.Database.URL, "database-url", "url",
		"`postgres://user:pass@host:5432/db?sslmode=…`: keep records in Postgres (several instances); empty = the SQLite file in `--data-dir`. Never logged.")
	s.count(&c.Database.MaxConns, "database-max-conns", "count", 20,
		"Size of the Postgres connection pool.")
	s.secret(&c.Valkey.URL, "valkey-url", "url",
		"`redis://[user:pass@]host:6379/0` (or `valkey://`; `rediss://`/`valkeys://` for TLS): cross-instance events, shared rate limits and the shared auth cache; empty = in-process. Never logged.")
	s.duration(&c.Valkey.CacheTTL, "cache-ttl", time.Minute,
		"Life of a cached workspace record (in Valkey, or in process without it); writes retire it at once everywhere. `0` turns the cache off.")
	s.duration(&c.Tasks.Lease, "task-lease", 30*time.Second,
		"How long a runner's claim on a running task lasts without its heartbeat (renewed every third of it); after it expires another instance ends the task `INTERRUPTED`. Use the same value on every instance.")

	r := &c.RateLimits
	s.section("Rate limits (rate per second:burst, 0 = off)")
	rate := func(p *Rate, name, value, usage string) {
		s.fn(name, "rate:burst", value, usage+" Written `rate:burst` (requests a second, may be a fraction, and the burst); `0` = no limit.",
			func(v string) error { return parseRate(p, v) },
			func() any { return *p })
	}
	rate(&r.Anonymous, "rate-anonymous", "20:40",
		"Unauthenticated requests per source address.")
	rate(&r.AuthFailures, "rate-auth-failures", "0.2:10",
		"Failed sign-ins (bad token, key, cookie, password or refresh token) per source address and per account; once spent, requests are refused before anything is checked.")
	rate(&r.Principal, "rate-principal", "100:200",
		"Authenticated requests per user (or per API key).")
	rate(&r.TaskCreate, "rate-task-create", "1:20",
		"Tasks created per user (RPC and WebSocket alike).")
	rate(&r.WSCommand, "rate-ws-command", "10:20",
		"WebSocket commands per connection.")
	s.fn("trusted-proxies", "cidrs", "",
		"Addresses or CIDRs of reverse proxies whose `X-Forwarded-For` is believed (read from the right, skipping trusted hops), comma-separated; from anyone else the header is ignored.",
		func(v string) error { return parsePrefixes(&r.TrustedProxies, v) },
		func() any { return prefixStrings(r.TrustedProxies) })
}

func (c *Config) checkScale(p *problems) {
	if u := c.Database.URL.Reveal(); u != "" {
		pu, err := url.Parse(u)
		if err != nil || (pu.Scheme != "postgres" && pu.Scheme != "postgresql") || pu.Host == "" {
			p.add("database-url", c.Database.URL.String(), "want postgres://user:password@host:port/database")
		}
	}
	if c.Database.MaxConns < 1 || c.Database.MaxConns > 1000 {
		p.add("database-max-conns", strconv.FormatInt(c.Database.MaxConns, 10), "want 1 to 1000")
	}
	if u := c.Valkey.URL.Reveal(); u != "" {
		pu, err := url.Parse(u)
		if err != nil || !slices.Contains([]string{"redis", "rediss", "valkey", "valkeys"}, pu.Scheme) || pu.Host == "" {
			p.add("valkey-url", c.Valkey.URL.String(), "want redis://[user:password@]host:port/db (or valkey://), rediss:// or valkeys:// for TLS")
		}
	}
	if k := c.JWT.Key.Reveal(); k != "" && !strings.Contains(k, "-----BEGIN PRIVATE KEY-----") {
		p.add("jwt-key", c.JWT.Key.String(), "want a PEM (PKCS #8) Ed25519 private key, -----BEGIN PRIVATE KEY----- …")
	}
	if c.Valkey.CacheTTL < 0 || c.Valkey.CacheTTL > 24*time.Hour {
		p.add("cache-ttl", formatDuration(c.Valkey.CacheTTL), "want a duration from 0 (off) to 24h")
	}
	if c.Tasks.Lease < time.Second || c.Tasks.Lease > time.Hour {
		p.add("task-lease", formatDuration(c.Tasks.Lease), "want a duration between 1s and 1h")
	}
}
