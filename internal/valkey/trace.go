package valkey

import (
	"context"
	"time"

	valkeygo "github.com/valkey-io/valkey-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// tracedClient makes each round trip of a valkey-go client — Do, DoMulti,
// DoCache, DoMultiCache, which Lua scripts use too — a client span, a
// child of the caller's: the command's name as the span's name, never its
// arguments (keys hold ids, values hold records). A round trip outside any
// span (the event bridge's batches, background refreshes) starts no trace
// of its own. Subscriptions (Receive), streams and dedicated connections
// pass through untraced.
// (valkey-go's own valkeyotel module is not served by the module proxy at
// v1.0.79.)
type tracedClient struct {
	valkeygo.Client
	tracer trace.Tracer
}

func newTracedClient(c valkeygo.Client, tp trace.TracerProvider) valkeygo.Client {
	return tracedClient{Client: c, tracer: tp.Tracer("github.com/berthhq/berth/internal/valkey")}
}

var (
	systemAttr = attribute.String("db.system.name", "valkey")
	clientKind = trace.WithSpanKind(trace.SpanKindClient)
)

func (c tracedClient) start(ctx context.Context, name string, n int) (context.Context, trace.Span) {
	attrs := []attribute.KeyValue{systemAttr, attribute.String("db.operation.name", name)}
	if n > 1 {
		attrs = append(attrs, attribute.Int("db.operation.batch.size", n))
	}
	return c.tracer.Start(ctx, name, clientKind, trace.WithAttributes(attrs...))
}

// commandName is the first word of a command ("GET", "EVALSHA").
func commandName(words []string) string {
	if len(words) == 0 {
		return "valkey"
	}
	return words[0]
}

func end(span trace.Span, err error) {
	if err != nil && !valkeygo.IsValkeyNil(err) {
		span.RecordError(err)
		span.SetStatus(codes.Error, "valkey command failed")
	}
	span.End()
}

func firstError(rs []valkeygo.ValkeyResult) error {
	for _, r := range rs {
		if err := r.Error(); err != nil && !valkeygo.IsValkeyNil(err) {
			return err
		}
	}
	return nil
}

// traced reports whether a round trip under ctx is a span: only inside one.
func traced(ctx context.Context) bool { return trace.SpanContextFromContext(ctx).IsValid() }

func (c tracedClient) Do(ctx context.Context, cmd valkeygo.Completed) valkeygo.ValkeyResult {
	if !traced(ctx) {
		return c.Client.Do(ctx, cmd)
	}
	ctx, span := c.start(ctx, commandName(cmd.Commands()), 1)
	r := c.Client.Do(ctx, cmd)
	end(span, r.Error())
	return r
}

func (c tracedClient) DoMulti(ctx context.Context, multi ...valkeygo.Completed) []valkeygo.ValkeyResult {
	if !traced(ctx) {
		return c.Client.DoMulti(ctx, multi...)
	}
	name := "MULTI"
	if len(multi) > 0 {
		name = commandName(multi[0].Commands())
	}
	ctx, span := c.start(ctx, name, len(multi))
	rs := c.Client.DoMulti(ctx, multi...)
	end(span, firstError(rs))
	return rs
}

func (c tracedClient) DoCache(ctx context.Context, cmd valkeygo.Cacheable, ttl time.Duration) valkeygo.ValkeyResult {
	if !traced(ctx) {
		return c.Client.DoCache(ctx, cmd, ttl)
	}
	ctx, span := c.start(ctx, commandName(cmd.Commands()), 1)
	r := c.Client.DoCache(ctx, cmd, ttl)
	span.SetAttributes(attribute.Bool("db.valkey.client_cache_hit", r.IsCacheHit()))
	end(span, r.Error())
	return r
}

func (c tracedClient) DoMultiCache(ctx context.Context, multi ...valkeygo.CacheableTTL) []valkeygo.ValkeyResult {
	if !traced(ctx) {
		return c.Client.DoMultiCache(ctx, multi...)
	}
	name := "MULTI"
	if len(multi) > 0 {
		name = commandName(multi[0].Cmd.Commands())
	}
	ctx, span := c.start(ctx, name, len(multi))
	rs := c.Client.DoMultiCache(ctx, multi...)
	end(span, firstError(rs))
	return rs
}
