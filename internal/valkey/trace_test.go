package valkey_test

import (
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/berthhq/berth/internal/testsvc"
	"github.com/berthhq/berth/internal/valkey"
)

// TestRoundTripsAreSpans: with Options.Tracing, a round trip made inside a
// span is a client span under it, named after the command, without its
// arguments; one made outside any span starts no trace; the client's own
// health PINGs make none.
func TestRoundTripsAreSpans(t *testing.T) {
	t.Parallel()
	r := testsvc.StartRedis(t)
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	t.Cleanup(func() { _ = tp.Shutdown(t.Context()) })
	c := open(t, r.URL(), valkey.Options{Tracing: tp})
	vk := c.Valkey()

	if err := vk.Do(t.Context(), vk.B().Set().Key("k-untraced").Value("secret-value").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	ctx, parent := tp.Tracer("test").Start(t.Context(), "request")
	if err := vk.Do(ctx, vk.B().Set().Key("k").Value("secret-value").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if _, err := vk.DoCache(ctx, vk.B().Get().Key("k").Cache(), time.Minute).ToString(); err != nil {
		t.Fatal(err)
	}
	_ = vk.DoMulti(ctx, vk.B().Get().Key("k").Build(), vk.B().Get().Key("missing").Build())
	parent.End()
	time.Sleep(150 * time.Millisecond) // a few health PINGs, which must not show

	got := map[string]int{}
	for _, s := range spans.GetSpans() {
		if s.Name == "request" {
			continue
		}
		got[s.Name]++
		if s.Parent.SpanID() != parent.SpanContext().SpanID() {
			t.Errorf("span %s is not a child of the request's span", s.Name)
		}
		for _, a := range s.Attributes {
			if a.Value.String() == "secret-value" || a.Value.String() == "k" {
				t.Errorf("span %s carries a command argument: %v", s.Name, a)
			}
		}
	}
	if got["SET"] != 1 || got["GET"] != 2 || len(got) != 2 {
		t.Errorf("spans %v, want SET once (the traced one) and GET twice (DoCache, DoMulti), nothing else", got)
	}
}
