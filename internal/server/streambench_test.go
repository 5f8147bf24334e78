package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
	"github.com/berthhq/berth/internal/testsvc"
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

const (
	// idleConns is how many idle streams BenchmarkIdleStreamMemory opens.
	idleConns = 10000
	// idleBudget bounds one idle-memory measurement, start to end.
	idleBudget = 55 * time.Second
	// openers is how many connections are being opened at once.
	openers = 50
)

// berthBinary builds cmd/berth into a temporary directory of b's.
func berthBinary(b *testing.B) string {
	b.Helper()
	path := filepath.Join(b.TempDir(), "berth")
	_, file, _, _ := runtime.Caller(0)
	// Twice at most: a build racing another go command on the same build
	// cache has been seen to fail once with "could not import".
	var err error
	for range 2 {
		cmd := exec.Command("go", "build", "-o", path, ".")
		cmd.Dir = filepath.Join(filepath.Dir(file), "..", "..", "cmd", "berth")
		var out []byte
		if out, err = cmd.CombinedOutput(); err == nil {
			return path
		}
		err = fmt.Errorf("%w\n%s", err, out)
	}
	b.Fatalf("building berth: %v", err)
	return ""
}

// berthProcess is `berth serve` running as a child process on loopback,
// with the process runtime, the stand-in claude and GODEBUG=gctrace=1:
// berth serves no endpoint that runs or reports a garbage collection, and
// the trace gives the heap marked live by each one.
type berthProcess struct {
	*testServer // DataDir, URL, AdminURL, Root; Server is nil
	cmd         *exec.Cmd
	exited      chan struct{}

	mu   sync.Mutex
	gc   gcCycle  // the last collection traced
	tail []string // the last lines of stderr, for failures
	part []byte   // an unfinished stderr line
}

// gcCycle is one garbage collection of the child, as gctrace reports it.
type gcCycle struct {
	n    int   // its number, from 1
	live int64 // the heap marked live, in bytes (the trace counts whole MiB)
}

// gcLine matches a gctrace line: "gc 12 @3.4s 1%: … 10->11->5 MB, 11 MB goal, …".
var gcLine = regexp.MustCompile(`^gc (\d+) @.* \d+->\d+->(\d+) MB, \d+ MB goal`)

// startBerth starts berth with extra flags and stops it when the benchmark
// ends. Its API listens on a free port of 127.0.0.1, its /metrics on
// another; it keeps the environment minus the BERTH_ settings and the
// runtime's tuning variables, so the figures are those of the defaults.
func startBerth(tb testing.TB, bin string, flags ...string) *berthProcess {
	tb.Helper()
	dir := tb.TempDir()
	api, admin := freeLoopbackAddr(tb), freeLoopbackAddr(tb)
	p := &berthProcess{
		testServer: &testServer{
			DataDir:  filepath.Join(dir, "data"),
			URL:      "http://" + api,
			AdminURL: "http://" + admin,
			Root:     filepath.Join(dir, "workspaces"),
		},
		exited: make(chan struct{}),
	}
	args := append([]string{"serve",
		"--data-dir", p.DataDir, "--workspace-root", p.Root,
		"--addr", api, "--admin-addr", admin,
		"--runtime", "process", "--claude-path", testsvc.FakeClaude(tb),
		"--shutdown-timeout", "5s",
		// Warnings only: the trace shares stderr with the log.
		"--log-level", "warn",
	}, flags...)
	p.cmd = exec.Command(bin, args...)
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "BERTH_") && !slices.Contains([]string{"GOGC", "GOMEMLIMIT", "GODEBUG", "GOMAXPROCS"}, name) {
			p.cmd.Env = append(p.cmd.Env, kv)
		}
	}
	p.cmd.Env = append(p.cmd.Env, "BERTH_ANTHROPIC_API_KEY="+testAPIKey, "GODEBUG=gctrace=1")
	p.cmd.Stdout, p.cmd.Stderr = io.Discard, p
	p.cmd.WaitDelay = 5 * time.Second
	// SIGTERM if the test binary dies: berth shuts down and stops its
	// tasks' processes.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	started := make(chan error, 1)
	go func() {
		// The parent-death signal is sent when the thread that started
		// the process ends: this goroutine keeps its thread until berth
		// is gone.
		runtime.LockOSThread()
		if err := p.cmd.Start(); err != nil {
			started <- err
			close(p.exited)
			return
		}
		started <- nil
		_ = p.cmd.Wait()
		close(p.exited)
	}()
	if err := <-started; err != nil {
		tb.Fatalf("starting berth: %v", err)
	}
	tb.Cleanup(p.stop)
	wait := within(tb)
	deadline := time.Now().Add(wait)
	for {
		select {
		case <-p.exited:
			tb.Fatalf("berth exited: %s", p.stderrTail())
		case <-time.After(20 * time.Millisecond):
		}
		res, err := http.Get(p.URL + "/ready")
		if err == nil {
			_ = res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("berth not ready within %s: %v\n%s", wait, err, p.stderrTail())
		}
	}
}

// freeLoopbackAddr returns a 127.0.0.1 address nothing listens on now.
func freeLoopbackAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// stop shuts berth down (SIGTERM, as an orchestrator would) and waits for
// it; after 20s it is killed.
func (p *berthProcess) stop() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// Write takes berth's stderr: it notes each traced collection and keeps
// the last lines.
func (p *berthProcess) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.part = append(p.part, b...)
	for {
		i := bytes.IndexByte(p.part, '\n')
		if i < 0 {
			return len(b), nil
		}
		line := string(p.part[:i])
		p.part = p.part[i+1:]
		if m := gcLine.FindStringSubmatch(line); m != nil {
			n, _ := strconv.Atoi(m[1])
			mb, _ := strconv.ParseInt(m[2], 10, 64)
			if n > p.gc.n {
				p.gc = gcCycle{n: n, live: mb << 20}
			}
			continue
		}
		if p.tail = append(p.tail, line); len(p.tail) > 20 {
			p.tail = p.tail[1:]
		}
	}
}

func (p *berthProcess) stderrTail() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.tail, "\n")
}

func (p *berthProcess) lastGC() gcCycle {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.gc
}

// collect makes berth collect garbage twice and returns the second
// collection, whose live heap is berth's heap as it stands (the first may
// have started before the call). Nothing asks a Go process from outside to
// collect, so it makes garbage: scrapes of /metrics, which allocate the
// whole exposition, until the collections are traced.
func (p *berthProcess) collect(ctx context.Context) (gcCycle, error) {
	want := p.lastGC().n + 2
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for ctx.Err() == nil && p.lastGC().n < want {
				if _, err := p.metrics(ctx); err != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	if gc := p.lastGC(); gc.n >= want {
		return gc, nil
	}
	if ctx.Err() != nil {
		return gcCycle{}, fmt.Errorf("waiting for two garbage collections: %w", ctx.Err())
	}
	_, err := p.metrics(ctx)
	return gcCycle{}, fmt.Errorf("scraping /metrics to make garbage: %v", err)
}

// metrics reads every sample of the admin listener's /metrics, by series
// as Prometheus writes it (name and labels).
func (p *berthProcess) metrics(ctx context.Context) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.AdminURL+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		i := strings.LastIndexByte(line, ' ')
		if i < 0 || strings.HasPrefix(line, "#") {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out, sc.Err()
}

// waitSeries waits until series has value want.
func (p *berthProcess) waitSeries(ctx context.Context, series string, want float64) error {
	for {
		m, err := p.metrics(ctx)
		if err != nil {
			return err
		}
		if m[series] == want {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s is %v, want %v: %w", series, m[series], want, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// benchEnv is a berth process, an account and a workspace of it.
type benchEnv struct {
	p     *berthProcess
	c     clients
	token string
	ctx   context.Context // carries the token
	ws    string
}

func newBenchEnv(b *testing.B, bin string, flags ...string) *benchEnv {
	b.Helper()
	// One account opens every stream here: no per-user stream quota and no
	// request budget, which stream opens spend (quotabench_test.go measures
	// those), unless flags set them.
	p := startBerth(b, bin, append([]string{"--max-streams-per-user", "0", "--rate-principal", "0"}, flags...)...)
	c := p.clients(protocols[0])
	token := register(b, c, "bench@example.com").GetTokens().GetAccessToken()
	ctx := as(b.Context(), token)
	ws, err := c.Workspace.CreateWorkspace(ctx, &berthv1.CreateWorkspaceRequest{Name: "bench", Path: p.mkdir(b, "bench")})
	if err != nil {
		b.Fatal(err)
	}
	return &benchEnv{p: p, c: c, token: token, ctx: ctx, ws: ws.GetWorkspace().GetId()}
}

// task creates a claude_chat task and waits until its status is want.
func (e *benchEnv) task(b *testing.B, prompt string, want berthv1.TaskStatus) string {
	b.Helper()
	res, err := e.c.Task.CreateTask(e.ctx, &berthv1.CreateTaskRequest{WorkspaceId: e.ws, Type: berthv1.TaskType_TASK_TYPE_CLAUDE_CHAT, Prompt: prompt})
	if err != nil {
		b.Fatal(err)
	}
	id := res.GetTask().GetId()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, err := e.c.Task.GetTask(e.ctx, &berthv1.GetTaskRequest{Id: id})
		if err != nil {
			b.Fatal(err)
		}
		if s := got.GetTask().GetStatus(); s == want {
			return id
		} else if time.Now().After(deadline) {
			b.Fatalf("task %q is %v after 30s, want %v", prompt, s, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// cancel cancels a task.
func (e *benchEnv) cancel(b *testing.B, id string) {
	b.Helper()
	if _, err := e.c.Task.CancelTask(e.ctx, &berthv1.CancelTaskRequest{Id: id}); err != nil {
		b.Fatalf("cancel task %s: %v", id, err)
	}
}

// streamClient is the clients' HTTP client: one transport, no limit on
// connections to the host, no timeout (streams last).
func streamClient() *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: -1, DisableCompression: true}}
}

// memSample is what berth holds at one moment.
type memSample struct {
	live, stack, rss, goroutines float64
}

// sampleMemory collects berth's garbage twice, then reads its memory.
func (p *berthProcess) sampleMemory(ctx context.Context) (memSample, error) {
	gc, err := p.collect(ctx)
	if err != nil {
		return memSample{}, err
	}
	m, err := p.metrics(ctx)
	if err != nil {
		return memSample{}, err
	}
	return memSample{
		live:       float64(gc.live),
		stack:      m["go_memstats_stack_inuse_bytes"],
		rss:        m["process_resident_memory_bytes"],
		goroutines: m["go_goroutines"],
	}, nil
}

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

// BenchmarkIdleStreamMemory measures what an idle live stream costs berth:
// 10,000 clients follow the log of a running task that writes nothing (the
// stand-in claude's [hang] mode), over SSE or over the WebSocket (one
// subscription each), and berth's memory is read from its /metrics before
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

// latencyPoint is one load of BenchmarkStreamLatency: a task writes lines
// lines at rate a second to subscribers clients over transport.
type latencyPoint struct {
	transport   string // "sse" or "websocket"
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

// subscriber is what one client of a latency run received.
type subscriber struct {
	lat      []time.Duration // receipt minus write, by stamped line
	first    int64           // the write stamp of the first stamped line (unix ns)
	lastRecv time.Time       // when the last stamped line came
	seq      int64           // the last line's seq
	gaps     int             // lines whose seq did not follow the previous one
	ended    bool            // the end event came
	err      error
}

func (s *subscriber) log(seq, stamp int64, now time.Time) {
	if seq != s.seq+1 {
		s.gaps++
	}
	s.seq = seq
	if stamp <= 0 {
		return
	}
	s.lat = append(s.lat, now.Sub(time.Unix(0, stamp)))
	if s.first == 0 {
		s.first = stamp
	}
	s.lastRecv = now
}

// numberAfter returns the whole number just after the first key in b, or
// -1.
func numberAfter(b, key []byte) int64 {
	i := bytes.Index(b, key)
	if i < 0 {
		return -1
	}
	return leadingNumber(b[i+len(key):])
}

// leadingNumber returns the whole number b starts with, or -1.
func leadingNumber(b []byte) int64 {
	n, digits := int64(0), 0
	for _, c := range b {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int64(c-'0')
		digits++
	}
	if digits == 0 {
		return -1
	}
	return n
}

var (
	sentKey = []byte(" sent ")  // in a stamped line's message
	seqKey  = []byte(`"seq":"`) // in a WebSocket log event (an int64, so a JSON string)
	logKey  = []byte(`"action":"log"`)
	endKey  = []byte(`"action":"end"`)
)

// readSSE reads a task's event stream until its end, calling ready after
// the first event.
func (s *subscriber) readSSE(body io.Reader, ready func()) {
	const (
		none = iota
		logEvent
		endEvent
		otherEvent
	)
	br := bufio.NewReaderSize(body, 64<<10)
	event, seq, stamp := none, int64(-1), int64(-1)
	whole := true // the read starts a line
	for {
		line, err := br.ReadSlice('\n')
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			s.err = fmt.Errorf("after seq %d: %w", s.seq, err)
			return
		}
		start := whole
		whole = err == nil
		if !start { // the rest of a line longer than the buffer
			if n := numberAfter(line, sentKey); n > 0 {
				stamp = n
			}
			continue
		}
		name, value, _ := bytes.Cut(bytes.TrimRight(line, "\n"), []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(name) {
		case "": // a blank line ends an event; a comment has no name either
			if len(value) > 0 || event == none {
				continue
			}
			switch event {
			case logEvent:
				s.log(seq, stamp, time.Now())
			case endEvent:
				s.ended = true
				return
			}
			ready()
			event, seq, stamp = none, -1, -1
		case "event":
			switch string(value) {
			case "log":
				event = logEvent
			case "end":
				event = endEvent
			default:
				event = otherEvent
			}
		case "id":
			seq = leadingNumber(value)
		case "data":
			stamp = numberAfter(value, sentKey)
		}
	}
}

// readWS reads a task channel's events until its end, calling ready after
// the first event.
func (s *subscriber) readWS(ctx context.Context, c *websocket.Conn, ready func()) {
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			s.err = fmt.Errorf("after seq %d: %w", s.seq, err)
			return
		}
		switch {
		case bytes.Contains(b, logKey):
			s.log(numberAfter(b, seqKey), numberAfter(b, sentKey), time.Now())
		case bytes.Contains(b, endKey):
			s.ended = true
			return
		case bytes.Contains(b, []byte(`"type":"error"`)):
			s.err = fmt.Errorf("error frame %s", b)
			return
		}
		if bytes.Contains(b, []byte(`"type":"event"`)) {
			ready()
		}
	}
}

// subscribe connects one subscriber to task id and reads until the end or
// until ctx ends.
func (s *subscriber) subscribe(ctx context.Context, e *benchEnv, client *http.Client, transport, id string, ready func()) {
	defer ready() // also when the connection fails
	switch transport {
	case "sse":
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.p.URL+"/api/v1/tasks/"+id+"/logs/stream", nil)
		if err != nil {
			s.err = err
			return
		}
		req.Header.Set("Authorization", "Bearer "+e.token)
		res, err := client.Do(req)
		if err != nil {
			s.err = err
			return
		}
		defer res.Body.Close()
		if res.StatusCode != http.StatusOK {
			s.err = fmt.Errorf("status %d", res.StatusCode)
			return
		}
		s.readSSE(res.Body, ready)
	case "websocket":
		c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(e.p.URL, "http")+"/ws", &websocket.DialOptions{
			HTTPClient: client, HTTPHeader: http.Header{"Authorization": {"Bearer " + e.token}},
			Subprotocols: []string{"berth.v1.json"},
		})
		if err != nil {
			s.err = err
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(1 << 20)
		sub, _ := json.Marshal(wsMessage{Type: "subscribe", ID: "1", Channel: "task:" + id})
		if err := c.Write(ctx, websocket.MessageText, sub); err != nil {
			s.err = err
			return
		}
		s.readWS(ctx, c, ready)
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
