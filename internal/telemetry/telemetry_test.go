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
