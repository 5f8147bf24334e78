package server_test

import (
	"bufio"
	"bytes"
	"context"
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
	"syscall"
	"testing"
	"time"

	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
	"github.com/berthhq/berth/internal/testsvc"
)

// berthBinary builds cmd/berth into a temporary directory of b's.
func berthBinary(b testing.TB) string {
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

func newBenchEnv(b testing.TB, bin string, flags ...string) *benchEnv {
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
func (e *benchEnv) task(b testing.TB, prompt string, want berthv1.TaskStatus) string {
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
func (e *benchEnv) cancel(b testing.TB, id string) {
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
