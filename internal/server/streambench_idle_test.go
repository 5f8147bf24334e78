package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"
	"github.com/coder/websocket"

	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
	"github.com/berthhq/berth/internal/gen/berth/v1/berthv1connect"
)

const (
	// idleConns is how many idle streams BenchmarkIdleStreamMemory opens.
	idleConns = 10000
	// idleBudget bounds one idle-memory measurement, start to end.
	idleBudget = 55 * time.Second
	// openers is how many connections are being opened at once.
	openers = 50
)

// openAll opens n streams with open, openers at a time, and returns their
// closers; on the first error it closes those it opened.
func openAll(ctx context.Context, n int, open func(context.Context) (func(), error)) ([]func(), error) {
	closers := make([]func(), n)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, openers)
	for range openers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				c, err := open(ctx)
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
	err := errors.Join(<-errs, ctx.Err())
	if err != nil {
		closeAll(closers)
		return nil, err
	}
	return closers, nil
}

// closeAll runs the closers, openers at a time.
func closeAll(closers []func()) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range openers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(closers) {
					return
				}
				if closers[i] != nil {
					closers[i]()
				}
			}
		})
	}
	wg.Wait()
}

// openIdleSSE opens an SSE stream and reads up to the end of its first
// event, so that the stream is served; then it reads no more.
func openIdleSSE(ctx context.Context, client *http.Client, url, token string) (func(), error) {
	ctx, cancel := context.WithCancel(ctx)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		cancel()
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := client.Do(req)
	if err != nil {
		cancel()
		return nil, err
	}
	closeStream := func() {
		cancel()
		_ = res.Body.Close()
	}
	if res.StatusCode != http.StatusOK {
		closeStream()
		return nil, fmt.Errorf("status %d", res.StatusCode)
	}
	br := bufio.NewReaderSize(res.Body, 1024)
	data := false
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			closeStream()
			return nil, fmt.Errorf("before the first event: %w", err)
		}
		if bytes.HasPrefix(line, []byte("data:")) {
			data = true
		} else if data && len(bytes.TrimSpace(line)) == 0 {
			return closeStream, nil
		}
	}
}

// openIdleWS opens a WebSocket, subscribes to channel and reads up to its
// first event; then a goroutine reads what comes (the server's pings,
// which need an answer) until the closer runs.
func openIdleWS(ctx context.Context, client *http.Client, url, token, channel string) (func(), error) {
	ctx, cancel := context.WithCancel(ctx)
	c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{
		HTTPClient: client, HTTPHeader: http.Header{"Authorization": {"Bearer " + token}},
		Subprotocols: []string{"berth.v1.json"},
	})
	if err != nil {
		cancel()
		return nil, err
	}
	fail := func(err error) (func(), error) {
		cancel()
		_ = c.CloseNow()
		return nil, err
	}
	sub, _ := json.Marshal(wsMessage{Type: "subscribe", ID: "1", Channel: channel})
	if err := c.Write(ctx, websocket.MessageText, sub); err != nil {
		return fail(err)
	}
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			return fail(fmt.Errorf("before the first event: %w", err))
		}
		var m wsMessage
		if err := json.Unmarshal(b, &m); err != nil {
			return fail(err)
		}
		if m.Type == "error" {
			return fail(fmt.Errorf("subscribe: %s", m.Data))
		}
		if m.Type == "event" {
			break
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if _, _, err := c.Read(ctx); err != nil {
				return
			}
		}
	}()
	return func() {
		cancel()
		_ = c.CloseNow()
		<-done
	}, nil
}

// openIdleConnect opens a StreamTaskLogs server stream over client (HTTP/2
// without TLS, many streams to a connection) and reads its first message;
// then it reads no more.
func openIdleConnect(ctx context.Context, client berthv1connect.TaskServiceClient, token, task string) (func(), error) {
	ctx, cancel := context.WithCancel(as(ctx, token))
	st, err := client.StreamTaskLogs(ctx, &berthv1.StreamTaskLogsRequest{TaskId: task})
	if err != nil {
		cancel()
		return nil, err
	}
	if _, err := st.Receive(); err != nil {
		cancel()
		_ = st.Close()
		return nil, fmt.Errorf("before the first message: %w", err)
	}
	return func() {
		cancel()
		_ = st.Close()
	}, nil
}

// BenchmarkIdleStreamMemory measures what an idle live stream costs berth:
// 10,000 clients follow the log of a running task that writes nothing (the
// stand-in claude's [hang] mode), over SSE or over the WebSocket (one
// subscription each) or as Connect server streams (StreamTaskLogs over
// HTTP/2 without TLS), and berth's memory is read from its /metrics before
// and after they connect. Per connection it reports the live heap (marked
// by a garbage collection berth is made to run, see collect), the
// goroutine stacks, the resident set (what the OS gives the process: at
// the default GOGC=100 the heap may grow to twice the live heap before the
// next collection) and the goroutines. The clients run in the test binary,
// out of berth's figures. The trace counts the live heap in whole MiB,
// about 100 bytes per connection at 10,000. Run it with -benchtime=1x: a
// second round would start from the resident set the first left, which
// the OS does not take back at once.
func BenchmarkIdleStreamMemory(b *testing.B) {
	bin := berthBinary(b)
	b.Run("sse", func(b *testing.B) {
		benchIdle(b, bin, "sse", func(ctx context.Context, e *benchEnv, task string, client *http.Client) (func(), error) {
			return openIdleSSE(ctx, client, e.p.URL+"/api/v1/tasks/"+task+"/logs/stream", e.token)
		})
	})
	b.Run("websocket", func(b *testing.B) {
		benchIdle(b, bin, "websocket", func(ctx context.Context, e *benchEnv, task string, client *http.Client) (func(), error) {
			return openIdleWS(ctx, client, "ws"+strings.TrimPrefix(e.p.URL, "http")+"/ws", e.token, "task:"+task)
		})
	})
	b.Run("connect", func(b *testing.B) {
		var tasks berthv1connect.TaskServiceClient
		var once sync.Once
		benchIdle(b, bin, "connect", func(ctx context.Context, e *benchEnv, task string, _ *http.Client) (func(), error) {
			once.Do(func() {
				tasks = berthv1connect.NewTaskServiceClient(connect.NewClient(connecthttp.NewTransport(h2cStreamClient(), e.p.URL)))
			})
			return openIdleConnect(ctx, tasks, e.token, task)
		})
	})
}

// h2cStreamClient is an HTTP/2 client without TLS for many long streams:
// no overall timeout, and a new connection whenever one carries as many
// streams as the server allows.
func h2cStreamClient() *http.Client {
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: p, DisableCompression: true}}
}

func benchIdle(b *testing.B, bin, transport string, open func(context.Context, *benchEnv, string, *http.Client) (func(), error)) {
	e := newBenchEnv(b, bin)
	task := e.task(b, "idle [hang]", berthv1.TaskStatus_TASK_STATUS_RUNNING)
	defer e.cancel(b, task)
	client := streamClient()
	defer client.CloseIdleConnections()
	series := `berth_stream_connections{transport="` + transport + `"}`
	var before, after memSample
	var opened time.Duration
	for b.Loop() {
		ctx, cancel := context.WithTimeout(b.Context(), idleBudget)
		var err error
		if before, err = e.p.sampleMemory(ctx); err != nil {
			cancel()
			b.Fatal(err)
		}
		start := time.Now()
		closers, err := openAll(ctx, idleConns, func(ctx context.Context) (func(), error) { return open(ctx, e, task, client) })
		if err != nil {
			cancel()
			b.Fatalf("opening %d %s streams: %v\n%s", idleConns, transport, err, e.p.stderrTail())
		}
		opened = time.Since(start)
		err = e.p.waitSeries(ctx, series, idleConns)
		if err == nil {
			after, err = e.p.sampleMemory(ctx)
		}
		closeAll(closers)
		if err == nil {
			err = e.p.waitSeries(ctx, series, 0)
		}
		cancel()
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric((after.live-before.live)/idleConns, "heap-B/conn")
	b.ReportMetric((after.stack-before.stack)/idleConns, "stack-B/conn")
	b.ReportMetric((after.rss-before.rss)/idleConns, "rss-B/conn")
	b.ReportMetric((after.goroutines-before.goroutines)/idleConns, "goroutines/conn")
	b.Logf("%d idle %s streams opened in %v; berth before: live heap %.1f MiB, stacks %.1f MiB, RSS %.1f MiB, %.0f goroutines; after: %.1f MiB, %.1f MiB, %.1f MiB, %.0f",
		idleConns, transport, opened.Round(time.Millisecond),
		before.live/(1<<20), before.stack/(1<<20), before.rss/(1<<20), before.goroutines,
		after.live/(1<<20), after.stack/(1<<20), after.rss/(1<<20), after.goroutines)
}

// idleStackStreams is how many idle Connect streams
// TestIdleConnectStreamStack opens: enough that the few goroutines of
// their connections are small beside them.
const idleStackStreams = 300

// TestIdleConnectStreamStack: an idle Connect server stream keeps its
// goroutine on an 8 KiB stack, not 16. The goroutine that serves a
// StreamTaskLogs stays parked under the middleware, the interceptors and
// the handler for as long as the stream is open, and the runtime halves a
// parked goroutine's stack at a collection only while it uses less than a
// quarter of it: berth's frames on that path must stay under ~3.3 KB
// (TestStreamStackDepth counts them; this measures their bytes, which a
// few more locals in one frame can push over). berth runs as a child
// process, so that only its stacks are counted; the streams share HTTP/2
// connections, so that each adds its handler's goroutine alone.
func TestIdleConnectStreamStack(t *testing.T) {
	t.Parallel()
	e := newBenchEnv(t, berthBinary(t))
	task := e.task(t, "idle [hang]", berthv1.TaskStatus_TASK_STATUS_RUNNING)
	defer e.cancel(t, task)
	ctx, cancel := context.WithTimeout(t.Context(), within(t))
	defer cancel()
	before, err := e.p.sampleMemory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	client := h2cStreamClient()
	defer client.CloseIdleConnections()
	tasks := berthv1connect.NewTaskServiceClient(connect.NewClient(connecthttp.NewTransport(client, e.p.URL)))
	closers, err := openAll(ctx, idleStackStreams, func(ctx context.Context) (func(), error) {
		return openIdleConnect(ctx, tasks, e.token, task)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll(closers)
	if err := e.p.waitSeries(ctx, `berth_stream_connections{transport="connect"}`, idleStackStreams); err != nil {
		t.Fatal(err)
	}
	after, err := e.p.sampleMemory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	perStream := (after.stack - before.stack) / idleStackStreams
	t.Logf("%d idle streams: %.0f bytes of stack each, %.2f goroutines each", idleStackStreams, perStream, (after.goroutines-before.goroutines)/idleStackStreams)
	if perStream > 12<<10 {
		t.Errorf("an idle Connect stream holds %.0f bytes of stack, want about 8 KiB (a 16 KiB stack: its parked frames use a quarter of it or more)", perStream)
	}
}
