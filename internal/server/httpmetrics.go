package server

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// httpMetrics are the server's HTTP-level Prometheus metrics.
type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inFlight prometheus.Gauge

	// series holds each (method, route, status)'s counter and histogram
	// once looked up: WithLabelValues hashes its labels on every call,
	// and a server sees few distinct combinations (routes are patterns).
	series sync.Map // seriesKey → *httpSeries
}

// seriesKey names one combination of labels.
type seriesKey struct {
	method, route string
	status        int
}

// httpSeries are one combination's counter and histogram.
type httpSeries struct {
	requests prometheus.Counter
	duration prometheus.Observer
}

func newHTTPMetrics(reg prometheus.Registerer) *httpMetrics {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_http_requests_total",
			Help: "HTTP requests served, by method, route pattern and status code.",
		}, []string{"method", "route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "berth_http_request_duration_seconds",
			Help:    "Time to serve an HTTP request, by method and route pattern.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"method", "route"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "berth_http_requests_in_flight",
			Help: "HTTP requests being served now.",
		}),
	}
	reg.MustRegister(m.requests, m.duration, m.inFlight)
	return m
}

// maxSeries bounds the remembered combinations: the method is the
// client's, so past this many (a client inventing methods) they are looked
// up each time rather than kept.
const maxSeries = 1024

// observe counts one request served and records its duration.
func (m *httpMetrics) observe(method, route string, status int, elapsed time.Duration) {
	key := seriesKey{method: method, route: route, status: status}
	s, ok := m.series.Load(key)
	if !ok {
		fresh := &httpSeries{
			requests: m.requests.WithLabelValues(method, route, strconv.Itoa(status)),
			duration: m.duration.WithLabelValues(method, route),
		}
		s = fresh
		if m.count() < maxSeries {
			s, _ = m.series.LoadOrStore(key, fresh)
		}
	}
	series := s.(*httpSeries)
	series.requests.Inc()
	series.duration.Observe(elapsed.Seconds())
}

// count returns how many combinations are remembered.
func (m *httpMetrics) count() int {
	n := 0
	m.series.Range(func(any, any) bool { n++; return n < maxSeries })
	return n
}
