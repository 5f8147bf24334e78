package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// openers is how many streams are being opened at once.
const openers = 32

// streamResult is the resident-set cost of idle SSE streams on one server.
type streamResult struct {
	Streams      int     `json:"streams"`
	RSSBeforeKiB int64   `json:"rss_before_kib"`
	RSSAfterKiB  int64   `json:"rss_after_kib"`
	KiBPerStream float64 `json:"kib_per_stream"`
}

// openSSE opens one SSE stream and returns once its answer's headers are
// in (the server holds the stream then); the closer ends it.
func openSSE(ctx context.Context, client *http.Client, url, token string) (func(), error) {
	ctx, cancel := context.WithCancel(ctx)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		cancel()
		return nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := client.Do(req)
	if err != nil {
		cancel()
		return nil, err
	}
	if res.StatusCode != http.StatusOK {
		_ = res.Body.Close()
		cancel()
		return nil, fmt.Errorf("status %d", res.StatusCode)
	}
	return func() { cancel(); _ = res.Body.Close() }, nil
}

// idleStreams opens k SSE streams to url, reads pid's resident set before
// and after (once it has settled), and closes them all again.
func idleStreams(ctx context.Context, pid, k int, url, token string) (streamResult, error) {
	client := &http.Client{Transport: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: -1}}
	defer client.CloseIdleConnections()
	before, err := rss(pid)
	if err != nil {
		return streamResult{}, err
	}
	closers := make([]func(), k)
	defer func() {
		for _, c := range closers {
			if c != nil {
				c()
			}
		}
	}()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, openers)
	for range openers {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= k {
					return
				}
				c, err := openSSE(ctx, client, url, token)
				if err != nil {
					errs <- fmt.Errorf("stream %d: %w", i, err)
					return
				}
				closers[i] = c
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := errors.Join(<-errs, ctx.Err()); err != nil {
		return streamResult{}, err
	}
	after, err := settledRSS(ctx, pid)
	if err != nil {
		return streamResult{}, err
	}
	return streamResult{
		Streams: k, RSSBeforeKiB: before >> 10, RSSAfterKiB: after >> 10,
		KiBPerStream: float64(after-before) / 1024 / float64(k),
	}, nil
}

// settledRSS reads pid's resident set every 250 ms until two readings in
// a row differ by under 1% (or 5 s pass), and returns the last.
func settledRSS(ctx context.Context, pid int) (int64, error) {
	last, err := rss(pid)
	if err != nil {
		return 0, err
	}
	for range 20 {
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
		now, err := rss(pid)
		if err != nil {
			return 0, err
		}
		if diff := now - last; diff*100 < now && -diff*100 < now {
			return now, nil
		}
		last = now
	}
	return last, nil
}
