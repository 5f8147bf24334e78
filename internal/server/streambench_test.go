package server_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
)

// The stream benchmarks quoted in the README: memory per idle stream
// connection, and delivery latency from a log line's write to its receipt.
// Both run berth as a child process (`berth serve`, built from cmd/berth
// once per benchmark), so that the clients' goroutines, buffers and
// garbage collection stay out of the server's figures. On one host the
// clients still share the CPUs with the server, which the latency figures
// include.
//
//	go test -run '^$' -bench 'IdleStreamMemory|StreamLatency' -benchtime=1x ./internal/server/

// latencyPoint is one load of BenchmarkStreamLatency: a task writes lines
// lines at rate a second to subscribers clients over transport.
type latencyPoint struct {
	transport   string // "sse", "websocket" or "connect" (JSON over HTTP/1.1)
	rate        int
	subscribers int
	lines       int
	// drain is how long after the last line's due time the subscribers
	// may take to receive every line; what is not received by then
	// counts as not delivered.
	drain time.Duration
}

var latencyPoints = []latencyPoint{
	// The target: 10,000 lines a second to 1,000 subscribers, 10 million
	// deliveries a second, for one second; far beyond two cores, so it
	// shows how berth falls behind (the writer is slowed, the subscribers
	// lag) rather than a latency.
	{"sse", 10000, 1000, 10000, 20 * time.Second},
	// 200,000 deliveries a second: the target of issue #18 for fan-out
	// that encodes each line once.
	{"sse", 200, 1000, 600, 10 * time.Second},
	// 100,000 deliveries a second, three ways.
	{"sse", 10000, 10, 30000, 10 * time.Second},
	{"sse", 1000, 100, 3000, 10 * time.Second},
	{"sse", 100, 1000, 300, 10 * time.Second},
	// 30,000 and 10,000 deliveries a second.
	{"sse", 1000, 30, 3000, 10 * time.Second},
	{"sse", 100, 300, 300, 10 * time.Second},
	{"sse", 1000, 10, 3000, 10 * time.Second},
	{"sse", 100, 100, 300, 10 * time.Second},
	{"websocket", 1000, 100, 3000, 10 * time.Second},
	{"websocket", 100, 1000, 300, 10 * time.Second},
	{"websocket", 100, 100, 300, 10 * time.Second},
	{"connect", 1000, 100, 3000, 10 * time.Second},
	{"connect", 100, 1000, 300, 10 * time.Second},
}

// BenchmarkStreamLatency measures the delivery latency of log lines, from
// their write to their receipt by each subscriber, at several rates and
// numbers of subscribers (latencyPoints), and reports its p50, p99 and
// maximum in milliseconds.
//
// The writer is the stand-in claude in its [rate:R] mode: it writes the
// lines at R a second and stamps each with the time it wrote it; a
// subscriber, on the same host and clock, subtracts that stamp from the
// time it read the line. The latency so covers everything berth does with
// a line: the runner reads it from the agent's stdout and parses it, the
// task log writes it to SQLite in a batch (every 256 lines, or after
// 100ms) and publishes it on the bus, and each subscriber's follower
// encodes it and writes it to its connection; plus the client reading it.
// Every subscriber connects before the task starts (it waits, queued,
// behind a task that hangs until cancelled), so none of them catches up
// from the store at the start.
//
// A line not received within the point's drain time counts as infinitely
// late, so a p99 of +Inf means more than 1% of the deliveries did not
// happen in time. The benchmark also reports the rate the writer achieved
// (lines/s), the deliveries per second from the first line's write to the
// last receipt, how often a subscriber fell behind the bus and caught up
// from the store (lag-resyncs), the clients the server dropped as too
// slow, how many subscribers got every line in order and the end, and
// berth's CPU time per delivery (from its process_cpu_seconds_total: the
// figure least moved by other work on the host, which the latencies are
// not spared; the log line gives the host's load average).
func BenchmarkStreamLatency(b *testing.B) {
	e := newBenchEnv(b, berthBinary(b), "--max-running-per-workspace", "1")
	client := streamClient()
	defer client.CloseIdleConnections()
	for _, pt := range latencyPoints {
		b.Run(fmt.Sprintf("%s/%dlps-%dsubs", pt.transport, pt.rate, pt.subscribers), func(b *testing.B) {
			r := latencyRun{load: loadAverage()}
			for b.Loop() {
				r.add(runLatency(b, e, client, pt))
			}
			r.report(b, pt)
		})
	}
}

// runLatency runs one task of pt and returns what its subscribers got,
// with the stream counters' increase.
func runLatency(b *testing.B, e *benchEnv, client *http.Client, pt latencyPoint) latencyResult {
	blocker := e.task(b, "gate [hang]", berthv1.TaskStatus_TASK_STATUS_RUNNING)
	id := e.task(b, fmt.Sprintf("latency [lines:%d] [rate:%d]", pt.lines, pt.rate), berthv1.TaskStatus_TASK_STATUS_QUEUED)
	ctx, cancel := context.WithCancel(b.Context())
	defer cancel()
	m0, err := e.p.metrics(ctx)
	if err != nil {
		b.Fatal(err)
	}
	clientCPU := ownCPU()
	subs := make([]*subscriber, pt.subscribers)
	var ready, done sync.WaitGroup
	ready.Add(len(subs))
	connecting := time.AfterFunc(30*time.Second, cancel)
	for i := range subs {
		s := &subscriber{lat: make([]time.Duration, 0, pt.lines)}
		subs[i] = s
		done.Go(func() { s.subscribe(ctx, e, client, pt.transport, id, sync.OnceFunc(ready.Done)) })
	}
	ready.Wait()
	if !connecting.Stop() {
		b.Fatalf("%d subscribers not connected within 30s", pt.subscribers)
	}
	for _, s := range subs {
		if s.err != nil {
			b.Fatalf("a subscriber failed before the task started: %v", s.err)
		}
	}
	e.cancel(b, blocker)
	// The subscribers have 5s for the task to start, the time it takes to
	// write every line, then drain.
	write := time.Duration(pt.lines) * time.Second / time.Duration(pt.rate)
	deadline := time.AfterFunc(5*time.Second+write+pt.drain, cancel)
	defer deadline.Stop()
	done.Wait()
	clientCPU = ownCPU() - clientCPU
	m1, err := e.p.metrics(b.Context())
	if err != nil {
		b.Fatal(err)
	}
	written, writeSpan := e.writeRate(b, id)
	r := latencyResult{
		subs:      subs,
		written:   written,
		writeSpan: writeSpan,
		lagged:    m1["berth_stream_lagged_total"] - m0["berth_stream_lagged_total"],
		cpu:       time.Duration((m1["process_cpu_seconds_total"] - m0["process_cpu_seconds_total"]) * float64(time.Second)),
		clientCPU: clientCPU,
	}
	for k, v := range m1 {
		if strings.HasPrefix(k, "berth_stream_dropped_clients_total") {
			r.dropped += v - m0[k]
		}
	}
	return r
}

// writeRate waits for task id to end (it is cancelled after 60s) and
// reads, from its stored log, how many stamped lines followed the first
// and the time from the first's write to the last's.
func (e *benchEnv) writeRate(b *testing.B, id string) (int64, time.Duration) {
	b.Helper()
	for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		res, err := e.c.Task.GetTask(e.ctx, &berthv1.GetTaskRequest{Id: id})
		if err != nil {
			b.Fatal(err)
		}
		if s := res.GetTask().GetStatus(); s != berthv1.TaskStatus_TASK_STATUS_QUEUED && s != berthv1.TaskStatus_TASK_STATUS_RUNNING {
			break
		}
		if time.Since(start) > 60*time.Second {
			e.cancel(b, id)
			start = time.Now()
		}
	}
	var firstLine, lastLine, first, last int64
	for after := int64(0); ; {
		res, err := e.c.Task.GetTaskLogs(e.ctx, &berthv1.GetTaskLogsRequest{TaskId: id, AfterSeq: after, Limit: 1000})
		if err != nil {
			b.Fatal(err)
		}
		for _, entry := range res.GetEntries() {
			msg := []byte(entry.GetMessage())
			n, stamp := numberAfter(msg, []byte("extra line ")), numberAfter(msg, sentKey)
			if n < 0 || stamp < 0 {
				continue
			}
			if first == 0 {
				firstLine, first = n, stamp
			}
			lastLine, last = n, stamp
		}
		after = res.GetNextAfterSeq()
		if !res.GetHasMore() {
			return lastLine - firstLine, time.Duration(last - first)
		}
	}
}

// latencyResult is one run of a latencyPoint.
type latencyResult struct {
	subs            []*subscriber
	written         int64         // the stamped lines the writer wrote after the first
	writeSpan       time.Duration // from the first's write to the last's
	lagged, dropped float64       // subscribers that fell behind the bus; clients dropped
	cpu             time.Duration // berth's CPU time, from before the subscribers connected to after the last was done
	clientCPU       time.Duration // the test binary's, over the same time
}

// ownCPU returns the CPU time the test binary has used.
func ownCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// latencyRun sums the runs of a latencyPoint.
type latencyRun struct {
	runs            int
	lat             []time.Duration // every delivery's latency
	expected        int             // deliveries expected: subscribers × lines
	complete        int             // subscribers that got every line in order, then the end
	written         float64         // stamped lines written after the first, over
	writeSpan       time.Duration   // the time from the first's write to the last's
	deliverySpan    time.Duration   // from the first line's write to the last receipt
	lagged, dropped float64
	cpu, clientCPU  time.Duration
	errs            []error // of the subscribers that did not get the end
	load            string  // the host's load averages before the first run
}

// loadAverage returns the host's load averages over 1, 5 and 15 minutes,
// for the record: the latency figures are CPU-bound, and other work on the
// host shows in them.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "unknown"
}

func (r *latencyRun) add(res latencyResult) {
	r.runs++
	var first int64
	var lastRecv time.Time
	for _, s := range res.subs {
		r.lat = append(r.lat, s.lat...)
		r.expected += cap(s.lat)
		if s.ended && s.gaps == 0 && len(s.lat) == cap(s.lat) {
			r.complete++
		}
		if !s.ended && s.err != nil {
			r.errs = append(r.errs, s.err)
		}
		if s.first == 0 {
			continue
		}
		if first == 0 || s.first < first {
			first = s.first
		}
		if s.lastRecv.After(lastRecv) {
			lastRecv = s.lastRecv
		}
	}
	if first == 0 {
		return
	}
	r.written += float64(res.written)
	r.writeSpan += res.writeSpan
	r.deliverySpan += lastRecv.Sub(time.Unix(0, first))
	r.lagged += res.lagged
	r.dropped += res.dropped
	r.cpu += res.cpu
	r.clientCPU += res.clientCPU
}

func (r *latencyRun) report(b *testing.B, pt latencyPoint) {
	if len(r.lat) == 0 {
		b.Fatalf("no line delivered: %v", errors.Join(r.errs...))
	}
	slices.Sort(r.lat)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	// Deliveries that did not happen sort after every one that did.
	pct := func(q float64) float64 {
		i := max(int(math.Ceil(q*float64(r.expected)))-1, 0)
		if i >= len(r.lat) {
			return math.Inf(1)
		}
		return ms(r.lat[i])
	}
	runs := float64(r.runs)
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(ms(r.lat[len(r.lat)-1]), "max-ms")
	b.ReportMetric(100*float64(len(r.lat))/float64(r.expected), "delivered-%")
	b.ReportMetric(r.written/r.writeSpan.Seconds(), "lines/s")
	b.ReportMetric(float64(len(r.lat))/r.deliverySpan.Seconds(), "deliveries/s")
	b.ReportMetric(r.lagged/runs, "lag-resyncs")
	b.ReportMetric(r.dropped/runs, "dropped")
	b.ReportMetric(float64(r.complete)/runs, "complete-subs")
	b.ReportMetric(float64(r.cpu.Microseconds())/float64(len(r.lat)), "berth-cpu-us/delivery")
	delivered := func(q float64) time.Duration { return r.lat[int(q*float64(len(r.lat)-1))].Round(time.Millisecond) }
	b.Logf("%s: %d subscribers, %d lines at %d/s: %d of %d deliveries in %v (last line written after %v), p50 %v and p99 %v of those delivered; %d subscribers complete; %d fell behind and caught up from the store, %d dropped; CPU used by berth %v, by the clients %v; host load average before: %s",
		pt.transport, pt.subscribers, pt.lines, pt.rate, len(r.lat), r.expected, (r.deliverySpan / time.Duration(r.runs)).Round(time.Millisecond),
		(r.writeSpan / time.Duration(r.runs)).Round(time.Millisecond), delivered(0.5), delivered(0.99),
		r.complete/r.runs, int(r.lagged/runs), int(r.dropped/runs), (r.cpu / time.Duration(r.runs)).Round(time.Millisecond), (r.clientCPU / time.Duration(r.runs)).Round(time.Millisecond), r.load)
	if len(r.errs) > 0 {
		b.Logf("%d subscribers did not get the end, such as: %v", len(r.errs), r.errs[0])
	}
}
