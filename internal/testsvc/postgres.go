package testsvc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// DatabaseURLEnv names the environment variable that points the tests at a
// Postgres server of the caller's instead of one they start themselves. Its
// user must be allowed to create and drop databases.
const DatabaseURLEnv = "BERTH_TEST_DATABASE_URL"

// Postgres returns the URL of a new, empty database for this test, dropped
// when the test ends.
//
// The database lives on the server DatabaseURLEnv names or, when it is
// unset, on a cluster this test binary starts the first time it is asked
// for one: initdb and postgres from /usr/lib/postgresql/*/bin, run as the
// postgres system user when the tests run as root (Postgres refuses root),
// with its data and sockets in a temporary directory, listening only on
// 127.0.0.1 on a free port, with fsync off. The cluster is stopped, and its
// directory removed, when the test binary exits however it exits: the
// kernel sends the server SIGQUIT when its parent dies, and a watchdog
// process that waits for the test binary's end removes the directory.
// Nothing needs to stop it by hand.
//
// Missing Postgres binaries fail the test, with the package to install.
func Postgres(t testing.TB) string {
	t.Helper()
	base := os.Getenv(DatabaseURLEnv)
	if base == "" {
		c, err := sharedCluster()
		if err != nil {
			t.Fatalf("testsvc: start postgres: %v", err)
		}
		base = c.url("postgres")
	}
	name := "berth_test_" + randomHex(8)
	if err := adminExec(t.Context(), base, `CREATE DATABASE "`+name+`"`); err != nil {
		t.Fatalf("testsvc: create database: %v", err)
	}
	t.Cleanup(func() {
		// FORCE ends connections a test left open (Postgres 13 and later).
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := adminExec(ctx, base, `DROP DATABASE IF EXISTS "`+name+`" WITH (FORCE)`); err != nil {
			t.Errorf("testsvc: drop database %s: %v", name, err)
		}
	})
	u, err := withDatabase(base, name)
	if err != nil {
		t.Fatalf("testsvc: %v", err)
	}
	return u
}

// withDatabase returns the URL base with its database replaced by name.
// Errors never contain the URL: it may hold a password.
func withDatabase(base, name string) (string, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return "", fmt.Errorf("%s is not a postgres:// URL", DatabaseURLEnv)
	}
	u.Path = "/" + name
	u.RawPath = ""
	return u.String(), nil
}

// adminExec runs one statement on its own connection to the server at
// base, as the setup does not need a pool.
func adminExec(ctx context.Context, base, statement string) error {
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		return fmt.Errorf("connect: %w", redact(err, base))
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, statement); err != nil {
		return redact(err, base)
	}
	return nil
}

// redact removes the password of the URL raw from err's message.
func redact(err error, raw string) error {
	u, perr := url.Parse(raw)
	if perr != nil || u.User == nil {
		return err
	}
	pw, ok := u.User.Password()
	if !ok || pw == "" || !strings.Contains(err.Error(), pw) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), pw, "xxxxx"))
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// cluster is a Postgres server this test binary started.
type cluster struct {
	port int
	dir  string // its data, sockets and log
}

// url is the URL of the database name on the cluster.
func (c *cluster) url(name string) string {
	return fmt.Sprintf("postgres://berth@127.0.0.1:%d/%s?sslmode=disable", c.port, name)
}

var shared struct {
	mu  sync.Mutex
	c   *cluster
	err error
}

// sharedCluster returns the binary's cluster, starting it on first use. A
// failed start is remembered, so that every later test fails fast with the
// same reason.
func sharedCluster() (*cluster, error) {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.c == nil && shared.err == nil {
		shared.c, shared.err = startCluster()
	}
	return shared.c, shared.err
}

// postgresBin returns the directory of the newest installed Postgres's
// programs.
func postgresBin() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	var found []string
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			found = append(found, d)
		}
	}
	if len(found) == 0 {
		return "", errors.New("no initdb in /usr/lib/postgresql/*/bin: install Postgres (apt-get install postgresql), " +
			"or set " + DatabaseURLEnv + " to a server whose user may create databases")
	}
	// By major version, numerically: 9.6 < 10 < 15.
	slices.SortFunc(found, func(a, b string) int {
		va, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(a)), 64)
		vb, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(b)), 64)
		switch {
		case va < vb:
			return -1
		case va > vb:
			return 1
		}
		return 0
	})
	return found[len(found)-1], nil
}

// serverUser returns the credential Postgres runs with: the postgres system
// user when this process is root, which Postgres refuses to run as; nil,
// this process's own user, otherwise.
func serverUser() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("the tests run as root and Postgres refuses root, but there is no postgres user "+
			"to run it as (apt-get install postgresql creates one): %w", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("postgres user: %w", err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
}

// startCluster initialises a cluster in a new temporary directory and
// starts it.
func startCluster() (*cluster, error) {
	bin, err := postgresBin()
	if err != nil {
		return nil, err
	}
	cred, err := serverUser()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "berth-pg-")
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			_ = os.RemoveAll(dir)
		}
	}()
	if cred != nil {
		if err := reachable(dir, cred.Uid); err != nil {
			return nil, err
		}
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, err
		}
	}
	data := filepath.Join(dir, "data")
	// C.UTF-8 rather than C, as a production database would have a UTF-8
	// locale: the schema must not depend on the database's locale.
	for _, locale := range []string{"C.UTF-8", "C"} {
		// #nosec G204 -- G204: test support starting the service binaries and commands it builds the argv of
		initdb := exec.Command(filepath.Join(bin, "initdb"), "--pgdata", data, "--username", "berth",
			"--auth", "trust", "--encoding", "UTF8", "--locale", locale, "--no-sync", "--no-instructions")
		initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		initdb.Env = serverEnv(dir)
		var out []byte
		if out, err = initdb.CombinedOutput(); err == nil {
			break
		}
		err = fmt.Errorf("initdb: %w\n%s", err, out)
		_ = os.RemoveAll(data)
	}
	if err != nil {
		return nil, err
	}
	var lastErr error
	for range 3 { // a free port can be taken before the server binds it
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		c := &cluster{port: port, dir: dir}
		if lastErr = c.start(bin, dir, cred); lastErr == nil {
			ok = true
			return c, nil
		}
	}
	return nil, lastErr
}

// reachable checks that the user uid can reach dir, which it is given: the
// directories above it must let others through.
func reachable(dir string, uid uint32) error {
	for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
		info, err := os.Stat(d)
		if err != nil {
			return err
		}
		st, _ := info.Sys().(*syscall.Stat_t)
		if info.Mode().Perm()&0o001 == 0 && (st == nil || st.Uid != uid) {
			return fmt.Errorf("the postgres user cannot enter %s, above the temporary directory %s; "+
				"set TMPDIR to a directory it can reach, such as /tmp", d, dir)
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

// serverEnv is the environment of initdb and postgres: no locale of the
// caller's, and a HOME the server's user can read.
func serverEnv(dir string) []string {
	env := []string{"HOME=" + dir, "LC_ALL=C", "TZ=UTC"}
	if p := os.Getenv("PATH"); p != "" {
		env = append(env, "PATH="+p)
	}
	return env
}

// freePort returns a loopback TCP port nothing listens on right now.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// start runs the server on c.port and waits until it takes connections.
//
// The server is started from a goroutine locked to its OS thread that lives
// as long as the server: the parent-death signal (SIGQUIT, Postgres's
// immediate shutdown) is sent when the thread that started the process
// ends, so that thread must not end before the test binary does. A
// watchdog, in its own process group so that a Ctrl-C reaching the test
// binary does not end it first, waits for the end of the test binary (its
// standard input, a pipe only the test binary holds, closes) and then stops
// the server and removes dir.
func (c *cluster) start(bin, dir string, cred *syscall.Credential) error {
	logPath := filepath.Join(dir, "postgres.log")
	// #nosec G302 G304 -- G302: a test file the container user must read or run; G304: a file this test support made or was pointed at by the test
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()
	if cred != nil {
		_ = os.Chown(logPath, int(cred.Uid), int(cred.Gid))
	}
	// #nosec G204 -- G204: test support starting the service binaries and commands it builds the argv of
	cmd := exec.Command(filepath.Join(bin, "postgres"), "-D", filepath.Join(dir, "data"),
		"-p", strconv.Itoa(c.port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories="+dir,
		"-c", "fsync=off",
		"-c", "synchronous_commit=off",
		"-c", "full_page_writes=off",
		"-c", "max_connections=300",
		"-c", "shared_buffers=32MB",
		"-c", "log_min_messages=warning",
	)
	cmd.Env = serverEnv(dir)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGQUIT, Setpgid: true}

	started := make(chan error, 1)
	exited := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: see above
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		exited <- cmd.Wait()
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	if err := watch(cmd.Process.Pid, dir); err != nil {
		_ = cmd.Process.Signal(syscall.SIGQUIT)
		<-exited
		return err
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		select {
		case err := <-exited:
			// #nosec G304 -- G304: a file this test support made or was pointed at by the test
			out, _ := os.ReadFile(logPath)
			return fmt.Errorf("postgres exited: %v\n%s", err, tail(out, 4096))
		case <-ctx.Done():
			_ = cmd.Process.Signal(syscall.SIGQUIT)
			// #nosec G304 -- G304: a file this test support made or was pointed at by the test
			out, _ := os.ReadFile(logPath)
			return fmt.Errorf("postgres did not take connections within a minute\n%s", tail(out, 4096))
		case <-time.After(50 * time.Millisecond):
		}
		conn, err := pgx.Connect(ctx, c.url("postgres"))
		if err == nil {
			_ = conn.Close(ctx)
			return nil
		}
	}
}

// watchdog is what the watchdog process runs: wait for standard input to
// close, then stop the server ($1) at once, wait for it and remove its
// directory ($2).
const watchdog = `cat >/dev/null
kill -QUIT "$1" 2>/dev/null
while kill -0 "$1" 2>/dev/null; do sleep 0.1; done
rm -rf "$2"`

// watchdogPipes keeps the write ends of the watchdogs' pipes open for as
// long as the test binary runs.
var watchdogPipes []*os.File

// watch starts the watchdog of the server pid and its directory dir.
func watch(pid int, dir string) error {
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	// #nosec G204 -- G204: test support starting the service binaries and commands it builds the argv of
	cmd := exec.Command("/bin/sh", "-c", watchdog, "watchdog", strconv.Itoa(pid), dir)
	cmd.Stdin = r
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		// #nosec G104 -- G104: best-effort cleanup or output in test support; a failure shows in the test
		w.Close()
		return fmt.Errorf("start the postgres watchdog: %w", err)
	}
	go func() { _ = cmd.Wait() }()
	watchdogPipes = append(watchdogPipes, w)
	return nil
}

// tail returns at most the last n bytes of b.
func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
