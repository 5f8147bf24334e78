package store

import (
	"context"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// UseTracing makes every query of s made inside a span (a request's, a
// task's) a span of tp's under it: the statement's operation as its name,
// the engine and the statement text — never its arguments — as
// attributes. Queries outside any span (the runner's claim loop, lease
// heartbeats, sweeps) start no trace of their own. Call it once, before s
// is shared; without it the store makes no spans and pays nothing.
func (s *Store) UseTracing(tp trace.TracerProvider) {
	s.tracer = tp.Tracer("github.com/berthhq/berth/internal/store")
}

// noEnd ends no span: what traced returns when s does not trace.
func noEnd(error) {}

// traced starts the span of query (already rebound) when s traces; end
// records err and ends it.
func (s *Store) traced(ctx context.Context, query string) (context.Context, func(error)) {
	if s.tracer == nil || !trace.SpanContextFromContext(ctx).IsValid() {
		return ctx, noEnd
	}
	op := operation(query)
	system := s.d.name()
	if system == "postgres" {
		system = "postgresql" // the semantic conventions' name
	}
	ctx, span := s.tracer.Start(ctx, op, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(
		attribute.String("db.system.name", system),
		attribute.String("db.operation.name", op),
		attribute.String("db.query.text", query),
	))
	return ctx, func(err error) {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, "query failed")
		}
		span.End()
	}
}

// operation is the first word of query in upper case (SELECT, INSERT, WITH,
// BEGIN …), the span's name.
func operation(query string) string {
	query = strings.TrimSpace(query)
	if i := strings.IndexAny(query, " \t\n("); i > 0 {
		query = query[:i]
	}
	return strings.ToUpper(query)
}
