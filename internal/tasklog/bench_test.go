package tasklog_test

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berthhq/berth/internal/bus"
	"github.com/berthhq/berth/internal/event"
	"github.com/berthhq/berth/internal/store"
	"github.com/berthhq/berth/internal/tasklog"
	"github.com/berthhq/berth/internal/testsvc"
)

// benchEngines are the stores the benchmarks run on: SQLite, and Postgres
// on the cluster the tests start (local, fsync off).
var benchEngines = []struct {
	name string
	open func(testing.TB) *store.Store
}{
	{"sqlite", openStore},
	{"postgres", openPostgres},
}

// openPostgres opens a store on a fresh database of the test cluster, with
// the pool a small server has.
func openPostgres(tb testing.TB) *store.Store {
	tb.Helper()
	s, err := store.OpenPostgres(tb.Context(), testsvc.Postgres(tb), 4)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s
}

// BenchmarkIngest measures log lines through the writer into a real store,
// SQLite and Postgres (the test cluster: local, fsync off), as fast as the
// writer takes them, and reports the rate in lines/s (the unit the bench
// harness reads).
func BenchmarkIngest(b *testing.B) {
	for _, engine := range benchEngines {
		b.Run(engine.name, func(b *testing.B) { ingest(b, engine.open(b)) })
	}
}

// ingest writes lines through one task's log writer as fast as it takes
// them and reports the rate, Close (the last write) included.
func ingest(b *testing.B, s *store.Store) {
	tr := newTask(b, s, true)
	w := tasklog.NewWriter(s, nil, tr.ID, 1, tasklog.Options{})
	out := w.Stdout()
	line := []byte("2026-03-01T12:00:00Z INFO compiling package github.com/berthhq/berth/internal/store\n")
	b.ReportAllocs()
	start := time.Now()
	for b.Loop() {
		if _, err := out.Write(line); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "lines/s")
}

// BenchmarkLatency measures how long a line takes from the agent's write
// (Stdout().Write) to its receipt by bus subscribers, the path every live
// log stream starts with, at a fixed line rate (open loop: the lines come
// on a schedule, whatever the writer does). subs=15 at 2,000 lines/s is
// 30,000 deliveries a second. It reports the median, the 99th percentile
// and the maximum in milliseconds; run it with -benchtime=3s or more for a
// steadier p99.
func BenchmarkLatency(b *testing.B) {
	for _, engine := range benchEngines {
		for _, c := range []struct{ rate, subs int }{{200, 1}, {2000, 1}, {2000, 15}} {
			b.Run(fmt.Sprintf("%s/rate=%d/subs=%d", engine.name, c.rate, c.subs), func(b *testing.B) {
				latency(b, engine.open(b), c.rate, c.subs)
			})
		}
	}
}

// latency writes b.N lines at rate lines/s through one task's writer,
// each carrying its write time, and reports what subs subscribers saw.
func latency(b *testing.B, s *store.Store, rate, subs int) {
	tr := newTask(b, s, true)
	events := bus.New()
	base := time.Now()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		seen []time.Duration
	)
	for range subs {
		sub := events.Subscribe("task:"+tr.ID, 1<<16)
		b.Cleanup(sub.Close)
		wg.Go(func() {
			got := receive(b, sub, b.N, base)
			mu.Lock()
			seen = append(seen, got...)
			mu.Unlock()
		})
	}
	w := tasklog.NewWriter(s, events, tr.ID, 1, tasklog.Options{})
	out := w.Stdout()
	interval := time.Second / time.Duration(rate)
	buf := make([]byte, 0, 128)
	b.ResetTimer()
	cpu := cpuTime(b)
	start := time.Now()
	for i := range b.N {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		buf = strconv.AppendInt(buf[:0], int64(time.Since(base)), 10)
		buf = append(buf, " compiling package github.com/berthhq/berth/internal/store\n"...)
		if _, err := out.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(cpuTime(b)-cpu)/float64(time.Microsecond)/float64(b.N), "cpu-µs/line")
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	reportPercentiles(b, seen)
}

// receive takes n lines from sub and returns how long each took since its
// write, read from the line's first word (nanoseconds since base).
func receive(b *testing.B, sub *bus.Subscription, n int, base time.Time) []time.Duration {
	got := make([]time.Duration, 0, n)
	for len(got) < n {
		v, err := sub.Recv(b.Context())
		if err != nil {
			b.Error("subscription ended early:", err)
			return got
		}
		now := time.Since(base)
		e, ok := v.(*event.Line)
		if !ok {
			b.Errorf("published a %T", v)
			return got
		}
		first, _, _ := strings.Cut(e.Message, " ")
		sent, err := strconv.ParseInt(first, 10, 64)
		if err != nil {
			b.Errorf("line %d: %v", e.Seq, err)
			return got
		}
		got = append(got, now-time.Duration(sent))
	}
	if sub.Lagged() {
		b.Error("a subscriber lagged")
	}
	return got
}

// reportPercentiles reports the median, 99th percentile and maximum of d
// in milliseconds.
func reportPercentiles(b *testing.B, d []time.Duration) {
	if len(d) == 0 {
		return
	}
	slices.Sort(d)
	at := func(q float64) float64 {
		return float64(d[min(len(d)-1, int(q*float64(len(d))))]) / float64(time.Millisecond)
	}
	b.ReportMetric(at(0.50), "p50-ms")
	b.ReportMetric(at(0.99), "p99-ms")
	b.ReportMetric(at(1), "max-ms")
	b.ReportMetric(0, "ns/op") // the schedule sets the time per line, not the writer
}

// cpuTime is the CPU time this process has used, user and system: the
// writer's cost per line, the store's too on SQLite (in process), not
// Postgres's (its own processes).
func cpuTime(b *testing.B) time.Duration {
	var u syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &u); err != nil {
		b.Fatal(err)
	}
	return time.Duration(u.Utime.Nano() + u.Stime.Nano())
}
