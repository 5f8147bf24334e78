package main

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// fanoutResult is what one fan-out run measured: tasks × subscribers SSE
// streams, each task's agent writing lines at rate a second.
type fanoutResult struct {
	Tasks       int     `json:"tasks"`
	Subscribers int     `json:"subscribers_per_task"`
	Rate        float64 `json:"lines_per_sec_per_task"`
	Lines       int     `json:"lines_per_task"`
	Expected    int64   `json:"expected_deliveries"`
	Delivered   int64   `json:"delivered"`
	Lost        int64   `json:"lost"`
	Duplicates  int64   `json:"duplicates"`
	Offered     float64 `json:"offered_per_sec"`
	Achieved    float64 `json:"achieved_per_sec"`
	Seconds     float64 `json:"seconds"`
	// Steady is the deliveries a second in the run's middle (steadyWindow):
	// what the server sustains, without the agent's start and the last
	// line's latency, which the whole run's Achieved includes and which
	// hold it below the offered rate even for a server that keeps up.
	Steady float64 `json:"steady_per_sec"`
	P50    float64 `json:"p50_ms"`
	P99    float64 `json:"p99_ms"`
	Max    float64 `json:"max_ms"`
	// The CPU seconds berth and the harness (the subscribers) used while
	// the lines flowed: the harness's share shows whether the subscribers
	// could have been the limit.
	BerthCPU   float64 `json:"berth_cpu_seconds"`
	HarnessCPU float64 `json:"harness_cpu_seconds"`
}

// fanoutSpec is the shape of one fan-out run.
type fanoutSpec struct {
	tasks, subscribers int
	rate               float64
	d                  time.Duration
}

// fanout runs spec against b: it starts the tasks, whose agents wait at a
// gate file; opens every subscriber's SSE stream of its task's log; opens
// the gate; and has each subscriber count the lines it gets (by seq: a
// seq not above the last one is a duplicate) and their latency, from the
// agent's write (the time in the line) to the receipt. A run ends when
// every subscriber has every line, or at its time bound, which counts what
// is missing as lost.
//
// With profile set (-profile), it also saves berth's CPU profile of the
// lines' writing time in that directory.
func fanout(ctx context.Context, b *berthProcess, spec fanoutSpec, profile string) (fanoutResult, error) {
	lines := int(spec.rate * spec.d.Seconds())
	res := fanoutResult{Tasks: spec.tasks, Subscribers: spec.subscribers, Rate: spec.rate, Lines: lines,
		Expected: int64(spec.tasks) * int64(spec.subscribers) * int64(lines),
		Offered:  float64(spec.tasks*spec.subscribers) * spec.rate}
	gate := filepath.Join(b.dir, fmt.Sprintf("gate-%d", time.Now().UnixNano()))
	prompt := fmt.Sprintf("emit %g %d %s", spec.rate, lines, gate)
	ids := make([]string, spec.tasks)
	for i := range ids {
		id, err := b.createTask(ctx, prompt)
		if err != nil {
			return res, err
		}
		ids[i] = id
	}
	for _, id := range ids {
		if err := b.waitRunning(ctx, id); err != nil {
			return res, err
		}
	}
	// The time bound: the emitting time, plus a minute and a half for a
	// server that falls behind to catch up.
	ctx, cancel := context.WithTimeout(ctx, spec.d+90*time.Second)
	defer cancel()
	subs, err := subscribeAll(ctx, b, ids, spec.subscribers, lines)
	defer closeSubscribers(subs)
	if err != nil {
		return res, err
	}
	start, cpu := time.Now(), startCPU(b.pid())
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		return res, err
	}
	var wg sync.WaitGroup
	profiled := cpuProfile(ctx, profile, b, fmt.Sprintf("fanout-%dx%d", spec.tasks, spec.subscribers), spec.d)
	for _, s := range subs {
		wg.Go(func() { s.read(ctx, lines) })
	}
	wg.Wait()
	if err := profiled(); err != nil {
		return res, err
	}
	res.BerthCPU, res.HarnessCPU = cpu.stop()
	res.fill(subs, start)
	if res.Delivered == 0 {
		return res, fmt.Errorf("no line reached any subscriber; berth's log ends:\n%s", b.logTail())
	}
	return res, nil
}

// subscribeAll opens per subscribers to each task's log stream.
func subscribeAll(ctx context.Context, b *berthProcess, ids []string, per, lines int) ([]*subscriber, error) {
	client := &http.Client{Transport: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: -1}}
	subs := make([]*subscriber, len(ids)*per)
	open := make([]func(), len(subs))
	for i := range subs {
		subs[i] = &subscriber{lat: make([]time.Duration, 0, lines)}
	}
	var mu sync.Mutex
	next := 0
	err := openAll(ctx, open, func(ctx context.Context) (func(), error) {
		mu.Lock()
		s := subs[next]
		url := b.url + "/api/v1/tasks/" + ids[next/per] + "/logs/stream"
		next++
		mu.Unlock()
		return s.open(ctx, client, url, b.token)
	})
	return subs, err
}

// closeSubscribers ends every subscriber's stream.
func closeSubscribers(subs []*subscriber) {
	for _, s := range subs {
		if s.body != nil {
			s.cancel()
			_ = s.body.Close()
		}
	}
}

// steadyWindow is the middle of a run whose agents write for d seconds:
// from a second after the last subscriber's first receipt to a second
// before the first subscriber's last line is due (its first receipt plus
// d), so that it lies inside every agent's writing however far apart the
// agents started. It is empty (ok false) for a run too short to have one.
func steadyWindow(subs []*subscriber, d float64) (from, to int64, ok bool) {
	first, last := int64(math.MaxInt64), int64(math.MinInt64)
	for _, s := range subs {
		if len(s.recv) > 0 {
			first, last = min(first, s.recv[0]), max(last, s.recv[0])
		}
	}
	if first == math.MaxInt64 {
		return 0, 0, false
	}
	from, to = last+int64(time.Second), first+int64((d-1)*float64(time.Second))
	return from, to, to-from >= int64(time.Second)
}

// fill sums up the subscribers' counts and latencies.
func (r *fanoutResult) fill(subs []*subscriber, start time.Time) {
	var all []time.Duration
	last := start
	for _, s := range subs {
		r.Delivered += int64(len(s.lat))
		r.Duplicates += s.dups
		all = append(all, s.lat...)
		last = later(last, s.last)
	}
	r.Lost = r.Expected - r.Delivered
	r.Seconds = last.Sub(start).Seconds()
	if r.Seconds > 0 {
		r.Achieved = float64(r.Delivered) / r.Seconds
	}
	r.Steady = r.Achieved
	if from, to, ok := steadyWindow(subs, float64(r.Lines)/r.Rate); ok {
		var n int64
		for _, s := range subs {
			lo, _ := slices.BinarySearch(s.recv, from)
			hi, _ := slices.BinarySearch(s.recv, to)
			n += int64(hi - lo)
		}
		r.Steady = float64(n) / (float64(to-from) / 1e9)
	}
	slices.Sort(all)
	r.P50, r.P99, r.Max = ms(percentile(all, 50)), ms(percentile(all, 99)), ms(percentile(all, 100))
}
