package main

import (
	"context"
	"net/http"
	"slices"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// openResult is what an open-loop run measured. Latencies are in
// milliseconds, from each request's intended send time to its answer.
type openResult struct {
	Rate     int     `json:"rate"`
	Sent     int     `json:"sent"`
	Errors   int     `json:"errors"`
	Achieved float64 `json:"achieved_rps"`
	P50      float64 `json:"p50_ms"`
	P90      float64 `json:"p90_ms"`
	P99      float64 `json:"p99_ms"`
	Max      float64 `json:"max_ms"`
}

// openLoop sends c at a constant rate for d with vegeta, whatever the
// server does, and measures each request's latency from the time it was
// due, so a server that falls behind pays for the queue it builds (no
// coordinated omission). Two things in vegeta's attacker make this hold:
//
//   - Its pacer hands each tick to a free worker, and when every worker is
//     busy it starts another: the worker count is unbounded (MaxWorkers is
//     left at its default, math.MaxUint64). A worker cap would hide the
//     queue: the pacer would block on the tick, and the late request would
//     look fast. The connections are capped at conns (MaxConnections): a
//     request beyond them waits inside http.Transport for one, but that
//     wait comes after its worker took the time and is counted in its
//     latency, as a server's accept queue would be. Without the cap a
//     server that falls behind gets a storm of new connections, each
//     dearer than a request, and the run measures the storm.
//   - Its Result.Timestamp is taken when a worker starts the request, not
//     when the request was due; if the pacer itself runs late (a loaded
//     machine), that lag would go uncounted. So the latency used here is
//     the answer's time minus the request's due time, began + (seq+1) ×
//     interval as vegeta's ConstantPacer schedules it, and never less than
//     vegeta's own.
//
// The attack stops when ctx ends; answers still missing after 10 s are
// errors.
func openLoop(ctx context.Context, c call, rate int, d time.Duration, conns int) openResult {
	header := http.Header{"Content-Type": {"application/json"}}
	if c.token != "" {
		header.Set("Authorization", "Bearer "+c.token)
	}
	target := vegeta.Target{Method: http.MethodPost, URL: c.url, Body: c.body, Header: header}
	atk := vegeta.NewAttacker(vegeta.Timeout(10*time.Second), vegeta.KeepAlive(true), vegeta.Redirects(vegeta.NoFollow),
		vegeta.Connections(conns), vegeta.MaxConnections(conns))
	defer context.AfterFunc(ctx, func() { atk.Stop() })()
	interval := time.Second / time.Duration(rate)
	lat := make([]time.Duration, 0, scheduled(rate, d))
	out := openResult{Rate: rate}
	began := time.Now()
	var last time.Time
	for res := range atk.Attack(vegeta.NewStaticTargeter(target), vegeta.ConstantPacer{Freq: rate, Per: time.Second}, d, "") {
		out.Sent++
		answered := res.Timestamp.Add(res.Latency)
		last = later(last, answered)
		if res.Code != http.StatusOK || res.Error != "" {
			out.Errors++
			continue
		}
		dueAt := began.Add(time.Duration(res.Seq+1) * interval) // #nosec G115 -- seq < maxScheduled
		lat = append(lat, max(answered.Sub(dueAt), res.Latency))
	}
	slices.Sort(lat)
	out.Achieved = float64(len(lat)) / max(last.Sub(began), d).Seconds()
	out.P50, out.P90 = ms(percentile(lat, 50)), ms(percentile(lat, 90))
	out.P99, out.Max = ms(percentile(lat, 99)), ms(percentile(lat, 100))
	return out
}

// scheduled is how many requests an open-loop run at rate for d sends.
func scheduled(rate int, d time.Duration) int {
	return int(int64(rate) * int64(d) / int64(time.Second))
}

// later is the later of a and b.
func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
