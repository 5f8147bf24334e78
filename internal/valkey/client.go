// Package valkey connects berth to Valkey (or Redis, which speaks the same
// protocol) for what several instances must share: caches kept coherent by
// server-assisted client-side caching (internal/cache), rate-limit budgets
// (internal/ratelimit) and the event bus (Bridge).
//
// A Client is either Up or Degraded. It starts Degraded and a health loop
// (PING about every second, with a short timeout) flips it: to Degraded on
// the first failure, seen by the loop or reported by a user of the client
// (ReportFailure), and back to Up once PING answers again and every
// recovery hook has run. Opening a Client never fails because Valkey is
// down: the server starts on its local fallbacks and switches when Valkey
// answers. Users check Up before each use and fall back to their
// in-process implementation otherwise; Status is what /ready shows.
//
// The client uses one connection for commands, cached reads and pub/sub
// (PipelineMultiplex -1): Valkey's invalidation pushes and the replies
// to this client's commands then arrive in one ordered stream, which the
// coherence of internal/cache relies on (see Sync).
package valkey

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	valkeygo "github.com/valkey-io/valkey-go"
	"go.opentelemetry.io/otel/trace"
)

// The values of Status.
const (
	// StatusOK means Valkey answers and berth uses it.
	StatusOK = "ok"
	// StatusDegraded means Valkey is configured but does not answer; berth
	// serves from its in-process fallbacks meanwhile.
	StatusDegraded = "degraded (using local fallback)"
	// StatusNotConfigured is the Status of a nil *Client: no Valkey URL was
	// given, and the in-process implementations are the only ones.
	StatusNotConfigured = "not configured"
)

// Options tune a Client. The zero value of every field means its default.
type Options struct {
	// Registerer receives the client's metrics (berth_valkey_up,
	// berth_valkey_outages_total); nil registers nothing.
	Registerer prometheus.Registerer
	// Logger receives state changes; nil discards them.
	Logger *slog.Logger
	// Namespace starts every key and pub/sub channel berth uses, so that
	// several deployments can share a server (pub/sub channels are not
	// separated by database number). Default "berth".
	Namespace string
	// HealthInterval is the time between two health PINGs. Default 1s.
	HealthInterval time.Duration
	// HealthTimeout bounds one health PING. Default 500ms.
	HealthTimeout time.Duration
	// SyncWindow is the coherence window of cached reads: a cached value
	// is served without a round trip only within SyncWindow of this
	// client's last completed round trip, and Settle waits SyncWindow.
	// It must be several round trips long. Default 10ms.
	SyncWindow time.Duration
	// ClientCacheBytes bounds the client-side cache. Default 64 MiB.
	ClientCacheBytes int
	// TLSConfig is the TLS configuration for rediss:// and valkeys://
	// URLs, such as the RootCAs of a private certificate authority; its
	// ServerName defaults to the URL's host. Nil: the system's roots. It is
	// ignored for plain-text URLs.
	TLSConfig *tls.Config
	// Tracing, when set, makes each round trip through Valkey() a client
	// span of its (a child of the caller's span); nil traces nothing.
	Tracing trace.TracerProvider
}

// Client is a connection to Valkey with its health state. It is safe for
// concurrent use. A nil *Client means Valkey is not configured: Up is false
// and Status says so.
type Client struct {
	vk     valkeygo.Client
	users  valkeygo.Client // vk, traced when Options.Tracing is set (see Valkey)
	opts   Options
	log    *slog.Logger
	id     string
	target string // the URL without its password, for logs

	up    atomic.Bool
	fails atomic.Uint64 // failures seen; a recovery that saw one is void

	mu       sync.Mutex
	loss     []func()
	recovery []func(context.Context) error

	sync syncState

	upGauge prometheus.Gauge
	outages prometheus.Counter

	kick     chan struct{} // CheckNow; capacity 1
	stop     chan struct{}
	done     chan struct{}
	closeOne sync.Once
}

// Open returns a Client for the server rawURL names: redis:// or rediss://
// (TLS), valkey:// or valkeys://, with an optional user and password and
// database number (redis://user:password@host:6379/2). It fails only for a
// URL it cannot use; when the server does not answer, the Client starts
// Degraded and keeps trying. ctx bounds the first attempt, which Open waits
// for (at most Options.HealthTimeout) so that a server that is up is Up
// when Open returns. Errors and logs never contain the password.
func Open(ctx context.Context, rawURL string, opts Options) (*Client, error) {
	opts = withDefaults(opts)
	option, target, err := parseURL(rawURL)
	if err != nil {
		return nil, err
	}
	c := &Client{
		opts:   opts,
		log:    opts.Logger,
		id:     randomID(),
		target: target,
		kick:   make(chan struct{}, 1),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	c.sync.init(opts.SyncWindow)
	if option.TLSConfig != nil && opts.TLSConfig != nil {
		cfg := opts.TLSConfig.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName = option.TLSConfig.ServerName
		}
		// #nosec G402 -- only what the operator's --valkey-url asked for; berth never sets it itself
		cfg.InsecureSkipVerify = cfg.InsecureSkipVerify || option.TLSConfig.InsecureSkipVerify
		option.TLSConfig = cfg
	}
	// One ordered stream for replies and invalidation pushes (see the
	// package doc and Sync).
	option.ForceSingleClient = true
	option.PipelineMultiplex = -1
	option.CacheSizeEachConn = opts.ClientCacheBytes
	option.ClientName = "berth-" + c.id
	// The health loop and the users' fallbacks handle failures: a retry
	// inside the client would only delay the fallback.
	option.DisableRetry = true
	if option.Dialer.Timeout == 0 {
		option.Dialer.Timeout = 2 * time.Second
	}
	option.ConnWriteTimeout = 3 * time.Second
	// A no-op handler makes every connection read in the background, so
	// invalidations are applied as soon as they arrive, even when idle.
	option.OnInvalidations = func([]valkeygo.ValkeyMessage) {}
	vk, err := valkeygo.NewClient(option)
	if vk == nil {
		// With ForceSingleClient only an invalid option fails; a server
		// that does not answer returns a client and an error.
		return nil, fmt.Errorf("valkey: open %s: %w", target, redact(err, option.Password))
	}
	c.vk, c.users = vk, vk
	if opts.Tracing != nil {
		c.users = newTracedClient(vk, opts.Tracing)
	}
	c.registerMetrics(opts.Registerer)
	c.upGauge.Set(0)

	first, cancel := context.WithTimeout(ctx, opts.HealthTimeout)
	c.probe(first)
	cancel()
	if !c.Up() {
		c.log.Warn("valkey: not reachable; using local fallbacks until it is", "valkey", target)
	}
	// #nosec G118 -- the client's own loop lives until Close, not for one request
	go c.run()
	return c, nil
}

// withDefaults fills opts' zero fields.
func withDefaults(opts Options) Options {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.Namespace == "" {
		opts.Namespace = "berth"
	}
	if opts.HealthInterval <= 0 {
		opts.HealthInterval = time.Second
	}
	if opts.HealthTimeout <= 0 {
		opts.HealthTimeout = 500 * time.Millisecond
	}
	if opts.SyncWindow <= 0 {
		opts.SyncWindow = 10 * time.Millisecond
	}
	if opts.ClientCacheBytes <= 0 {
		opts.ClientCacheBytes = 64 << 20
	}
	return opts
}

// parseURL turns rawURL into client options and the URL without its
// password. Its errors never contain the password.
func parseURL(rawURL string) (valkeygo.ClientOption, string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		// url.Error repeats the whole URL; keep only the reason.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return valkeygo.ClientOption{}, "", fmt.Errorf("valkey: invalid URL: %w", err)
	}
	switch u.Scheme {
	case "redis", "rediss", "valkey", "valkeys":
	default:
		return valkeygo.ClientOption{}, "", fmt.Errorf("valkey: invalid URL: scheme %q (want redis, rediss, valkey or valkeys)", u.Scheme)
	}
	if u.Host == "" {
		return valkeygo.ClientOption{}, "", errors.New("valkey: invalid URL: no host")
	}
	password, _ := u.User.Password()
	option, err := valkeygo.ParseURL(rawURL)
	if err != nil {
		return valkeygo.ClientOption{}, "", fmt.Errorf("valkey: invalid URL: %w", redact(err, password))
	}
	return option, u.Redacted(), nil
}

// redact removes password from err's message.
func redact(err error, password string) error {
	if err == nil || password == "" || !strings.Contains(err.Error(), password) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), password, "xxxxx"))
}

// randomID returns a new instance id: 16 hex digits.
func randomID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Valkey is the underlying valkey-go client, for internal/cache and
// internal/ratelimit (its round trips are spans when Options.Tracing is
// set; the client's own health PINGs are not). Check Up before using it,
// and ReportFailure what fails.
func (c *Client) Valkey() valkeygo.Client { return c.users }

// ID identifies this client (this berth instance) among the others.
func (c *Client) ID() string { return c.id }

// Key returns a key (or channel) name in this client's namespace:
// "<namespace>:<part>:<part>…".
func (c *Client) Key(parts ...string) string {
	return c.opts.Namespace + ":" + strings.Join(parts, ":")
}

// Close stops the health loop and closes the connection; the client is no
// longer Up (the loss hooks do not run). It is safe to call twice.
func (c *Client) Close() {
	c.closeOne.Do(func() {
		close(c.stop)
		<-c.done
		c.mu.Lock()
		c.up.Store(false)
		c.upGauge.Set(0)
		c.mu.Unlock()
		c.vk.Close()
	})
}
