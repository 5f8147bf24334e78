package testsvc

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ValkeyURLEnv names the environment variable that points the tests at a
// Valkey (or Redis) server of the caller's instead of one they start
// themselves. Tests share that server, so they must keep their keys and
// channels apart (berth's valkey package does, with a namespace per test).
const ValkeyURLEnv = "BERTH_TEST_VALKEY_URL"

// redisStartTimeout bounds how long a redis-server may take to answer PING.
const redisStartTimeout = 20 * time.Second

// Redis is a redis-server a test started (or the server ValkeyURLEnv
// names), speaking the protocol Valkey speaks.
type Redis struct {
	t        testing.TB
	external string // ValkeyURLEnv's value; empty when this test started the server
	bin      string
	dir      string
	port     int
	tls      *tls.Config // for clients, when the server speaks only TLS

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{} // closed when cmd has been waited for
	log     *redisLog
	stopped bool // Stop was called and Start not since
}

// StartRedis starts a redis-server for this test and returns it; it is
// killed when the test ends.
//
// The server listens only on 127.0.0.1, on a free port, keeps nothing on
// disk (--save "" --appendonly no) and runs in a temporary directory. It
// dies with the test binary however the binary ends: the kernel kills it
// when the thread that started it ends (Pdeathsig), and that thread lives
// as long as the server.
//
// When ValkeyURLEnv is set, no server is started and URL returns that
// variable's value; Stop and Start then fail the test, as they cannot
// control a server the test does not own.
//
// A missing redis-server fails the test, with the package to install.
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	if u := os.Getenv(ValkeyURLEnv); u != "" {
		return &Redis{t: t, external: u}
	}
	return startRedis(t, false)
}

// StartRedisTLS is StartRedis for a server that accepts only TLS, with a
// certificate for 127.0.0.1 from a certificate authority made for it; URL
// is then a rediss:// URL, and TLSConfig trusts that authority. It ignores
// ValkeyURLEnv.
func StartRedisTLS(t testing.TB) *Redis {
	t.Helper()
	return startRedis(t, true)
}

// startRedis starts a server of this test's.
func startRedis(t testing.TB, withTLS bool) *Redis {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("testsvc: redis-server not found (apt-get install redis-server): %v", err)
	}
	r := &Redis{t: t, bin: bin, dir: t.TempDir()}
	if withTLS {
		if r.tls, err = writeTestCerts(r.dir); err != nil {
			t.Fatalf("testsvc: certificates for redis-server: %v", err)
		}
	}
	t.Cleanup(r.kill)
	// A free port can be taken by someone else between the probe and the
	// server's bind: try a few.
	for attempt := 0; ; attempt++ {
		port, err := redisFreePort()
		if err != nil {
			t.Fatalf("testsvc: find a free port for redis-server: %v", err)
		}
		r.port = port
		err = r.start()
		if err == nil {
			return r
		}
		if attempt == 4 || !strings.Contains(err.Error(), "in use") {
			t.Fatalf("testsvc: %v", err)
		}
	}
}

// URL is the server's address as a redis:// URL (rediss:// for a server
// started with StartRedisTLS) with database 0.
func (r *Redis) URL() string {
	if r.external != "" {
		return r.external
	}
	if r.tls != nil {
		return "rediss://" + r.Addr() + "/0"
	}
	return "redis://" + r.Addr() + "/0"
}

// TLSConfig returns a client configuration that trusts the server started
// by StartRedisTLS; nil for other servers.
func (r *Redis) TLSConfig() *tls.Config {
	if r.tls == nil {
		return nil
	}
	return r.tls.Clone()
}

// Addr is the server's host:port. It fails the test for a server named by
// ValkeyURLEnv, whose address the test does not need to know.
func (r *Redis) Addr() string {
	if r.external != "" {
		r.t.Fatalf("testsvc: the address of the %s server is not known", ValkeyURLEnv)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port))
}

// Stop kills the server at once (SIGKILL, as a crash or an outage would)
// and waits for it to be gone. Its data is lost.
func (r *Redis) Stop() {
	r.t.Helper()
	r.own("Stop")
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		r.t.Fatal("testsvc: redis-server stopped twice")
	}
	r.stopped = true
	r.killLocked()
}

// Start starts the server again, on the same port, after Stop, and waits
// until it answers.
func (r *Redis) Start() {
	r.t.Helper()
	r.own("Start")
	r.mu.Lock()
	stopped := r.stopped
	r.mu.Unlock()
	if !stopped {
		r.t.Fatal("testsvc: redis-server started while running")
	}
	if err := r.start(); err != nil {
		r.t.Fatalf("testsvc: restart: %v", err)
	}
	r.mu.Lock()
	r.stopped = false
	r.mu.Unlock()
}

// own fails the test when the server is not this test's to control.
func (r *Redis) own(op string) {
	r.t.Helper()
	if r.external != "" {
		r.t.Fatalf("testsvc: Redis.%s: %s points at a server this test did not start and cannot stop or start; unset it to run this test", op, ValkeyURLEnv)
	}
}

// start runs redis-server on r.port and waits until it answers PING.
func (r *Redis) start() error {
	args := []string{
		"--port", strconv.Itoa(r.port),
		"--bind", "127.0.0.1",
	}
	if r.tls != nil {
		args = []string{
			"--port", "0",
			"--tls-port", strconv.Itoa(r.port),
			"--tls-cert-file", filepath.Join(r.dir, "server.crt"),
			"--tls-key-file", filepath.Join(r.dir, "server.key"),
			"--tls-ca-cert-file", filepath.Join(r.dir, "ca.crt"),
			"--tls-auth-clients", "no",
			"--bind", "127.0.0.1",
		}
	}
	args = append(args,
		"--save", "",
		"--appendonly", "no",
		"--dir", r.dir,
		"--daemonize", "no",
		"--logfile", "",
		"--loglevel", "warning",
	)
	// #nosec G204 -- G204: test support starting the service binaries and commands it builds the argv of
	cmd := exec.Command(r.bin, args...)
	log := &redisLog{}
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}

	started := make(chan error, 1)
	exited := make(chan struct{})
	go func() {
		// The parent-death signal is sent when the thread that started
		// the process ends: keep this goroutine, locked to its thread,
		// until the server is gone. The thread ends with it (never
		// unlocked), which is then harmless.
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			close(exited)
			return
		}
		started <- nil
		_ = cmd.Wait()
		close(exited)
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	r.mu.Lock()
	r.cmd, r.exited, r.log = cmd, exited, log
	r.mu.Unlock()

	deadline := time.Now().Add(redisStartTimeout)
	for {
		select {
		case <-exited:
			return fmt.Errorf("redis-server on port %d exited: %s", r.port, log.tail())
		case <-time.After(10 * time.Millisecond):
		}
		if redisPing(net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port)), r.tls) == nil {
			return nil
		}
		if time.Now().After(deadline) {
			r.kill()
			return fmt.Errorf("redis-server on port %d did not answer PING within %v: %s", r.port, redisStartTimeout, log.tail())
		}
	}
}

// kill kills the server, if it runs, and waits for it.
func (r *Redis) kill() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.killLocked()
}

// killLocked is kill with r.mu held.
func (r *Redis) killLocked() {
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	<-r.exited
	r.cmd = nil
}

// redisPing sends PING to the server at addr, over TLS with config when
// it is not nil, and checks the answer.
func redisPing(addr string, config *tls.Config) error {
	var conn net.Conn
	var err error
	if config != nil {
		conn, err = tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", addr, config)
	} else {
		conn, err = net.DialTimeout("tcp", addr, time.Second)
	}
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("PING answered %q", strings.TrimSpace(line))
	}
	return nil
}

// writeTestCerts writes a new certificate authority (ca.crt) and a
// certificate for 127.0.0.1 it signed (server.crt, server.key) into dir,
// and returns a client configuration that trusts the authority.
func writeTestCerts(dir string) (*tls.Config, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "berth test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	files := map[string]*pem.Block{
		"ca.crt":     {Type: "CERTIFICATE", Bytes: caDER},
		"server.crt": {Type: "CERTIFICATE", Bytes: der},
		"server.key": {Type: "EC PRIVATE KEY", Bytes: keyDER},
	}
	for name, block := range files {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(block), 0o600); err != nil {
			return nil, err
		}
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// redisFreePort returns a loopback TCP port nothing listens on right now.
func redisFreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// redisLog keeps the last few KiB of a server's output, for error messages.
type redisLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// redisLogSize bounds what redisLog keeps.
const redisLogSize = 4096

// Write keeps p, dropping the oldest output beyond redisLogSize.
func (l *redisLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	if n := l.buf.Len(); n > 2*redisLogSize {
		l.buf.Next(n - redisLogSize)
	}
	return len(p), nil
}

// tail returns the output kept.
func (l *redisLog) tail() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buf.Bytes()
	if len(b) > redisLogSize {
		b = b[len(b)-redisLogSize:]
	}
	return strings.TrimSpace(string(b))
}
