package cli_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
	"github.com/berthhq/berth/internal/gen/berth/v1/berthv1connect"
	"github.com/berthhq/berth/internal/testsvc"
)

// testAPIKey is the Anthropic key the test servers hand the stand-in claude.
const testAPIKey = "sk-ant-test-cli-0123456789"

const password = "correct horse battery"

// The berth binary, built once per test process (the stand-in claude
// comes from testsvc.FakeClaude).
var bins struct {
	once  sync.Once
	berth string
	err   error
}

func binaries(t *testing.T) (berth, claude string) {
	t.Helper()
	bins.once.Do(func() {
		dir, err := os.MkdirTemp("", "berth-cli-test-")
		if err != nil {
			bins.err = err
			return
		}
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		bins.berth = filepath.Join(dir, "berth")
		for _, b := range []struct{ out, pkg string }{{bins.berth, "./cmd/berth"}} {
			cmd := exec.Command("go", "build", "-o", b.out, b.pkg)
			cmd.Dir = root
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				bins.err = fmt.Errorf("go build %s: %w\n%s", b.pkg, err, out)
				return
			}
		}
	})
	if bins.err != nil {
		t.Fatal(bins.err)
	}
	return bins.berth, testsvc.FakeClaude(t)
}

func TestMain(m *testing.M) {
	code := m.Run()
	if bins.berth != "" {
		_ = os.RemoveAll(filepath.Dir(bins.berth)) // the binary's temp dir
	}
	os.Exit(code)
}

// within is how long a wait in a test may take: most of what is left
// before the test's deadline, so a loaded machine slows tests, not fails them.
func within(t *testing.T) time.Duration {
	if d, ok := t.Deadline(); ok {
		return max(time.Until(d)*3/4, 30*time.Second)
	}
	return 5 * time.Minute
}

// server is a `berth serve` process on the process runtime with the
// stand-in claude.
type server struct {
	t       *testing.T
	dataDir string
	addr    string // host:port, kept across restarts
	url     string
	cmd     *exec.Cmd
	done    chan struct{}
	// flags and env are added to berth serve's flags and environment.
	flags, env []string
}

func startServer(t *testing.T) *server {
	t.Helper()
	s := &server{t: t, dataDir: t.TempDir(), addr: "127.0.0.1:0"}
	s.start()
	t.Cleanup(s.stop)
	return s
}

// start runs berth serve on s.addr and waits until it logs "serving".
func (s *server) start() {
	t := s.t
	t.Helper()
	berth, claude := binaries(t)
	cmd := exec.Command(berth, "serve", "--runtime", "process", "--data-dir", s.dataDir,
		"--addr", s.addr, "--admin-addr", "off", "--claude-path", claude, "--shutdown-timeout", "15s",
		"--rate-anonymous", "0", "--rate-auth-failures", "0", "--rate-principal", "0", "--rate-task-create", "0",
		"--max-streams-per-user", "0", "--max-running-per-user", "0", "--max-queued-per-user", "0", "--max-workspaces-per-user", "0")
	cmd.Args = append(cmd.Args, s.flags...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + s.dataDir, "BERTH_ANTHROPIC_API_KEY=" + testAPIKey}, s.env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.cmd, s.done = cmd, make(chan struct{})
	addr := make(chan string, 1)
	go func() {
		defer close(s.done)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var line map[string]any
			if json.Unmarshal(sc.Bytes(), &line) == nil && line["msg"] == "serving" {
				addr <- line["addr"].(string)
			}
		}
		_ = cmd.Wait() // the exit status is the test's business only through its effects
	}()
	select {
	case s.addr = <-addr:
	case <-s.done:
		t.Fatal("berth serve exited before serving")
	case <-time.After(within(t)):
		t.Fatal("berth serve did not log its address")
	}
	s.url = "http://" + s.addr
}

// stop ends the server with SIGTERM and waits for it; idempotent.
func (s *server) stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM) // it may have exited already
	select {
	case <-s.done:
	case <-time.After(within(s.t)):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd = nil
}

// register signs up an account through the API (the CLI has no sign-up).
func (s *server) register(t *testing.T, email string) {
	t.Helper()
	c := berthv1connect.NewAuthServiceClient(connect.NewClient(connecthttp.NewTransport(http.DefaultClient, s.url)))
	if _, err := c.Register(t.Context(), &berthv1.RegisterRequest{Email: email, Password: password}); err != nil {
		t.Fatalf("Register %s: %v", email, err)
	}
}

// user is one person's CLI: their own config directory.
type user struct {
	t      *testing.T
	config string
	env    []string
}

func newUser(t *testing.T, extraEnv ...string) *user {
	home := t.TempDir()
	return &user{t: t, config: filepath.Join(home, "config"), env: append([]string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + home, "XDG_CONFIG_HOME=" + filepath.Join(home, "config"),
	}, extraEnv...)}
}

type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// run runs the built berth with stdin and waits for it.
func (u *user) run(stdin string, args ...string) result {
	u.t.Helper()
	berth, _ := binaries(u.t)
	ctx, cancel := context.WithTimeout(u.t.Context(), within(u.t))
	defer cancel()
	cmd := exec.CommandContext(ctx, berth, args...)
	cmd.Env = u.env
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	res := result{stdout: out.String(), stderr: errb.String()}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		res.code = exit.ExitCode()
	case err != nil:
		u.t.Fatalf("berth %q: %v", args, err)
	}
	return res
}

// ok runs berth and fails the test unless it exits 0.
func (u *user) ok(args ...string) result {
	u.t.Helper()
	res := u.run("", args...)
	if res.code != 0 {
		u.t.Fatalf("berth %q: %s", args, res)
	}
	return res
}

func (u *user) login(s *server, email string) {
	u.t.Helper()
	res := u.run(password+"\n", "login", "--server", s.url, "--email", email, "--password-stdin")
	if res.code != 0 || !strings.Contains(res.stderr, "Logged in to "+s.url+" as "+email) {
		u.t.Fatalf("login: %s", res)
	}
}

// parse reads a command's -o json output into m: one protojson document.
func parse(t *testing.T, out string, m proto.Message) {
	t.Helper()
	if err := protojson.Unmarshal([]byte(out), m); err != nil {
		t.Fatalf("-o json output does not parse: %v\n%s", err, out)
	}
}

// taskIDFrom reads the id from the "Task <id> queued." line.
func taskIDFrom(t *testing.T, stderr string) string {
	t.Helper()
	for _, line := range strings.Split(stderr, "\n") {
		if id, ok := strings.CutPrefix(line, "Task "); ok {
			if id, ok := strings.CutSuffix(id, " queued."); ok {
				return id
			}
		}
	}
	t.Fatalf("no task id in %q", stderr)
	return ""
}
