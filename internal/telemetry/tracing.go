package telemetry

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// ServiceName is the service.name of berth's traces and metrics unless
// OTEL_SERVICE_NAME (or service.name in OTEL_RESOURCE_ATTRIBUTES) says
// otherwise.
const ServiceName = "berth"

// NewResource describes this process to OpenTelemetry: service.name
// (berth), service.version (version) and service.instance.id (a new
// UUID), then what OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES set,
// which wins. The meter provider and the tracer provider share it, so the
// Prometheus target_info and the traces name the same process.
func NewResource(ctx context.Context, version string) (*resource.Resource, error) {
	res, err := resource.New(ctx,
		resource.WithAttributes(
			attribute.String("service.name", ServiceName),
			attribute.String("service.version", version),
			attribute.String("service.instance.id", uuid.NewString()),
		),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(), // last: the operator's values win
	)
	if err != nil {
		return nil, fmt.Errorf("telemetry: resource: %w", err)
	}
	return res, nil
}

// Tracing is berth's tracer provider and W3C trace-context propagator.
// Off (the zero configuration) it is a no-op provider whose spans are never
// recorded, and every Enabled check lets the hot paths skip tracing work
// entirely.
type Tracing struct {
	// Provider makes the spans: the SDK's, exporting over OTLP/HTTP, or a
	// no-op one.
	Provider trace.TracerProvider
	// Propagator reads and writes traceparent/tracestate (and baggage).
	Propagator propagation.TextMapPropagator

	sdk *sdktrace.TracerProvider // nil when off
}

// TracingEnabled reports whether the environment asks for traces:
// OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set,
// and neither OTEL_SDK_DISABLED=true nor OTEL_TRACES_EXPORTER=none turns
// them off.
func TracingEnabled(getenv func(string) string) bool {
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return false
	}
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")), "none") {
		return false
	}
	return getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// NewTracing returns berth's tracing, configured only by the standard
// OpenTelemetry environment, which the SDK and the exporter read
// themselves: OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT, _HEADERS, _TIMEOUT,
// OTEL_TRACES_SAMPLER(_ARG), OTEL_BSP_*. Without an endpoint (see
// TracingEnabled) it is off: no exporter, no SDK, a no-op provider.
// Shutdown flushes and stops it.
func NewTracing(ctx context.Context, res *resource.Resource) (*Tracing, error) {
	if !TracingEnabled(os.Getenv) {
		return &Tracing{Provider: noop.NewTracerProvider(), Propagator: propagation.NewCompositeTextMapPropagator()}, nil
	}
	exporter, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("telemetry: OTLP trace exporter: %w", err)
	}
	sdk := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exporter),
		sdktrace.WithResource(res),
	)
	return &Tracing{
		Provider:   sdk,
		Propagator: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
		sdk:        sdk,
	}, nil
}

// Enabled reports whether spans are recorded and exported.
func (t *Tracing) Enabled() bool { return t != nil && t.sdk != nil }

// Tracer returns the named tracer of t's provider.
func (t *Tracing) Tracer(name string) trace.Tracer { return t.Provider.Tracer(name) }

// Shutdown exports the spans still buffered and stops the provider.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if !t.Enabled() {
		return nil
	}
	return t.sdk.Shutdown(ctx)
}

// EnvOf returns the TRACEPARENT (and TRACESTATE, when there is one)
// variables that carry ctx's span into a child process, or nil when ctx
// has no span to continue.
func EnvOf(ctx context.Context) []string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return nil
	}
	carrier := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, carrier)
	env := []string{"TRACEPARENT=" + carrier["traceparent"]}
	if ts := carrier["tracestate"]; ts != "" {
		env = append(env, "TRACESTATE="+ts)
	}
	return env
}

// Handler wraps next, the server's HTTP handler, in a server span per
// request that continues the caller's trace (W3C traceparent in) and names
// it in the response (traceparent out). Everything inside — the access log
// line, otelconnect's RPC span, store queries, tasks created — is part of
// that trace. Off, next is returned as it is.
func (t *Tracing) Handler(next http.Handler) http.Handler {
	if !t.Enabled() {
		return next
	}
	tracer := t.Tracer("github.com/berthhq/berth/internal/server")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := t.Propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		ctx, span := tracer.Start(ctx, r.Method, trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(
				attribute.String("http.request.method", r.Method),
				attribute.String("url.path", r.URL.Path),
			))
		defer span.End()
		t.Propagator.Inject(ctx, propagation.HeaderCarrier(w.Header()))
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// EndRequest names the request's span (see Tracing.Handler) after its
// method and the route (the path pattern) that served it and records the status code; the access
// log calls it once the request is done. Without a recording span it does
// nothing.
func EndRequest(ctx context.Context, method, route string, status int) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	span.SetName(method + " " + route)
	span.SetAttributes(attribute.String("http.route", route), attribute.Int("http.response.status_code", status))
	if status >= 500 {
		span.SetStatus(codes.Error, http.StatusText(status))
	}
}

// traceHandler adds trace_id and span_id to every record logged with a
// context that carries a span.
type traceHandler struct {
	slog.Handler
}

func (h traceHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

func (h traceHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return traceHandler{h.Handler.WithAttrs(attrs)}
}

func (h traceHandler) WithGroup(name string) slog.Handler {
	return traceHandler{h.Handler.WithGroup(name)}
}
