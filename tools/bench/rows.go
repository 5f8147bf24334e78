package main

import (
	"fmt"
	"strings"
	"time"
)

// The targets of issue #18.
const (
	unaryRatioTarget    = 0.5     // closed-loop GetWorkspace, × the floor
	openP99Target       = 10.0    // ms, open loop at 5,000 req/s
	openP99RatioTarget  = 3.0     // × the floor's p99
	idleKiBTarget       = 28.0    // KiB per idle stream
	idleRatioTarget     = 1.25    // × the floor
	deliveriesTarget    = 200_000 // SSE deliveries a second
	latencyP99Target    = 50.0    // ms, at 30,000 deliveries a second
	latencyP50Target    = 10.0    // ms
	postgresIngestGoal  = 100_000 // lines a second
	latencyRunPerSecond = 30_000  // the deliveries a second of the latency run
)

// rows builds the table from the figures.
func (r *report) rows() []row {
	var rows []row
	if c := r.Closed; c != nil {
		x := pair(fmt.Sprintf("GetWorkspace closed loop, %d conns", r.Config.Conns), "req/s", c.Berth.RPS, c.Floor.RPS)
		rows = append(rows, x.target(fmt.Sprintf("≥ %g× floor", unaryRatioTarget), *x.Ratio >= unaryRatioTarget))
	}
	for _, o := range r.Open {
		name := fmt.Sprintf("GetWorkspace open loop %d req/s", o.Berth.Rate)
		p99 := pair(name+", p99", "ms", o.Berth.P99, o.Floor.P99)
		if o.Berth.Rate >= 5000 {
			p99 = p99.target(fmt.Sprintf("≤ %g ms and ≤ %g× floor", openP99Target, openP99RatioTarget),
				o.Berth.P99 <= openP99Target && *p99.Ratio <= openP99RatioTarget && o.Berth.Errors == 0 &&
					o.Berth.Sent*100 >= scheduled(o.Berth.Rate, r.rateDuration())*99)
		}
		rows = append(rows,
			pair(name+", achieved", "req/s", o.Berth.Achieved, o.Floor.Achieved),
			pair(name+", p50", "ms", o.Berth.P50, o.Floor.P50),
			pair(name+", p90", "ms", o.Berth.P90, o.Floor.P90),
			p99,
			pair(name+", max", "ms", o.Berth.Max, o.Floor.Max),
			count(fmt.Sprintf("%s, sent of %d due", name, scheduled(o.Berth.Rate, r.rateDuration())), o.Berth.Sent, o.Floor.Sent),
			count(name+", errors", o.Berth.Errors, o.Floor.Errors),
		)
	}
	for _, i := range r.Idle {
		name := fmt.Sprintf("RSS per idle %s, %d streams", kindName(i.Kind), i.Berth.Streams)
		if i.Kind == kindH2 && r.Config.H2PerConn > 1 {
			name += fmt.Sprintf(", %d a connection", r.Config.H2PerConn)
		}
		x := pair(name, "KiB", i.Berth.KiBPerStream, i.Floor.KiBPerStream)
		rows = append(rows, x.target(fmt.Sprintf("≤ %g KiB and ≤ %g× floor", idleKiBTarget, idleRatioTarget),
			i.Berth.KiBPerStream <= idleKiBTarget && *x.Ratio <= idleRatioTarget))
	}
	for _, f := range r.Fanout {
		rows = append(rows, fanoutRows(f)...)
	}
	for _, g := range r.Ingest {
		x := row{Figure: "log ingest " + strings.TrimPrefix(g.Name, "Benchmark"), Unit: "lines/s", Berth: g.LinesPerSec}
		if strings.Contains(strings.ToLower(g.Name), "postgres") {
			x = x.target(fmt.Sprintf("≥ %d lines/s", postgresIngestGoal), g.LinesPerSec >= postgresIngestGoal)
		}
		rows = append(rows, x)
	}
	return rows
}

// fanoutRows are one fan-out run's rows: deliveries a second, loss and
// latency, with the targets that apply to its shape.
func fanoutRows(f fanoutResult) []row {
	name := fmt.Sprintf("SSE fan-out %d×%d at %g lines/s", f.Tasks, f.Subscribers, f.Rate)
	rate := row{Figure: fmt.Sprintf("%s, deliveries sustained (offered %.0f/s)", name, f.Offered), Unit: "deliveries/s", Berth: f.Steady}
	whole := row{Figure: fmt.Sprintf("%s, deliveries over the whole run", name), Unit: "deliveries/s", Berth: f.Achieved}
	lost := row{Figure: name + ", lost + duplicated", Unit: "count", Berth: float64(f.Lost + f.Duplicates)}
	lost = lost.target("0", f.Lost == 0 && f.Duplicates == 0)
	p50 := row{Figure: name + ", latency p50", Unit: "ms", Berth: f.P50}
	p99 := row{Figure: name + ", latency p99", Unit: "ms", Berth: f.P99}
	if f.Offered > deliveriesTarget { // the deliveries target's shapes, offered more than it (fanoutSpecs)
		rate = rate.target(fmt.Sprintf("≥ %d/s", deliveriesTarget), f.Steady >= deliveriesTarget && f.Lost == 0)
	}
	if f.Offered <= latencyRunPerSecond {
		p50 = p50.target(fmt.Sprintf("≤ %g ms", latencyP50Target), f.P50 <= latencyP50Target && f.Lost == 0)
		p99 = p99.target(fmt.Sprintf("≤ %g ms", latencyP99Target), f.P99 <= latencyP99Target && f.Lost == 0)
	}
	return []row{rate, whole, lost, p50, p99}
}

// pair is a row with a floor and berth's ratio to it.
func pair(figure, unit string, berth, floor float64) row {
	x := row{Figure: figure, Unit: unit, Berth: berth, Floor: &floor}
	ratio := 0.0
	if floor != 0 {
		ratio = berth / floor
	}
	x.Ratio = &ratio
	return x
}

// count is a row of counts with a floor and no ratio.
func count(figure string, berth, floor int) row {
	f := float64(floor)
	return row{Figure: figure, Unit: "count", Berth: float64(berth), Floor: &f}
}

// rateDuration is the length of each open-loop run.
func (r *report) rateDuration() time.Duration {
	return time.Duration(r.Config.RateDurationS * float64(time.Second))
}

// target sets x's target and whether it is met.
func (x row) target(t string, met bool) row {
	x.Target, x.Met = t, &met
	return x
}

// kindName names a kind of stream in the table.
func kindName(kind string) string {
	switch kind {
	case kindSSE:
		return "SSE stream (task log)"
	case kindWS:
		return "WebSocket (1 task subscription)"
	case kindH2:
		return "Connect stream (StreamTaskLogs, h2c)"
	}
	return kind
}

// h2Note says how the idle Connect streams shared connections.
func h2Note(perConn int) string {
	if perConn <= 1 {
		return "Connect streams use one HTTP/2 connection per stream (h2c prior knowledge, -h2-per-conn 1): the worst case, and what a per-stream figure means when each client is its own process; streams sharing a connection share the socket's cost."
	}
	return fmt.Sprintf("Connect streams share HTTP/2 connections, %d streams to one (h2c prior knowledge, -h2-per-conn %d), berth and floor alike: each stream pays 1/%d of a socket. With one connection a stream (the default) each pays a whole one.", perConn, perConn, perConn)
}

// notes say how the figures were taken, and what the table cannot show.
func (r *report) notes() []string {
	n := []string{
		"berth runs as a child with the process runtime, SQLite, no rate limits and no per-user quotas (--rate-* 0, --max-streams-per-user 0, --max-running-per-user 0, --max-queued-per-user 0), --max-connections 4/3 × streams + 2048; every figure is on 127.0.0.1, load generator and servers sharing the machine's CPUs.",
		"Each phase (unary, each kind of idle stream, fan-out) gets a fresh berth process, so one phase's grown heap does not colour the next.",
	}
	if r.Closed != nil {
		n = append(n, "Closed loop: keep-alive HTTP/1.1 Connect JSON POSTs, authenticated (bearer JWT), GetWorkspace served from berth's cache; the floor is a bare net/http handler answering berth's bytes and headers.")
		if c := r.Closed; c.Berth.Requests > 0 && c.Floor.Requests > 0 {
			perCall := func(cpu float64, reqs int64) float64 { return cpu / float64(reqs) * 1e6 }
			n = append(n, fmt.Sprintf("Closed loop CPU per call: berth %.0f µs and its load generator %.0f µs; the floor and its load generator, one process, %.0f µs (%d CPUs in all).",
				perCall(c.Berth.ServerCPU, c.Berth.Requests), perCall(c.Berth.HarnessCPU, c.Berth.Requests),
				perCall(c.Floor.ServerCPU+c.Floor.HarnessCPU, c.Floor.Requests), r.Machine.CPUs))
		}
	}
	if len(r.Open) > 0 {
		n = append(n, fmt.Sprintf("Open loop: vegeta's constant pacer with unbounded workers and at most %d connections; latency counts from each request's due time, so waiting for a connection or a late pacer counts too. Requests the pacer could not send within the run (\"sent of N due\": a CPU-starved client) are in no percentile, and the 5,000 req/s target needs 99%% of them sent.", r.Config.OpenConns))
	}
	for _, o := range r.Open {
		if o.Floor.Achieved < 0.95*float64(o.Floor.Rate) {
			n = append(n, fmt.Sprintf("At %d req/s even the bare floor answered only %.0f req/s: this machine (load generator and server together, and whatever else runs on it) cannot sustain the rate, so that run's latencies measure the host's queue more than berth's.", o.Floor.Rate, o.Floor.Achieved))
		}
	}
	if len(r.Idle) > 0 {
		n = append(n,
			fmt.Sprintf("Idle streams: %d per kind, not the issue's 20,000: this machine's hard RLIMIT_NOFILE is 20,000 and cannot be raised (not even as root), and each stream takes a descriptor in the server (at most ~18,000 with -streams).", r.Config.Streams),
			"RSS per stream = (VmRSS after opening, settled) − (VmRSS before), ÷ streams, from /proc/PID/status. berth's streams follow a RUNNING task whose agent is silent; the floors are bare go-sse, coder/websocket (reads one frame, answers it, reads on) and net/http h2c (flushed headers, waiting), sent the same requests as berth, bearer token included, which they ignore.",
			h2Note(r.Config.H2PerConn),
		)
		for _, i := range r.Idle {
			if i.Floor.KiBPerStream > idleKiBTarget {
				n = append(n, fmt.Sprintf("RSS per idle %s: the bare floor alone costs %.1f KiB a stream, over the %g KiB bound, which no server on that transport and library meets here; the ratio to the floor is the target that can be met.",
					kindName(i.Kind), i.Floor.KiBPerStream, idleKiBTarget))
			}
		}
	}
	if len(r.Fanout) > 0 {
		n = append(n, "Fan-out: every subscriber is an SSE stream of the task's log opened before the agent's first line; the agent (this program) writes lines with its wall-clock time in them on a fixed schedule; latency is receipt minus that time; loss is lines expected minus lines received, counted by seq. \"Sustained\" deliveries are those received in the run's middle, a second: from 1 s after the last subscriber's first line to 1 s before the first subscriber's last line is due, a window inside every agent's writing; \"over the whole run\" divides every delivery by the time from opening the agents' gate to the last receipt, which includes the agents' start and the last line's latency, so it stays below the offered rate even for a server that keeps up. The deliveries target is judged on the runs offered a fifth more than it (240 lines/s): at exactly 200,000 a second offered, a server that keeps up ties with the target and noise decides. There is no floor for fan-out.")
	}
	for _, f := range r.Fanout {
		n = append(n, fmt.Sprintf("Fan-out %d×%d at %g lines/s: berth used %.1f CPU-seconds and the harness's subscribers %.1f over the %.1f s the lines took to arrive (%d CPUs in all).",
			f.Tasks, f.Subscribers, f.Rate, f.BerthCPU, f.HarnessCPU, f.Seconds, r.Machine.CPUs))
	}
	if len(r.Ingest) > 0 {
		n = append(n, fmt.Sprintf("Ingest: go test -run '^$' -bench '^BenchmarkIngest' -benchtime %s ./internal/tasklog/ (Postgres from BERTH_TEST_DATABASE_URL, or a cluster the test starts).", r.Config.Benchtime))
	}
	return n
}
