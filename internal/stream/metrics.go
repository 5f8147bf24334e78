package stream

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/berthhq/berth/internal/telemetry"
)

// The transports, as the metrics label them.
const (
	TransportSSE       = "sse"
	TransportConnect   = "connect"
	TransportWebSocket = "websocket"
)

// Metrics counts what the live streams do, for every transport. A nil
// *Metrics counts nothing, so tests and tools may leave it out.
type Metrics struct {
	open *prometheus.GaugeVec
	sent *prometheus.CounterVec
	// sentBy holds sent's counter of each transport: Sent runs for every
	// event of every subscriber, too often to look the labels up each time.
	sentBy   map[string]prometheus.Counter
	lagged   prometheus.Counter
	dropped  *prometheus.CounterVec
	commands *prometheus.CounterVec
	panics   *telemetry.Panics
}

// NewMetrics registers the stream metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		open: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "berth_stream_connections",
			Help: "Live stream connections open now, by transport (sse, connect, websocket).",
		}, []string{"transport"}),
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_stream_events_sent_total",
			Help: "Events sent on live streams (log lines, status, progress, end, workspace events), by transport.",
		}, []string{"transport"}),
		lagged: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "berth_stream_lagged_total",
			Help: "Times a stream subscriber fell behind the bus, dropped its queue and caught up from the store.",
		}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_stream_dropped_clients_total",
			Help: "Stream clients the server disconnected, by transport and reason (slow: took no data in time; unresponsive: keep-alive not answered).",
		}, []string{"transport", "reason"}),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_websocket_commands_total",
			Help: "WebSocket commands, by action and result (ok, or the Connect error code).",
		}, []string{"action", "result"}),
	}
	// Every series with known labels exists from the start, at zero, so
	// a rate() over it has a beginning.
	m.sentBy = make(map[string]prometheus.Counter)
	for _, tr := range []string{TransportSSE, TransportConnect, TransportWebSocket} {
		m.open.WithLabelValues(tr)
		m.sentBy[tr] = m.sent.WithLabelValues(tr)
	}
	for _, d := range [][2]string{{TransportSSE, "slow"}, {TransportWebSocket, "slow"}, {TransportWebSocket, "unresponsive"}, {TransportWebSocket, "revoked"}} {
		m.dropped.WithLabelValues(d[0], d[1])
	}
	reg.MustRegister(m.open, m.sent, m.lagged, m.dropped, m.commands)
	m.panics = telemetry.NewPanics(reg, TransportSSE, TransportWebSocket)
	return m
}

// Panics counts the panics recovered in the streams' goroutines (on the
// registry's shared berth_panics_total); nil for a nil *Metrics, which
// still recovers. Defer its Recover directly at the top of a goroutine:
//
//	defer m.Panics().Recover(logger, stream.TransportSSE, endTheStream)
func (m *Metrics) Panics() *telemetry.Panics {
	if m == nil {
		return nil
	}
	return m.panics
}

// Opened counts a new connection of transport; the returned function
// counts it closed.
func (m *Metrics) Opened(transport string) (closed func()) {
	if m == nil {
		return func() {}
	}
	g := m.open.WithLabelValues(transport)
	g.Inc()
	return g.Dec
}

// Sent counts one event sent on transport.
func (m *Metrics) Sent(transport string) {
	if m == nil {
		return
	}
	if c, ok := m.sentBy[transport]; ok {
		c.Inc()
		return
	}
	m.sent.WithLabelValues(transport).Inc()
}

// Lagged counts a subscriber that fell behind.
func (m *Metrics) Lagged() {
	if m != nil {
		m.lagged.Inc()
	}
}

// Dropped counts a client the server disconnected, and why.
func (m *Metrics) Dropped(transport, reason string) {
	if m != nil {
		m.dropped.WithLabelValues(transport, reason).Inc()
	}
}

// KnownCommands makes the ok series of each WebSocket command action exist,
// at zero (the error results appear with their first error).
func (m *Metrics) KnownCommands(actions ...string) {
	if m != nil {
		for _, a := range actions {
			m.commands.WithLabelValues(a, "ok")
		}
	}
}

// Command counts a WebSocket command and its result.
func (m *Metrics) Command(action, result string) {
	if m != nil {
		m.commands.WithLabelValues(action, result).Inc()
	}
}
