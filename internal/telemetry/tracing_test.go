package telemetry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/berthhq/berth/internal/telemetry"
)

func TestTracingEnabledOnlyWithAnEndpoint(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		env  map[string]string
		want bool
	}{
		{map[string]string{}, false},
		{map[string]string{"OTEL_TRACES_SAMPLER": "always_on"}, false},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, true},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, true},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_SDK_DISABLED": "true"}, false},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_TRACES_EXPORTER": "none"}, false},
	} {
		if got := telemetry.TracingEnabled(func(k string) string { return c.env[k] }); got != c.want {
			t.Errorf("%v: enabled %v, want %v", c.env, got, c.want)
		}
	}
}

// TestTracingOffIsNoop: without an endpoint NewTracing builds no SDK: its
// spans record nothing and its HTTP wrapper is the handler itself.
func TestTracingOffIsNoop(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	res, err := telemetry.NewResource(t.Context(), "v0.0.0-test")
	if err != nil {
		t.Fatal(err)
	}
	tr, err := telemetry.NewTracing(t.Context(), res)
	if err != nil {
		t.Fatal(err)
	}
	if tr.Enabled() {
		t.Fatal("tracing on without an endpoint")
	}
	_, span := tr.Tracer("x").Start(t.Context(), "s")
	if span.IsRecording() {
		t.Error("a span of the off provider records")
	}
	span.End()
	if err := tr.Shutdown(t.Context()); err != nil {
		t.Error(err)
	}
}

func TestResourceNamesBerthUnlessTheEnvironmentDoes(t *testing.T) {
	t.Setenv("OTEL_SERVICE_NAME", "")
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "")
	res, err := telemetry.NewResource(t.Context(), "v1.2.3")
	if err != nil {
		t.Fatal(err)
	}
	got := map[attribute.Key]string{}
	for _, kv := range res.Attributes() {
		got[kv.Key] = kv.Value.String()
	}
	if got["service.name"] != "berth" || got["service.version"] != "v1.2.3" || len(got["service.instance.id"]) != 36 {
		t.Errorf("resource %v", got)
	}

	t.Setenv("OTEL_SERVICE_NAME", "berth-eu")
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=prod")
	res, err = telemetry.NewResource(t.Context(), "v1.2.3")
	if err != nil {
		t.Fatal(err)
	}
	got = map[attribute.Key]string{}
	for _, kv := range res.Attributes() {
		got[kv.Key] = kv.Value.String()
	}
	if got["service.name"] != "berth-eu" || got["deployment.environment.name"] != "prod" || got["service.version"] != "v1.2.3" {
		t.Errorf("resource with OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES: %v", got)
	}
}

// TestLogLinesCarryTheSpan: a record logged with a context that has a span
// gets its trace_id and span_id; one without gets neither.
func TestLogLinesCarryTheSpan(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	logger, err := telemetry.NewLogger(&buf, "json", slog.LevelInfo)
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sdktrace.NewSimpleSpanProcessor(tracetest.NewInMemoryExporter())))
	defer tp.Shutdown(context.Background())
	ctx, span := tp.Tracer("t").Start(t.Context(), "op")
	logger.With("k", "v").WithGroup("g").InfoContext(ctx, "inside", "a", 1)
	span.End()
	logger.InfoContext(t.Context(), "outside")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("log: %s", buf.String())
	}
	var in map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &in); err != nil {
		t.Fatal(err)
	}
	sc := span.SpanContext()
	// The ids are added to the record, so they land in the open group.
	g, _ := in["g"].(map[string]any)
	if g["trace_id"] != sc.TraceID().String() || g["span_id"] != sc.SpanID().String() {
		t.Errorf("inside a span: %s, want trace_id %s span_id %s", lines[0], sc.TraceID(), sc.SpanID())
	}
	if strings.Contains(lines[1], "trace_id") {
		t.Errorf("outside a span: %s", lines[1])
	}
}

func TestEnvOfCarriesTraceparent(t *testing.T) {
	t.Parallel()
	if env := telemetry.EnvOf(t.Context()); env != nil {
		t.Errorf("no span, env %v", env)
	}
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ts, _ := trace.ParseTraceState("vendor=abc")
	ctx := trace.ContextWithSpanContext(t.Context(), trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled, TraceState: ts}))
	env := telemetry.EnvOf(ctx)
	want := []string{"TRACEPARENT=00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "TRACESTATE=vendor=abc"}
	if strings.Join(env, " ") != strings.Join(want, " ") {
		t.Errorf("env %v, want %v", env, want)
	}
}
