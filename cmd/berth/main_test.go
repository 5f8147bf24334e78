package main_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "berth-bin-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "berth")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		panic("go build: " + err.Error() + "\n" + string(out))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// berth runs the binary to completion with no BERTH_* variables set.
func berth(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), binary, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return string(out), exit.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(out), 0
}

func TestVersionAndUsage(t *testing.T) {
	t.Parallel()
	if out, code := berth(t, "version"); code != 0 || !strings.HasPrefix(out, "berth ") {
		t.Errorf("version: %d %q", code, out)
	}
	if out, code := berth(t); code != 2 || !strings.Contains(out, "usage: berth") {
		t.Errorf("no command: %d %q", code, out)
	}
	if out, code := berth(t, "frobnicate"); code != 2 || !strings.Contains(out, `unknown command "frobnicate"`) {
		t.Errorf("unknown command: %d %q", code, out)
	}
	out, code := berth(t, "serve", "--help")
	if code != 0 {
		t.Errorf("serve --help exited %d", code)
	}
	for _, want := range []string{"--addr", "BERTH_ADDR", "--workspace-root", "BERTH_WORKSPACE_ROOT", "--allowed-origins"} {
		if !strings.Contains(out, want) {
			t.Errorf("serve --help lacks %s", want)
		}
	}
	out, code = berth(t, "serve", "--log-format", "xml", "--addr", "nonsense")
	if code == 0 || !strings.Contains(out, "--log-format") || !strings.Contains(out, "BERTH_LOG_FORMAT") || !strings.Contains(out, "--addr") {
		t.Errorf("bad flags: %d %q", code, out)
	}
}

func TestMigrate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	out, code := berth(t, "migrate", "--data-dir", dir)
	if code != 0 || !strings.Contains(out, "schema version") {
		t.Fatalf("migrate: %d %q", code, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "berth.db")); err != nil {
		t.Fatal(err)
	}
	if out2, code := berth(t, "migrate", "--data-dir", dir); code != 0 || out2 != out {
		t.Errorf("second migrate: %d %q (first %q)", code, out2, out)
	}
}

func TestHealthcheckFailsWithoutServer(t *testing.T) {
	t.Parallel()
	if out, code := berth(t, "healthcheck", "--addr", "127.0.0.1:1", "--timeout", "1s"); code != 1 || !strings.Contains(out, "not healthy") {
		t.Errorf("healthcheck without a server: %d %q", code, out)
	}
}

// serverProcess is `berth serve` running as a child process.
type serverProcess struct {
	cmd  *exec.Cmd
	addr string

	mu    sync.Mutex
	lines []map[string]any
	done  chan struct{}
}

// within is how long a test may wait for a process to get somewhere: most
// of what is left of the test's deadline, so a loaded machine slows the
// test rather than fails it.
func within(t *testing.T) time.Duration {
	if d, ok := t.Deadline(); ok {
		return max(time.Until(d)*3/4, 30*time.Second)
	}
	return 5 * time.Minute
}

func startServe(t *testing.T) *serverProcess {
	t.Helper()
	return startServeWith(t, t.TempDir())
}

// startServeWith starts `berth serve` on dataDir with extra flags.
func startServeWith(t *testing.T, dataDir string, extra ...string) *serverProcess {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"serve", "--addr", "127.0.0.1:0", "--admin-addr", "", "--data-dir", dataDir}, extra...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &serverProcess{cmd: cmd, done: make(chan struct{})}
	addr := make(chan string, 1)
	go func() {
		defer close(p.done)
		scanner := bufio.NewScanner(stderr)
		for scanner.Scan() {
			var line map[string]any
			if err := json.Unmarshal(scanner.Bytes(), &line); err != nil {
				t.Errorf("log line is not JSON: %q", scanner.Text())
				continue
			}
			p.mu.Lock()
			p.lines = append(p.lines, line)
			p.mu.Unlock()
			if line["msg"] == "serving" {
				addr <- line["addr"].(string)
			}
		}
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	select {
	case p.addr = <-addr:
	case <-time.After(within(t)):
		t.Fatal("berth serve did not log its address")
	}
	return p
}

func (p *serverProcess) logLines() []map[string]any {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]map[string]any(nil), p.lines...)
}

// TestGracefulShutdown sends SIGTERM while a request is half-way through its
// body: the request completes, the process exits 0, and the request was
// logged once with its request id.
func TestGracefulShutdown(t *testing.T) {
	t.Parallel()
	p := startServe(t)
	if out, code := berth(t, "healthcheck", "--addr", p.addr); code != 0 {
		t.Fatalf("healthcheck: %d %q", code, out)
	}

	body, writer := io.Pipe()
	req, err := http.NewRequest(http.MethodPost, "http://"+p.addr+"/berth.v1.AuthService/Register", body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Request-Id", "in-flight-1")
	type result struct {
		status int
		body   string
		err    error
	}
	results := make(chan result, 1)
	go func() {
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			results <- result{err: err}
			return
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		results <- result{status: res.StatusCode, body: string(b)}
	}()
	if _, err := io.WriteString(writer, `{"email":"late@example.com",`); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // the request is now being read
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // shutdown has begun
	if _, err := io.WriteString(writer, `"password":"correct horse battery"}`); err != nil {
		t.Fatal(err)
	}
	writer.Close()

	r := <-results
	if r.err != nil || r.status != http.StatusOK || !strings.Contains(r.body, "access_token") {
		t.Fatalf("in-flight request: %d %q %v", r.status, r.body, r.err)
	}
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("berth serve exit: %v", err)
	}
	<-p.done
	var logged, shutdown int
	for _, line := range p.logLines() {
		if line["msg"] == "request" && line["request_id"] == "in-flight-1" {
			logged++
			if line["path"] != "/berth.v1.AuthService/Register" || line["status"] != float64(200) {
				t.Errorf("request log line = %v", line)
			}
		}
		if line["msg"] == "shutting down" {
			shutdown++
		}
	}
	if logged != 1 || shutdown != 1 {
		t.Errorf("request logged %d times, shutdown logged %d times", logged, shutdown)
	}
}
