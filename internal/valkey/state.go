package valkey

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/berthhq/berth/internal/telemetry"
)

// Up reports whether Valkey answers and every recovery hook has run since
// it last failed. A nil Client is never Up.
func (c *Client) Up() bool { return c != nil && c.up.Load() }

// Status is the client's state as /ready shows it: StatusOK,
// StatusDegraded, or, for a nil Client, StatusNotConfigured.
func (c *Client) Status() string {
	switch {
	case c == nil:
		return StatusNotConfigured
	case c.Up():
		return StatusOK
	}
	return StatusDegraded
}

// WaitUp waits until the client is Up or ctx ends (then it returns ctx's
// error). The health loop checks about every Options.HealthInterval.
func (c *Client) WaitUp(ctx context.Context) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for !c.Up() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// OnLoss registers fn, called each time the client goes from Up to
// Degraded, after the state changed. fn runs on the goroutine that saw the
// failure: it must be quick and must not block (the bus's LagAll is).
func (c *Client) OnLoss(fn func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.loss = append(c.loss, fn)
}

// OnRecovery registers fn, run each time Valkey answers again after a
// failure, and at the first connection, before the client is Up again: a
// cache flushes what may have gone stale during the outage, so no user
// reads it. An error keeps the client Degraded, and every hook runs again
// at the next attempt, so fn must be safe to repeat. When the client is Up
// already, fn runs now, on the caller's goroutine; if it fails, the client
// goes Degraded. ctx bounds one run.
func (c *Client) OnRecovery(fn func(ctx context.Context) error) {
	c.mu.Lock()
	c.recovery = append(c.recovery, fn)
	up := c.up.Load()
	c.mu.Unlock()
	if !up {
		return // recover runs it before the client is Up
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.HealthTimeout)
	defer cancel()
	if err := fn(ctx); err != nil {
		c.ReportFailure(context.Background(), err)
	}
}

// ReportFailure tells the client that a command failed: it goes Degraded
// at once, without waiting for the health loop, which brings it back. ctx
// is the context of the caller that wanted the command, not one with the
// command's own timeout: a cancellation or deadline error while ctx has
// ended is the caller's, not Valkey's, and is ignored, as is a nil error.
func (c *Client) ReportFailure(ctx context.Context, err error) {
	if err == nil || ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		return
	}
	c.fails.Add(1)
	c.lose(err)
}

// CheckNow asks the health loop to check the server now rather than at its
// next tick, without waiting for it: a user that saw a command succeed
// while the client is Degraded calls it, so that the client recovers
// sooner.
func (c *Client) CheckNow() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// run is the health loop: probe every HealthInterval, or when kicked,
// until Close.
func (c *Client) run() {
	defer close(c.done)
	t := time.NewTicker(c.opts.HealthInterval)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		case <-c.kick:
		}
		ctx, cancel := context.WithTimeout(context.Background(), c.opts.HealthTimeout)
		c.probe(ctx)
		cancel()
	}
}

// probe PINGs the server and changes the state by the answer.
func (c *Client) probe(ctx context.Context) {
	fails := c.fails.Load()
	if err := c.ping(ctx); err != nil {
		c.fails.Add(1)
		c.lose(err)
		return
	}
	if !c.up.Load() {
		c.recover(ctx, fails)
	}
}

// lose makes the client Degraded, and runs the loss hooks if it was Up.
func (c *Client) lose(err error) {
	c.mu.Lock()
	if !c.up.CompareAndSwap(true, false) {
		c.mu.Unlock()
		return
	}
	hooks := c.loss
	c.upGauge.Set(0)
	c.mu.Unlock()
	c.outages.Inc()
	c.log.Warn("valkey: lost; using local fallbacks", "valkey", c.target, "err", err)
	for _, fn := range hooks {
		fn()
	}
}

// recover runs every recovery hook, including those registered meanwhile,
// then makes the client Up unless a hook or another user saw a failure
// since fails was read.
func (c *Client) recover(ctx context.Context, fails uint64) {
	done := 0
	for {
		c.mu.Lock()
		hooks := c.recovery[done:len(c.recovery):len(c.recovery)]
		if len(hooks) == 0 {
			up := c.fails.Load() == fails
			if up {
				c.up.Store(true)
				c.upGauge.Set(1)
			}
			c.mu.Unlock()
			if up {
				c.log.Info("valkey: up", "valkey", c.target)
			}
			return
		}
		c.mu.Unlock()
		for _, fn := range hooks {
			if err := fn(ctx); err != nil {
				c.fails.Add(1)
				c.log.Warn("valkey: recovery failed; will retry", "valkey", c.target, "err", err)
				return
			}
		}
		done += len(hooks)
	}
}

// registerMetrics creates the client's metrics on reg (when not nil).
func (c *Client) registerMetrics(reg prometheus.Registerer) {
	c.upGauge = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "berth_valkey_up",
		Help: "1 when Valkey answers and berth uses it, 0 when berth serves from its local fallbacks.",
	})
	c.outages = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "berth_valkey_outages_total",
		Help: "Times berth lost Valkey and switched to its local fallbacks.",
	})
	if reg == nil {
		return
	}
	c.upGauge = telemetry.Register(reg, c.upGauge)
	c.outages = telemetry.Register(reg, c.outages)
}
