package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
)

// The stream benchmarks quoted in the README: memory per idle stream
// connection, and delivery latency from a log line's write to its receipt.
// Both run berth as a child process (`berth serve`, built from cmd/berth
// once per test binary), so that the clients' goroutines, buffers and
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

var berthBuild struct {
	once sync.Once
	path string
	err  error
}

// berthBinary builds cmd/berth once per test binary.
func berthBinary(tb testing.TB) string {
	tb.Helper()
	berthBuild.once.Do(func() {
		dir, err := os.MkdirTemp("", "berth-bench-")
		if err != nil {
			berthBuild.err = err
			return
		}
		berthBuild.path = filepath.Join(dir, "berth")
		_, file, _, _ := runtime.Caller(0)
		cmd := exec.Command("go", "build", "-o", berthBuild.path, ".")
		cmd.Dir = filepath.Join(filepath.Dir(file), "..", "..", "cmd", "berth")
		if out, err := cmd.CombinedOutput(); err != nil {
			berthBuild.err = fmt.Errorf("%w\n%s", err, out)
		}
	})
	if berthBuild.err != nil {
		tb.Fatalf("building berth: %v", berthBuild.err)
	}
	return berthBuild.path
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
func startBerth(tb testing.TB, flags ...string) *berthProcess {
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
		"--runtime", "process", "--claude-path", fakeClaudeBinary(tb),
		"--shutdown-timeout", "5s",
		// Warnings only: the trace shares stderr with the log.
		"--log-level", "warn",
	}, flags...)
	p.cmd = exec.Command(berthBinary(tb), args...)
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
	deadline := time.Now().Add(30 * time.Second)
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
			tb.Fatalf("berth not ready within 30s: %v\n%s", err, p.stderrTail())
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

func newBenchEnv(b *testing.B, flags ...string) *benchEnv {
	b.Helper()
	p := startBerth(b, flags...)
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

// cancel cancels a task, unless it has ended.
func (e *benchEnv) cancel(b *testing.B, id string) {
	b.Helper()
	if _, err := e.c.Task.CancelTask(e.ctx, &berthv1.CancelTaskRequest{Id: id}); err != nil && !strings.Contains(err.Error(), "finished") {
		b.Logf("cancel task %s: %v", id, err)
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
// out of berth's figures.
func BenchmarkIdleStreamMemory(b *testing.B) {
	b.Run("sse", func(b *testing.B) {
		benchIdle(b, "sse", func(ctx context.Context, e *benchEnv, task string, client *http.Client) (func(), error) {
			return openIdleSSE(ctx, client, e.p.URL+"/api/v1/tasks/"+task+"/logs/stream", e.token)
		})
	})
	b.Run("websocket", func(b *testing.B) {
		benchIdle(b, "websocket", func(ctx context.Context, e *benchEnv, task string, client *http.Client) (func(), error) {
			return openIdleWS(ctx, client, "ws"+strings.TrimPrefix(e.p.URL, "http")+"/ws", e.token, "task:"+task)
		})
	})
}

func benchIdle(b *testing.B, transport string, open func(context.Context, *benchEnv, string, *http.Client) (func(), error)) {
	e := newBenchEnv(b)
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
