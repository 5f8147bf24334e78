// Package sandboxtest holds what tests of berth's container runtimes share:
// a behavioural suite every runtime passes (Run), a Docker engine (Engine)
// and a workspace image built locally (Image) for any package's tests, and
// helpers that create workspace containers and remove them when the test
// ends.
package sandboxtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berthhq/berth/internal/sandbox"
)

// Runtime is what the suite drives: the methods the docker and process
// runtimes have in common.
type Runtime interface {
	Create(ctx context.Context, spec sandbox.Spec) (string, error)
	Start(ctx context.Context, id string) error
	Stop(ctx context.Context, id string, timeout time.Duration) error
	Remove(ctx context.Context, id string) error
	Inspect(ctx context.Context, id string) (sandbox.Info, error)
	List(ctx context.Context) ([]sandbox.Info, error)
	Exec(ctx context.Context, id string, spec sandbox.ExecSpec) (int, error)
	StopTagged(ctx context.Context, id, user, tag string) error
	Events(ctx context.Context) (<-chan sandbox.Event, <-chan error)
}

// cleanupTimeout bounds the removal of a test's container after the test.
const cleanupTimeout = 30 * time.Second

// NewSpec returns base completed for a new workspace: a fresh workspace id
// and a new empty project directory (writable by any user, so that a
// container's non-root user can write to it).
func NewSpec(t testing.TB, base sandbox.Spec) sandbox.Spec {
	t.Helper()
	spec := base
	spec.WorkspaceID = "t" + randomHex(t, 8)
	spec.HostPath = t.TempDir()
	// #nosec G302 -- G302: a test file the container user must read or run
	if err := os.Chmod(spec.HostPath, 0o777); err != nil {
		t.Fatal(err)
	}
	return spec
}

// CreateContainer creates a container for a new workspace made from base
// (see NewSpec) and removes it when the test ends.
func CreateContainer(t testing.TB, rt Runtime, base sandbox.Spec) (string, sandbox.Spec) {
	t.Helper()
	spec := NewSpec(t, base)
	id, err := rt.Create(t.Context(), spec)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		if err := rt.Remove(ctx, id); err != nil && !errors.Is(err, sandbox.ErrNotFound) {
			t.Errorf("removing container %s: %v", id, err)
		}
	})
	return id, spec
}

// StartContainer is CreateContainer followed by Start.
func StartContainer(t testing.TB, rt Runtime, base sandbox.Spec) (string, sandbox.Spec) {
	t.Helper()
	id, spec := CreateContainer(t, rt, base)
	if err := rt.Start(t.Context(), id); err != nil {
		t.Fatalf("Start: %v", err)
	}
	return id, spec
}

// Result is what an exec produced.
type Result struct {
	Code   int
	Stdout string
	Stderr string
}

// Exec runs argv in container id and fails the test if it cannot run.
func Exec(t testing.TB, rt Runtime, id string, argv ...string) Result {
	t.Helper()
	var stdout, stderr strings.Builder
	code, err := rt.Exec(t.Context(), id, sandbox.ExecSpec{Argv: argv, Stdout: &stdout, Stderr: &stderr})
	if err != nil {
		t.Fatalf("Exec %q: %v", argv, err)
	}
	return Result{Code: code, Stdout: stdout.String(), Stderr: stderr.String()}
}

func randomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// lines is a writer that hands each complete line to a channel as it is
// written, and keeps everything.
type lines struct {
	mu   sync.Mutex
	all  strings.Builder
	part string
	c    chan string
}

func newLines() *lines { return &lines{c: make(chan string, 1024)} }

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.all.Write(p)
	l.part += string(p)
	for {
		i := strings.IndexByte(l.part, '\n')
		if i < 0 {
			break
		}
		select {
		case l.c <- l.part[:i]:
		default:
		}
		l.part = l.part[i+1:]
	}
	return len(p), nil
}

func (l *lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.all.String()
}

// Within is how long a test may wait for something to happen: most of
// what is left of the test's deadline, so a loaded machine slows the test
// rather than fails it (five minutes when there is no deadline, as in a
// benchmark).
func Within(t testing.TB) time.Duration {
	dt, ok := t.(interface{ Deadline() (time.Time, bool) })
	if !ok {
		return 5 * time.Minute
	}
	if d, ok := dt.Deadline(); ok {
		return max(time.Until(d)*3/4, 30*time.Second)
	}
	return 5 * time.Minute
}

// next waits for the next line, up to Within(t).
func (l *lines) next(t testing.TB) string {
	t.Helper()
	d := Within(t)
	select {
	case s := <-l.c:
		return s
	case <-time.After(d):
		t.Fatalf("no line of output within %v; so far: %q", d, l.String())
		return ""
	}
}

// journal records, across writers, which stream wrote which line in what
// order.
type journal struct {
	mu      sync.Mutex
	entries []string
}

func (j *journal) writer(stream string) *journalWriter {
	return &journalWriter{j: j, stream: stream}
}

type journalWriter struct {
	j      *journal
	stream string
	buf    strings.Builder
	part   string
}

func (w *journalWriter) Write(p []byte) (int, error) {
	w.j.mu.Lock()
	defer w.j.mu.Unlock()
	w.buf.Write(p)
	w.part += string(p)
	for {
		i := strings.IndexByte(w.part, '\n')
		if i < 0 {
			break
		}
		w.j.entries = append(w.j.entries, w.stream+": "+w.part[:i])
		w.part = w.part[i+1:]
	}
	return len(p), nil
}

func (w *journalWriter) String() string {
	w.j.mu.Lock()
	defer w.j.mu.Unlock()
	return w.buf.String()
}
