package task

import (
	"context"
	"path/filepath"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/berthhq/berth/internal/sandbox"
	"github.com/berthhq/berth/internal/store"
	"github.com/berthhq/berth/internal/telemetry"
)

// tracing makes the spans of a task's run: one for the run, a child of the
// span of the request that created the task when that request was served
// here, and one per phase — task.claim, task.prepare, task.exec (each
// command, whose environment gets TRACEPARENT), task.build, task.finish.
// The zero tracing makes none and costs nothing.
type tracing struct {
	tracer trace.Tracer // nil: off

	mu sync.Mutex
	// origins are the spans that created queued tasks, by task id, until
	// the task starts here. A task another instance runs (or one cancelled
	// while queued) leaves its entry behind: entries older than
	// originTTL go when the map is next written past originPrune.
	origins map[string]origin
}

type origin struct {
	span trace.SpanContext
	at   time.Time
}

const (
	originPrune = 1024
	originTTL   = time.Hour
)

// useTracing makes the runner's tasks traced by tp (see tracing);
// NewRunner calls it when RunnerConfig.Tracer is set.
func (r *Runner) useTracing(tp trace.TracerProvider) {
	r.trace.tracer = tp.Tracer("github.com/berthhq/berth/internal/task")
	r.trace.origins = make(map[string]origin)
	r.rt = tracedRuntime{Runtime: r.rt, tracer: r.trace.tracer}
}

// remember notes the span of ctx (the request creating task id), which the
// task's run continues when it starts here.
func (tr *tracing) remember(ctx context.Context, id string) {
	if tr.tracer == nil {
		return
	}
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return
	}
	now := time.Now()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if len(tr.origins) >= originPrune {
		for k, o := range tr.origins {
			if now.Sub(o.at) > originTTL {
				delete(tr.origins, k)
			}
		}
		if len(tr.origins) >= 4*originPrune {
			return // a flood of tasks run elsewhere: they start new traces
		}
	}
	tr.origins[id] = origin{span: sc, at: now}
}

// forget drops what remember noted for task id (its creation failed).
func (tr *tracing) forget(id string) {
	if tr.tracer == nil {
		return
	}
	tr.mu.Lock()
	delete(tr.origins, id)
	tr.mu.Unlock()
}

// startRun starts the span of task t's run, which began with its claim at
// claimed, and the claim's span inside it; end ends the run's span.
func (tr *tracing) startRun(ctx context.Context, t *store.TaskRecord, claimed, claimedEnd time.Time) (context.Context, func()) {
	if tr.tracer == nil {
		return ctx, func() {}
	}
	tr.mu.Lock()
	o, ok := tr.origins[t.ID]
	delete(tr.origins, t.ID)
	tr.mu.Unlock()
	opts := []trace.SpanStartOption{
		trace.WithTimestamp(claimed),
		trace.WithAttributes(attribute.String("berth.task.id", t.ID), attribute.String("berth.task.type", string(t.Type)),
			attribute.String("berth.workspace.id", t.WorkspaceID)),
	}
	if ok {
		ctx = trace.ContextWithRemoteSpanContext(ctx, o.span)
	} else {
		opts = append(opts, trace.WithNewRoot())
	}
	ctx, span := tr.tracer.Start(ctx, "task "+string(t.Type), opts...)
	_, claim := tr.tracer.Start(ctx, "task.claim", trace.WithTimestamp(claimed))
	claim.End(trace.WithTimestamp(claimedEnd))
	return ctx, func() { span.End() }
}

// phase starts the span of one phase of a run; end records err, if any.
func (tr *tracing) phase(ctx context.Context, name string) (context.Context, func(err error)) {
	if tr.tracer == nil {
		return ctx, func(error) {}
	}
	ctx, span := tr.tracer.Start(ctx, name)
	return ctx, func(err error) {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
}

// ended records how a run ended on its span.
func ended(ctx context.Context, status store.TaskStatus) {
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.SetAttributes(attribute.String("berth.task.status", string(status)))
		if status != store.TaskSucceeded {
			span.SetStatus(codes.Error, string(status))
		}
	}
}

// tracedRuntime makes a span of each exec and build, and hands the exec's
// span to the command as TRACEPARENT (and TRACESTATE) in its environment,
// after every other variable, so it wins.
type tracedRuntime struct {
	Runtime
	tracer trace.Tracer
}

func (t tracedRuntime) Exec(ctx context.Context, containerID string, spec sandbox.ExecSpec) (int, error) {
	name := "exec"
	if len(spec.Argv) > 0 {
		name = filepath.Base(spec.Argv[0])
	}
	ctx, span := t.tracer.Start(ctx, "task.exec", trace.WithAttributes(
		attribute.String("process.executable.name", name),
		attribute.String("berth.container.id", containerID),
	))
	defer span.End()
	if env := telemetry.EnvOf(ctx); env != nil {
		spec.Env = append(append([]string(nil), spec.Env...), env...)
	}
	code, err := t.Runtime.Exec(ctx, containerID, spec)
	span.SetAttributes(attribute.Int("process.exit.code", code))
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	} else if code != 0 {
		span.SetStatus(codes.Error, "exit status")
	}
	return code, err
}

func (t tracedRuntime) Build(ctx context.Context, spec sandbox.BuildSpec) (string, error) {
	ctx, span := t.tracer.Start(ctx, "task.build", trace.WithAttributes(attribute.String("berth.image.tag", spec.Tag)))
	defer span.End()
	id, err := t.Runtime.Build(ctx, spec)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	return id, err
}
