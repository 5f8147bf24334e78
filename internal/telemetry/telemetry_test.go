package telemetry_test

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/berthhq/berth/internal/telemetry"
)

func TestLoggerRedactsSecrets(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	logger, err := telemetry.NewLogger(&buf, "json", slog.LevelInfo)
	if err != nil {
		t.Fatal(err)
	}
	logger.Info("x",
		"password", "hunter2", "refresh_token", "rt-secret", "Authorization", "Bearer abc",
		slog.Group("req", "api-key", "berth_k"), "session_cookie", "c1",
		"access-token-ttl", "15m", "secure-cookies", true, "jwt-key-file", "/data/key.pem")
	out := buf.String()
	for _, secret := range []string{"hunter2", "rt-secret", "Bearer abc", "berth_k", "c1"} {
		if strings.Contains(out, secret) {
			t.Errorf("log leaks %q: %s", secret, out)
		}
	}
	for _, kept := range []string{`"access-token-ttl":"15m"`, `"secure-cookies":true`, `"jwt-key-file":"/data/key.pem"`} {
		if !strings.Contains(out, kept) {
			t.Errorf("log lost %s: %s", kept, out)
		}
	}
	if _, err := telemetry.NewLogger(&buf, "xml", slog.LevelInfo); err == nil {
		t.Error("unknown format accepted")
	}
}

func TestRegisterSharesACollector(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	opts := prometheus.CounterOpts{Name: "berth_test_total", Help: "A test counter."}
	first := telemetry.Register(reg, prometheus.NewCounterVec(opts, []string{"k"}))
	second := telemetry.Register(reg, prometheus.NewCounterVec(opts, []string{"k"}))
	if first != second {
		t.Fatal("a second registration under the same name got its own collector")
	}
	defer func() {
		if recover() == nil {
			t.Error("a different collector under a taken name did not panic")
		}
	}()
	telemetry.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{Name: "berth_test_total", Help: "clash"}))
}

// TestLoggerWritesLevelsAsSlogDoes checks that the level written by
// berth's logger (which hands it over as text) reads as slog's own
// handlers write it, in both formats and between named levels.
func TestLoggerWritesLevelsAsSlogDoes(t *testing.T) {
	t.Parallel()
	levelOf := func(out, format string) string {
		if format == "json" {
			_, rest, _ := strings.Cut(out, `"level":`)
			v, _, _ := strings.Cut(rest, ",")
			return v
		}
		_, rest, _ := strings.Cut(out, "level=")
		v, _, _ := strings.Cut(rest, " ")
		return v
	}
	for _, format := range []string{"json", "text"} {
		for _, level := range []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn + 2, slog.LevelError} {
			var got, want bytes.Buffer
			logger, err := telemetry.NewLogger(&got, format, slog.LevelDebug)
			if err != nil {
				t.Fatal(err)
			}
			opts := &slog.HandlerOptions{Level: slog.LevelDebug}
			plain := slog.New(slog.NewJSONHandler(&want, opts))
			if format == "text" {
				plain = slog.New(slog.NewTextHandler(&want, opts))
			}
			logger.Log(t.Context(), level, "x")
			plain.Log(t.Context(), level, "x")
			if g, w := levelOf(got.String(), format), levelOf(want.String(), format); g != w || g == "" {
				t.Errorf("%s %v: level written %s, slog writes %s", format, level, g, w)
			}
		}
	}
}
