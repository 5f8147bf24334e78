package docker_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/berthhq/berth/internal/sandbox"
	"github.com/berthhq/berth/internal/sandbox/sandboxtest"
)

// BenchmarkWorkspaceStart measures a workspace container from nothing to
// running: Create then Start (the engine answers Start once the container
// runs). Removal is not timed.
func BenchmarkWorkspaceStart(b *testing.B) {
	rt := newRuntime(b)
	base := baseSpec(b)
	samples := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		spec := sandboxtest.NewSpec(b, base)
		b.StartTimer()
		start := time.Now()
		id, err := rt.Create(b.Context(), spec)
		if err != nil {
			b.Fatal(err)
		}
		if err := rt.Start(b.Context(), id); err != nil {
			b.Fatal(err)
		}
		samples = append(samples, time.Since(start))
		b.StopTimer()
		if info, err := rt.Inspect(b.Context(), id); err != nil || info.State != sandbox.StateRunning {
			b.Fatalf("after Start: %+v, %v", info, err)
		}
		if err := rt.Remove(context.Background(), id); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	report(b, samples)
}

// BenchmarkExecRoundTrip measures running `true` in a running container,
// from the request to the exit code.
func BenchmarkExecRoundTrip(b *testing.B) {
	rt := newRuntime(b)
	id, _ := sandboxtest.StartContainer(b, rt, baseSpec(b))
	samples := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		code, err := rt.Exec(b.Context(), id, sandbox.ExecSpec{Argv: []string{"true"}})
		if err != nil || code != 0 {
			b.Fatalf("Exec true = %d, %v", code, err)
		}
		samples = append(samples, time.Since(start))
	}
	report(b, samples)
}

// report adds the median and 95th percentile, in milliseconds.
func report(b *testing.B, samples []time.Duration) {
	if len(samples) == 0 {
		return
	}
	slices.Sort(samples)
	at := func(q float64) float64 {
		return float64(samples[int(q*float64(len(samples)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(at(0.50), "p50-ms")
	b.ReportMetric(at(0.95), "p95-ms")
}
