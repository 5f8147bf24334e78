package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// call is one unary request the load generators send: a Connect JSON POST
// of body to url, with an optional bearer token.
type call struct {
	url, token string
	body       []byte
}

// do sends c once over client and reads the whole answer, so the
// connection goes back to the pool; anything but 200 is an error.
func (c call) do(ctx context.Context, client *http.Client) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(c.body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	res, err := client.Do(req)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, res.Body)
	_ = res.Body.Close()
	if err == nil && res.StatusCode != http.StatusOK {
		err = fmt.Errorf("status %d", res.StatusCode)
	}
	return err
}

// loadClient is a keep-alive HTTP/1.1 client holding up to conns
// connections to one host.
func loadClient(conns int) *http.Client {
	return &http.Client{Transport: &http.Transport{
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		MaxConnsPerHost:     conns,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}}
}

// closedResult is what a closed-loop run measured.
type closedResult struct {
	Requests int64   `json:"requests"`
	Errors   int64   `json:"errors"`
	Seconds  float64 `json:"seconds"`
	RPS      float64 `json:"rps"`
}

// closedLoop sends c from workers goroutines, each its next request as
// soon as the last one is answered, for d: the maximum throughput, since
// a slow answer slows the sender down (which is why latency is measured
// open-loop instead).
func closedLoop(ctx context.Context, c call, workers int, d time.Duration) closedResult {
	client := loadClient(workers)
	defer client.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var ok, failed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				if err := c.do(ctx, client); err == nil {
					ok.Add(1)
				} else if ctx.Err() == nil {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	return closedResult{Requests: ok.Load(), Errors: failed.Load(), Seconds: secs, RPS: float64(ok.Load()) / secs}
}

// due is when the i-th request (from 0) of an open-loop run at rate
// requests a second is meant to be sent, counted from the run's start.
func due(i int, rate float64) time.Duration {
	return time.Duration(float64(i) * float64(time.Second) / rate)
}

// scheduled is how many requests an open-loop run at rate for d sends.
func scheduled(rate float64, d time.Duration) int {
	return int(math.Floor(rate * d.Seconds()))
}

// openResult is what an open-loop run measured. Latencies are in
// milliseconds, from each request's intended send time to its answer.
type openResult struct {
	Rate     float64 `json:"rate"`
	Sent     int     `json:"sent"`
	Errors   int     `json:"errors"`
	Achieved float64 `json:"achieved_rps"`
	P50      float64 `json:"p50_ms"`
	P90      float64 `json:"p90_ms"`
	P99      float64 `json:"p99_ms"`
	Max      float64 `json:"max_ms"`
}

// openLoop sends c at a constant rate for d, whatever the server does: a
// pacer hands each request's intended send time to a pool of workers, and
// its latency counts from that time, not from when a worker got to it. A
// server that falls behind so pays for the queue it builds (no
// coordinated omission); the pool is large enough that the client is not
// the queue. Requests still unanswered 10 s after the run are errors.
func openLoop(ctx context.Context, c call, rate float64, d time.Duration, workers int) openResult {
	n := scheduled(rate, d)
	client := loadClient(workers)
	defer client.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, d+10*time.Second)
	defer cancel()
	intended := make(chan time.Time, n)
	lat := make([]time.Duration, n)
	var next atomic.Int64
	var failed atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for at := range intended {
				if err := c.do(ctx, client); err != nil {
					failed.Add(1)
					continue
				}
				lat[next.Add(1)-1] = time.Since(at)
			}
		})
	}
	start := time.Now()
	sent := 0
	for i := range n {
		at := start.Add(due(i, rate))
		if wait := time.Until(at); wait > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(wait):
			}
		}
		if ctx.Err() != nil {
			break
		}
		intended <- at
		sent++
	}
	close(intended)
	wg.Wait()
	// Over the run's length at least: the last request is due just before
	// its end.
	elapsed := max(time.Since(start), d).Seconds()
	done := lat[:next.Load()]
	slices.Sort(done)
	return openResult{
		Rate: rate, Sent: sent, Errors: int(failed.Load()),
		Achieved: float64(len(done)) / elapsed,
		P50:      ms(percentile(done, 50)), P90: ms(percentile(done, 90)),
		P99: ms(percentile(done, 99)), Max: ms(percentile(done, 100)),
	}
}

// percentile is the nearest-rank p-th percentile (0 < p <= 100) of sorted
// latencies: the smallest that at least p% of them do not exceed. It is 0
// for no latencies.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// ms is d in milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
