package store_test

import (
	"errors"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/berthhq/berth/internal/fault"
	"github.com/berthhq/berth/internal/store"
)

// TestQueriesAreSpans: on both engines, with UseTracing, each query a
// call makes inside a span is a client span under it, named after its
// operation, with the engine and the statement text — never an argument;
// a query outside any span makes none.
func TestQueriesAreSpans(t *testing.T) {
	t.Parallel()
	for _, e := range []struct {
		name, system string
		open         func(*testing.T) *store.Store
	}{{"sqlite", "sqlite", openSQLite}, {"postgres", "postgresql", openPostgres}} {
		t.Run(e.name, func(t *testing.T) {
			t.Parallel()
			s := e.open(t)
			spans := tracetest.NewInMemoryExporter()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
			t.Cleanup(func() { _ = tp.Shutdown(t.Context()) })
			s.UseTracing(tp)

			const email = "secret-argument@example.com"
			if _, err := s.FindUserByEmail(t.Context(), email); !errors.Is(err, fault.ErrNotFound) {
				t.Fatalf("FindUserByEmail: %v", err)
			}
			if n := len(spans.GetSpans()); n != 0 {
				t.Fatalf("queries outside any span made %d spans", n)
			}
			ctx, parent := tp.Tracer("test").Start(t.Context(), "request")
			if _, err := s.FindUserByEmail(ctx, email); !errors.Is(err, fault.ErrNotFound) {
				t.Fatalf("FindUserByEmail: %v", err)
			}
			parent.End()

			var queries int
			for _, sp := range spans.GetSpans() {
				if sp.Name == "request" {
					continue
				}
				queries++
				if sp.Parent.SpanID() != parent.SpanContext().SpanID() {
					t.Errorf("query span %s is not under the caller's span", sp.Name)
				}
				attrs := map[string]string{}
				for _, a := range sp.Attributes {
					attrs[string(a.Key)] = a.Value.String()
				}
				if sp.Name != "SELECT" || attrs["db.system.name"] != e.system || !strings.Contains(attrs["db.query.text"], "FROM users") {
					t.Errorf("span %s %v: want SELECT on %s FROM users", sp.Name, attrs, e.system)
				}
				for _, v := range attrs {
					if strings.Contains(v, email) {
						t.Errorf("span %s carries the query's argument: %v", sp.Name, attrs)
					}
				}
			}
			if queries == 0 {
				t.Error("no query span")
			}
		})
	}
}
