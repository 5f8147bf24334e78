package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
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
	// The CPU seconds the server (berth's process; 0 for the floor, which
	// runs in the harness) and the harness used over the run.
	ServerCPU  float64 `json:"server_cpu_seconds"`
	HarnessCPU float64 `json:"harness_cpu_seconds"`
}

// closedLoop sends c from workers goroutines, each its next request as
// soon as the last one is answered, for d: the maximum throughput, since
// a slow answer slows the sender down (which is why latency is measured
// open-loop instead).
//
// pid is the server's process, whose CPU is measured; 0 for a server in
// this process.
func closedLoop(ctx context.Context, c call, workers int, d time.Duration, pid int) closedResult {
	client := loadClient(workers)
	defer client.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var ok, failed atomic.Int64
	var wg sync.WaitGroup
	start, cpu := time.Now(), startCPU(pid)
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
	res := closedResult{Requests: ok.Load(), Errors: failed.Load(), Seconds: secs, RPS: float64(ok.Load()) / secs}
	res.ServerCPU, res.HarnessCPU = cpu.stop()
	return res
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
