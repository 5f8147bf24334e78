// Package telemetry builds berth's logger and metrics plumbing: a slog
// logger that redacts secrets, a Prometheus registry with the Go and process
// collectors, and an OpenTelemetry meter provider that exports into that
// registry (otelconnect records RPC metrics through it), and tracing: an
// OpenTelemetry tracer provider exporting over OTLP/HTTP when the standard
// OTEL_* environment asks for it, a no-op one otherwise.
//
// Nothing here is global: callers pass what it builds to whoever needs it.
package telemetry

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
)

// NewLogger returns a logger writing format ("json" or "text") at level to
// w. A record logged with a context that carries a span gets trace_id and
// span_id. Attributes whose key names a secret (a password, token, secret, key,
// authorization header or cookie) are replaced with "[REDACTED]" wherever
// they appear; keys that merely mention one ("access-token-ttl") are not.
func NewLogger(w io.Writer, format string, level slog.Level) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: redact}
	switch format {
	case "json":
		return slog.New(traceHandler{newJSONHandler(w, opts)}), nil
	case "text":
		return slog.New(traceHandler{slog.NewTextHandler(w, opts)}), nil
	}
	return nil, fmt.Errorf("telemetry: log format %q: want json or text", format)
}

// secretWords are the last words of attribute keys that hold secrets.
var secretWords = []string{"password", "token", "secret", "authorization", "key", "apikey", "cookie", "ticket"}

func redact(groups []string, a slog.Attr) slog.Attr {
	// The level goes on as its text: handed over as a slog.Level (a value
	// of kind Any), the JSON handler would encode it through
	// encoding/json's reflection, a quarter of an access log line's cost.
	// Level's own JSON and text encodings are this same text.
	if len(groups) == 0 && a.Key == slog.LevelKey {
		if l, ok := a.Value.Any().(slog.Level); ok {
			return slog.String(slog.LevelKey, l.String())
		}
	}
	if secretKey(a.Key) {
		return slog.String(a.Key, redacted)
	}
	return a
}

// redacted is what a secret's value is replaced with.
const redacted = "[REDACTED]"

// secretKey reports whether an attribute key names a secret: whether its
// last word, lower-cased, after any of "_-. ", is one of secretWords. It is
// asked of every attribute of every log line, so a plain ASCII key is read
// in place, without lower-casing a copy.
func secretKey(key string) bool {
	last := 0
	for i := 0; i < len(key); i++ {
		switch c := key[i]; {
		case c >= utf8.RuneSelf:
			return secretKeyUnicode(key)
		case c == '_' || c == '-' || c == '.' || c == ' ':
			last = i + 1
		}
	}
	word := key[last:]
	for _, w := range secretWords {
		if len(w) == len(word) && asciiEqualFold(word, w) {
			return true
		}
	}
	return false
}

// asciiEqualFold reports whether the ASCII string s lower-cased is the
// lower-case word w.
func asciiEqualFold(s, w string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != w[i] {
			return false
		}
	}
	return true
}

// secretKeyUnicode is secretKey for a key beyond ASCII, whose lower case
// may differ from its folding (strings.EqualFold would take "ſ" for "s").
func secretKeyUnicode(key string) bool {
	key = strings.ToLower(key)
	if i := strings.LastIndexAny(key, "_-. "); i >= 0 {
		key = key[i+1:]
	}
	return slices.Contains(secretWords, key)
}

// NewRegistry returns a Prometheus registry with the Go runtime and process
// collectors registered.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

// Register registers col on reg, or returns the collector registered there
// already under its name: several caches, limiters or clients built on one
// registry share their metric vectors.
func Register[C prometheus.Collector](reg prometheus.Registerer, col C) C {
	if err := reg.Register(col); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(err)
	}
	return col
}

// NewMeterProvider returns an OpenTelemetry meter provider whose instruments
// are exported through reg, describing the process as res (target_info on
// /metrics carries its attributes; see NewResource).
func NewMeterProvider(reg prometheus.Registerer, res *resource.Resource) (*sdkmetric.MeterProvider, error) {
	exporter, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo())
	if err != nil {
		return nil, fmt.Errorf("telemetry: prometheus exporter: %w", err)
	}
	return sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter), sdkmetric.WithResource(res)), nil
}
