// Package ratelimit decides whether a request may go on, by classes of
// requests (anonymous requests per source address, failed logins per
// address and per account, authenticated requests per principal, task
// creation per user, WebSocket commands per connection), each with its own
// rate and burst, counted per key within the class.
//
// With Valkey Up, every instance draws on one budget per key: GCRA (the
// generic cell rate algorithm, equivalent to a token bucket) runs in one
// Lua script, atomically, on the server's clock (TIME), so instances whose
// clocks disagree still agree on the budget. Without Valkey, or while it is
// Degraded, each instance keeps its own budgets in a bounded map of
// golang.org/x/time/rate limiters; during an outage a key can therefore
// get up to one budget per instance. A Valkey failure is never an error
// for the caller: the decision falls back to the local budget.
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/berthhq/berth/internal/telemetry"
	"github.com/berthhq/berth/internal/valkey"
)

// The classes the server limits. Their budgets come from its configuration.
const (
	// Anonymous counts unauthenticated requests per source address.
	Anonymous = "anonymous"
	// AuthFailureAddress counts failed authentications per source address.
	AuthFailureAddress = "auth_failure_address"
	// AuthFailureAccount counts failed authentications per account.
	AuthFailureAccount = "auth_failure_account"
	// Principal counts authenticated requests per principal.
	Principal = "principal"
	// TaskCreate counts task creations per user.
	TaskCreate = "task_create"
	// WSCommand counts WebSocket commands per connection.
	WSCommand = "ws_command"
)

// ErrUnknownClass is Allow's error for a class the Limiter was not given.
var ErrUnknownClass = errors.New("ratelimit: unknown class")

// ErrLimited is what a *LimitedError unwraps to.
var ErrLimited = errors.New("rate limit exceeded")

// Class is one class's budget: Rate requests per second on average, and up
// to Burst at once. A Rate of zero or less means the class is not limited.
type Class struct {
	Rate  float64
	Burst int
}

// Decision is the outcome of one Allow.
type Decision struct {
	// Allowed says whether the request may go on.
	Allowed bool
	// Limit is the class's burst: the most requests allowed at once (0
	// for a class that is not limited).
	Limit int
	// Remaining is how many more requests would be allowed right now.
	Remaining int
	// Reset is the time until the budget is full again.
	Reset time.Duration
	// RetryAfter is, for a request not allowed, the time until one would
	// be; zero otherwise.
	RetryAfter time.Duration
}

// Err returns nil for an allowed request, and a *LimitedError for class
// otherwise.
func (d Decision) Err(class string) error {
	if d.Allowed {
		return nil
	}
	return &LimitedError{Class: class, Decision: d}
}

// LimitedError is the error of a request a rate limit refused. The server
// maps it (through ErrLimited) to ResourceExhausted with the reason
// RATE_LIMIT_EXCEEDED, and writes the Decision's headers.
type LimitedError struct {
	Class    string
	Decision Decision
}

// Error implements error.
func (e *LimitedError) Error() string {
	return fmt.Sprintf("rate limit exceeded (%s); retry in %v", e.Class, e.Decision.RetryAfter.Round(time.Millisecond))
}

// Unwrap returns ErrLimited.
func (e *LimitedError) Unwrap() error { return ErrLimited }

// Options configure a Limiter. The zero value of every field means its
// default.
type Options struct {
	// Valkey is the shared server; nil keeps every budget in this process.
	Valkey *valkey.Client
	// MaxLocalKeys bounds the in-process budgets; the least recently used
	// are forgotten first (a forgotten key starts again with a full
	// budget). Default 100,000.
	MaxLocalKeys int
	// Registerer receives berth_rate_limited_total; nil registers nothing.
	Registerer prometheus.Registerer
	// Logger receives Valkey failures; nil discards them.
	Logger *slog.Logger
	// Now is the clock of the in-process budgets. Default time.Now.
	Now func() time.Time
}

// Limiter decides by class and key. It is safe for concurrent use.
type Limiter struct {
	classes map[string]Class
	vk      *valkey.Client
	local   *local
	log     *slog.Logger
	limited *prometheus.CounterVec
}

// New returns a Limiter for classes, keyed by class name.
func New(classes map[string]Class, opts Options) *Limiter {
	if opts.MaxLocalKeys <= 0 {
		opts.MaxLocalKeys = 100_000
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	l := &Limiter{
		classes: make(map[string]Class, len(classes)),
		vk:      opts.Valkey,
		local:   newLocal(opts.MaxLocalKeys, opts.Now),
		log:     opts.Logger,
		limited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_rate_limited_total",
			Help: "Requests refused by a rate limit, by class.",
		}, []string{"class"}),
	}
	if opts.Registerer != nil {
		l.limited = telemetry.Register(opts.Registerer, l.limited)
	}
	for name, c := range classes {
		c.Burst = max(c.Burst, 1)
		l.classes[name] = c
		l.limited.WithLabelValues(name) // every class shows, at 0
	}
	return l
}

// Allow counts one request of key in class and says whether it may go on.
// Its only error is ErrUnknownClass: Valkey's failures fall back to the
// local budget.
func (l *Limiter) Allow(ctx context.Context, class, key string) (Decision, error) {
	return l.decide(ctx, class, key, true)
}

// Peek says whether one request of key in class would be allowed now,
// without counting one. It suits budgets of failures: Peek before trying
// to authenticate, Allow when it failed.
func (l *Limiter) Peek(ctx context.Context, class, key string) (Decision, error) {
	return l.decide(ctx, class, key, false)
}

// decide is Allow (take true) or Peek.
func (l *Limiter) decide(ctx context.Context, class, key string, take bool) (Decision, error) {
	c, ok := l.classes[class]
	if !ok {
		return Decision{}, fmt.Errorf("%w %q", ErrUnknownClass, class)
	}
	if c.Rate <= 0 {
		return Decision{Allowed: true}, nil
	}
	var d Decision
	if l.vk.Up() {
		var err error
		if d, err = l.gcra(ctx, class, key, c, take); err != nil {
			l.vk.ReportFailure(ctx, err)
			l.log.Warn("ratelimit: Valkey failed; using the local budget", "class", class, "err", err)
			d = l.local.decide(class, key, c, take)
		}
	} else {
		d = l.local.decide(class, key, c, take)
	}
	if take && !d.Allowed {
		l.limited.WithLabelValues(class).Inc()
	}
	return d, nil
}
