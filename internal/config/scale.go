package config

import (
	"fmt"
	"log/slog"
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

func defaultDatabase() Database { return Database{MaxConns: 20} }

func defaultValkey() Valkey { return Valkey{CacheTTL: time.Minute} }

func defaultRateLimits() RateLimits {
	return RateLimits{
		Anonymous:    Rate{PerSecond: 20, Burst: 40},
		AuthFailures: Rate{PerSecond: 0.2, Burst: 10},
		Principal:    Rate{PerSecond: 100, Burst: 200},
		TaskCreate:   Rate{PerSecond: 1, Burst: 20},
		WSCommand:    Rate{PerSecond: 10, Burst: 20},
	}
}

func (s *flagSet) addScaleFlags(c *Config) {
	s.section("Store, Valkey and scale-out")
	s.add(&secretValue{&c.Database.URL}, "database-url", "url", "",
		"Postgres URL (postgres://user:pass@host:5432/db?sslmode=…) for several instances; empty = the SQLite file in --data-dir. Never logged.")
	s.add(&int64Value{&c.Database.MaxConns}, "database-max-conns", "count", strconv.FormatInt(c.Database.MaxConns, 10),
		"Size of the Postgres connection pool.")
	s.add(&secretValue{&c.Valkey.URL}, "valkey-url", "url", "",
		"Valkey/Redis URL (redis://[user:pass@]host:6379/0, rediss:// for TLS) shared by instances for caches, rate limits and events; empty = in-process. Never logged.")
	s.add(&durationValue{&c.Valkey.CacheTTL}, "cache-ttl", "duration", formatDuration(c.Valkey.CacheTTL),
		"How long a cached workspace record lives (in Valkey, or in process without it); writes invalidate it at once everywhere. 0 turns the cache off.")
	s.add(&durationValue{&c.Tasks.Lease}, "task-lease", "duration", formatDuration(c.Tasks.Lease),
		"How long a runner's claim on a running task lasts without a heartbeat; another instance ends the task INTERRUPTED after it expires.")
	r := &c.RateLimits
	s.section("Rate limits (rate per second:burst, 0 = off)")
	s.add(&rateValue{&r.Anonymous}, "rate-anonymous", "rate:burst", r.Anonymous.String(),
		"Unauthenticated requests per source address.")
	s.add(&rateValue{&r.AuthFailures}, "rate-auth-failures", "rate:burst", r.AuthFailures.String(),
		"Failed authentications per source address and per account.")
	s.add(&rateValue{&r.Principal}, "rate-principal", "rate:burst", r.Principal.String(),
		"Authenticated requests per user or API key.")
	s.add(&rateValue{&r.TaskCreate}, "rate-task-create", "rate:burst", r.TaskCreate.String(),
		"Tasks created per user.")
	s.add(&rateValue{&r.WSCommand}, "rate-ws-command", "rate:burst", r.WSCommand.String(),
		"WebSocket commands per connection.")
	s.add(&prefixListValue{&r.TrustedProxies}, "trusted-proxies", "cidrs", "",
		"Comma-separated addresses or CIDRs of reverse proxies whose X-Forwarded-For is believed; from anyone else it is ignored.")
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

// scaleLogAttrs lists the scale-out settings for LogValue, without secrets.
func (c *Config) scaleLogAttrs() []slog.Attr {
	r := c.RateLimits
	proxies := make([]string, len(r.TrustedProxies))
	for i, p := range r.TrustedProxies {
		proxies[i] = p.String()
	}
	return []slog.Attr{
		slog.Bool("database-url", c.Database.URL != ""), // only whether it is set
		slog.Int64("database-max-conns", c.Database.MaxConns),
		slog.Bool("valkey-url", c.Valkey.URL != ""), // only whether it is set
		slog.String("cache-ttl", formatDuration(c.Valkey.CacheTTL)),
		slog.String("task-lease", formatDuration(c.Tasks.Lease)),
		slog.String("rate-anonymous", r.Anonymous.String()),
		slog.String("rate-auth-failures", r.AuthFailures.String()),
		slog.String("rate-principal", r.Principal.String()),
		slog.String("rate-task-create", r.TaskCreate.String()),
		slog.String("rate-ws-command", r.WSCommand.String()),
		slog.Any("trusted-proxies", proxies),
	}
}

// rateValue is a Rate written "rate:burst" (rate per second, may be a
// fraction such as 0.2), or "0" for no limit.
type rateValue struct{ p *Rate }

func (v *rateValue) String() string { return v.p.String() }

func (v *rateValue) Set(s string) error {
	s = strings.TrimSpace(s)
	if s == "0" || s == "off" {
		*v.p = Rate{}
		return nil
	}
	rs, bs, ok := strings.Cut(s, ":")
	r, err1 := strconv.ParseFloat(strings.TrimSpace(rs), 64)
	b, err2 := strconv.Atoi(strings.TrimSpace(bs))
	if !ok || err1 != nil || err2 != nil || r <= 0 || r > 1e6 || b < 1 || b > 1e6 {
		return fmt.Errorf("want rate:burst such as 10:20 (10 a second, bursts of 20), 0.5:5, or 0 for no limit")
	}
	*v.p = Rate{PerSecond: r, Burst: b}
	return nil
}

func (v *rateValue) setFromEnv(s string) error { return v.Set(s) }

// prefixListValue is a comma-separated list of addresses or CIDR prefixes.
type prefixListValue struct{ p *[]netip.Prefix }

func (v *prefixListValue) String() string {
	out := make([]string, len(*v.p))
	for i, p := range *v.p {
		out[i] = p.String()
	}
	return strings.Join(out, ",")
}

func (v *prefixListValue) Set(s string) error {
	var out []netip.Prefix
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		var pfx netip.Prefix
		var err error
		if strings.Contains(part, "/") {
			pfx, err = netip.ParsePrefix(part)
		} else {
			var a netip.Addr
			a, err = netip.ParseAddr(part)
			pfx = netip.PrefixFrom(a, a.BitLen())
		}
		if err != nil {
			return fmt.Errorf("want addresses or CIDRs such as 10.0.0.0/8,::1; %q is neither", part)
		}
		pfx = pfx.Masked()
		if !contains(out, pfx) {
			out = append(out, pfx)
		}
	}
	*v.p = out
	return nil
}

func (v *prefixListValue) setFromEnv(s string) error { return v.Set(s) }

func contains(list []netip.Prefix, p netip.Prefix) bool {
	for _, q := range list {
		if q == p {
			return true
		}
	}
	return false
}
