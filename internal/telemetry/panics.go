package telemetry

import (
	"fmt"
	"log/slog"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// Panics counts the panics berth recovered in its own goroutines, by where
// they happened. A panic in a goroutine that net/http did not start (a
// task's run, a stream's send loop) would otherwise end the whole process,
// and every other user's tasks and streams with it; recovered, it ends only
// the one task or stream, and the count says it happened.
//
// A nil *Panics recovers and logs but counts nothing.
type Panics struct {
	count *prometheus.CounterVec
}

// NewPanics returns a Panics counting into berth_panics_total{where} on
// reg. Every Panics built on one registry shares the counter. The series
// of each of wheres starts at 0, so that an alert on its increase sees
// the first panic too.
func NewPanics(reg prometheus.Registerer, wheres ...string) *Panics {
	p := &Panics{count: Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "berth_panics_total",
		Help: "Panics recovered in berth's goroutines, by where they happened; each ended one task or stream, not the server.",
	}, []string{"where"}))}
	for _, w := range wheres {
		p.count.WithLabelValues(w)
	}
	return p
}

// Recover stops a panic in the goroutine at whose top it is deferred: it
// logs the panic and its stack at ERROR with attrs (such as the task id),
// counts it under where, then calls then (if not nil) with the panic's
// value so the caller can end what the goroutine was doing. Without a
// panic it does nothing. It must be deferred directly (defer p.Recover(…)):
// recover only works in the deferred call itself.
func (p *Panics) Recover(logger *slog.Logger, where string, then func(v any), attrs ...any) {
	v := recover()
	if v == nil {
		return
	}
	if p != nil {
		p.count.WithLabelValues(where).Inc()
	}
	if logger != nil {
		logger.Error("recovered a panic; only this "+where+" ended",
			append([]any{"where", where, "panic", fmt.Sprint(v), "stack", string(debug.Stack())}, attrs...)...)
	}
	if then != nil {
		then(v)
	}
}
