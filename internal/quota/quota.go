// Package quota counts the long-lived streams each principal holds open —
// SSE streams, Connect server streams, WebSocket connections and their
// subscriptions, all on one count — against a cap per principal and a cap
// for the whole instance, so that one account cannot take every descriptor,
// goroutine and byte of memory the server has.
//
// The instance's total is counted here, in process: it protects this
// process's descriptors. The per-principal count is shared by every
// instance when a Valkey client is Up: each open stream is a member of a
// sorted set per principal, scored by when it expires; a Lua script drops
// the expired members, counts the rest and adds the new one atomically, and
// each instance renews its own members every TTL/3, so the streams of an
// instance that died stop counting within one TTL. Without Valkey, or while
// it is Degraded, the per-principal count is this instance's alone (a
// principal may then hold up to the cap on each instance); a stream opened
// during an outage is not counted by the other instances.
package quota

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/berthhq/berth/internal/fault"
	"github.com/berthhq/berth/internal/telemetry"
	"github.com/berthhq/berth/internal/valkey"
)

// RetryAfter is the wait a refusal suggests: streams end at their clients'
// pace, so this is a hint to back off, not a promise of room.
const RetryAfter = 5 * time.Second

// DefaultTTL is how long a shared stream slot lives without renewal.
const DefaultTTL = 30 * time.Second

// Options configure Streams; the zero value of each field is its default.
type Options struct {
	// PerPrincipal caps the streams of one key (0: no cap).
	PerPrincipal int64
	// Total caps the streams of this instance (0: no cap).
	Total int64
	// Valkey shares the per-principal count between instances; nil keeps
	// it in this process.
	Valkey *valkey.Client
	// TTL is how long a shared slot lives unless renewed (DefaultTTL).
	TTL time.Duration
	// Registerer receives berth_stream_quota_refused_total and
	// berth_streams_held; nil registers nothing.
	Registerer prometheus.Registerer
	// Logger receives Valkey failures; nil discards them.
	Logger *slog.Logger
}

// Streams counts open streams. It is safe for concurrent use.
type Streams struct {
	opts    Options
	refused *prometheus.CounterVec

	mu    sync.Mutex
	held  map[string]map[string]bool // key → its slots here: member id → shared
	total int64
	seq   uint64
	// instance names this process's members in the shared sets.
	instance string

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// New returns a Streams and, with Valkey, starts renewing its shared slots
// until Close.
func New(opts Options) *Streams {
	if opts.TTL <= 0 {
		opts.TTL = DefaultTTL
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Streams{
		opts:     opts,
		held:     map[string]map[string]bool{},
		instance: "local",
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_stream_quota_refused_total",
			Help: "Streams refused because the principal (quota=principal) or the instance (quota=instance) held its cap.",
		}, []string{"quota"}),
	}
	if opts.Registerer != nil {
		s.refused = telemetry.Register(opts.Registerer, s.refused)
		s.refused.WithLabelValues("principal")
		s.refused.WithLabelValues("instance")
		telemetry.Register(opts.Registerer, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "berth_streams_held",
			Help: "Stream slots held on this instance, against its total cap.",
		}, func() float64 {
			_, total := s.Held("")
			return float64(total)
		}))
	}
	if opts.Valkey != nil {
		s.instance = opts.Valkey.ID()
		go s.renew()
	} else {
		close(s.done)
	}
	return s
}

// Close stops renewing the shared slots (they expire within a TTL).
func (s *Streams) Close() {
	s.once.Do(func() { close(s.stop) })
	<-s.done
}

// Acquire takes one stream slot for key (a principal: "user:<id>"), or
// refuses with a fault.ErrResourceExhausted that names the cap and
// suggests RetryAfter. release gives the slot back; it is safe to call more
// than once, and must be called on every path once Acquire succeeded.
func (s *Streams) Acquire(ctx context.Context, key string) (release func(), err error) {
	s.mu.Lock()
	if s.opts.Total > 0 && s.total >= s.opts.Total {
		s.mu.Unlock()
		s.refused.WithLabelValues("instance").Inc()
		return nil, &fault.Error{Kind: fault.ErrResourceExhausted, RetryAfter: RetryAfter,
			Message: fmt.Sprintf("the server holds its most streams (%d); retry later", s.opts.Total)}
	}
	s.seq++
	member := s.instance + ":" + strconv.FormatUint(s.seq, 10)
	local := int64(len(s.held[key]))
	shared := s.opts.PerPrincipal > 0 && s.opts.Valkey.Up()
	if s.opts.PerPrincipal > 0 && !shared && local >= s.opts.PerPrincipal {
		s.mu.Unlock()
		return nil, s.refuse()
	}
	// Reserve here first, so that calls at once on this instance cannot
	// pass the cap while the shared count is asked.
	s.total++
	s.add(key, member, false)
	s.mu.Unlock()

	if shared {
		ok, err := s.takeShared(ctx, key, member)
		switch {
		case err != nil:
			// Valkey failed: count on this instance alone.
			s.opts.Valkey.ReportFailure(ctx, err)
			s.opts.Logger.WarnContext(ctx, "counting a stream in valkey failed; counting it here alone", "error", err.Error())
			s.mu.Lock()
			over := local >= s.opts.PerPrincipal
			s.mu.Unlock()
			if over {
				s.drop(key, member)
				return nil, s.refuse()
			}
		case !ok:
			s.drop(key, member)
			return nil, s.refuse()
		default:
			s.mu.Lock()
			s.held[key][member] = true
			s.mu.Unlock()
		}
	}
	var once sync.Once
	return func() { once.Do(func() { s.release(key, member) }) }, nil
}

// refuse counts and returns a per-principal refusal.
func (s *Streams) refuse() error {
	s.refused.WithLabelValues("principal").Inc()
	return &fault.Error{Kind: fault.ErrResourceExhausted, RetryAfter: RetryAfter,
		Message: fmt.Sprintf("quota max-streams-per-user (%d) reached: close one of your open streams (SSE, server streams, WebSocket connections and subscriptions count together) first", s.opts.PerPrincipal)}
}

// add records a slot; s.mu is held.
func (s *Streams) add(key, member string, shared bool) {
	m := s.held[key]
	if m == nil {
		m = map[string]bool{}
		s.held[key] = m
	}
	m[member] = shared
}

// drop forgets a slot that was reserved but not granted.
func (s *Streams) drop(key, member string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.forget(key, member)
}

// forget removes a slot and reports whether it was shared; s.mu is held.
func (s *Streams) forget(key, member string) bool {
	m := s.held[key]
	shared, ok := m[member]
	if !ok {
		return false
	}
	delete(m, member)
	if len(m) == 0 {
		delete(s.held, key)
	}
	s.total--
	return shared
}

// release gives a granted slot back, here and in Valkey.
func (s *Streams) release(key, member string) {
	s.mu.Lock()
	shared := s.forget(key, member)
	s.mu.Unlock()
	if shared && s.opts.Valkey.Up() {
		// In the background: a release runs where streams end, sometimes
		// under their locks, and must not wait on the network there.
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			vk := s.opts.Valkey.Valkey()
			if err := vk.Do(ctx, vk.B().Zrem().Key(s.sharedKey(key)).Member(member).Build()).Error(); err != nil {
				// It expires within a TTL in any case.
				s.opts.Valkey.ReportFailure(ctx, err)
			}
		}()
	}
}

// Held returns the slots key holds on this instance, and the instance's
// total: for tests and metrics.
func (s *Streams) Held(key string) (mine, total int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return int64(len(s.held[key])), s.total
}
