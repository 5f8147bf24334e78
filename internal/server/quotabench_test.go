package server_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// floodAttempts is how many streams BenchmarkStreamFlood tries to open per
// transport, and floodAtOnce how many attempts are in flight at once.
const (
	floodAttempts = 5000
	floodAtOnce   = 500
)

// BenchmarkStreamFlood is issue #13's reproduction against the quotas: one
// account tries to open 5,000 SSE streams and 5,000 WebSockets on a berth
// child process with the default quotas and rate limits, while /health is
// called in a loop. It reports how many opened and how many were refused
// (by the stream quota or the request budget), /health's p50, p99 and max
// during the flood, and the child's peak resident set (VmHWM). Run it with
//
//	go test -run '^$' -bench StreamFlood -benchtime=1x ./internal/server/
func BenchmarkStreamFlood(b *testing.B) {
	bin := berthBinary(b)
	for _, v := range []struct {
		name  string
		flags []string
	}{
		{"defaults", nil},
		// The stream quota alone, with no request budget to stop the flood first.
		{"quota-only", []string{"--rate-principal", "0"}},
		// Neither: what a berth without the quotas does (the connection cap
		// derived from the descriptor limit still applies).
		{"no-quotas", []string{"--rate-principal", "0", "--max-streams-per-user", "0"}},
	} {
		b.Run(v.name, func(b *testing.B) { benchFlood(b, bin, v.flags...) })
	}
}

func benchFlood(b *testing.B, bin string, flags ...string) {
	p := startBerth(b, bin, flags...)
	c := p.clients(protocols[0])
	token := register(b, c, "flood@example.com").GetTokens().GetAccessToken()
	e := &quotaEnv{srv: p.testServer, c: c, admin: token}
	e.ws = e.workspace(b, "flood")
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: -1, DisableKeepAlives: true}}
	for b.Loop() {
		var opened, quota, budget, other atomic.Int64
		var mu sync.Mutex
		var held []func()
		var firstOther string
		probe := probeHealth(p.URL)
		start := time.Now()
		var next atomic.Int64
		var wg sync.WaitGroup
		for range floodAtOnce {
			wg.Go(func() {
				for {
					i := next.Add(1) - 1
					if i >= 2*floodAttempts {
						return
					}
					closer, status, body := openFlood(b.Context(), client, p.URL, e.ws, token, i%2 == 1)
					switch {
					case closer != nil:
						opened.Add(1)
						mu.Lock()
						held = append(held, closer)
						mu.Unlock()
					case status == http.StatusTooManyRequests && strings.Contains(body, "max-streams-per-user"):
						quota.Add(1)
					case status == http.StatusTooManyRequests:
						budget.Add(1)
					default:
						other.Add(1)
						mu.Lock()
						if firstOther == "" {
							firstOther = fmt.Sprintf("%d %s", status, body)
						}
						mu.Unlock()
					}
				}
			})
		}
		wg.Wait()
		took := time.Since(start)
		p50, p99, worst, calls, fails := probe.end()
		b.Logf("%d stream opens (half SSE, half WebSocket) in %v: %d opened, %d refused by the stream quota, %d by the request budget, %d otherwise (%s)",
			2*floodAttempts, took.Round(time.Millisecond), opened.Load(), quota.Load(), budget.Load(), other.Load(), firstOther)
		b.Logf("/health during the flood: %d calls, %d failed, p50 %v, p99 %v, max %v", calls, len(fails), p50, p99, worst)
		if rss, err := peakRSS(p.cmd.Process.Pid); err == nil {
			b.Logf("berth's peak resident set: %.1f MiB", float64(rss)/(1<<20))
		}
		if len(fails) > 0 {
			b.Errorf("/health failed during the flood: %v", fails[0])
		}
		for _, c := range held {
			c()
		}
	}
}

// openFlood tries one stream: the SSE events of ws, or a WebSocket. It
// returns a closer when the stream opened, else the answer's status and
// body.
func openFlood(ctx context.Context, client *http.Client, base, ws, token string, socket bool) (func(), int, string) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	if socket {
		c, res, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/ws", &websocket.DialOptions{
			HTTPClient: client, HTTPHeader: bearer(token), Subprotocols: []string{"berth.v1.json"},
		})
		cancel()
		if err == nil {
			go func() { // answer the server's pings
				for {
					if _, _, err := c.Read(context.Background()); err != nil {
						return
					}
				}
			}()
			return func() { _ = c.CloseNow() }, 0, ""
		}
		if res == nil {
			return nil, 0, err.Error()
		}
		body, _ := io.ReadAll(res.Body)
		return nil, res.StatusCode, string(body)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/workspaces/"+ws+"/events", nil)
	req.Header = bearer(token)
	res, err := client.Do(req)
	if err != nil {
		cancel()
		return nil, 0, err.Error()
	}
	if res.StatusCode == http.StatusOK {
		return func() { cancel(); _ = res.Body.Close() }, 0, ""
	}
	body, _ := io.ReadAll(res.Body)
	_ = res.Body.Close()
	cancel()
	return nil, res.StatusCode, string(body)
}

// peakRSS reads a process's peak resident set (VmHWM), in bytes.
func peakRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}
