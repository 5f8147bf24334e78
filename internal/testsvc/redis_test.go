package testsvc_test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/berthhq/berth/internal/testsvc"
)

// orphanEnv makes TestRedisDiesWithTestBinary's child start a server, print
// its address and exit without any cleanup.
const orphanEnv = "BERTH_TESTSVC_REDIS_ORPHAN"

func TestRedisStopStart(t *testing.T) {
	t.Parallel()
	if os.Getenv(testsvc.ValkeyURLEnv) != "" {
		t.Fatalf("this test stops and starts its own server; unset %s", testsvc.ValkeyURLEnv)
	}
	r := testsvc.StartRedis(t)
	if !strings.HasPrefix(r.URL(), "redis://127.0.0.1:") || !strings.HasSuffix(r.URL(), "/0") {
		t.Errorf("URL %q", r.URL())
	}
	if err := ping(r.Addr()); err != nil {
		t.Fatalf("running server: %v", err)
	}
	r.Stop()
	if err := ping(r.Addr()); err == nil {
		t.Fatal("stopped server still answers")
	}
	r.Start()
	if err := ping(r.Addr()); err != nil {
		t.Fatalf("restarted server: %v", err)
	}
}

// TestRedisDiesWithTestBinary runs this test binary as a child that starts a
// server and exits at once, skipping every cleanup (as a crash or a kill
// would); the server must be gone soon after.
func TestRedisDiesWithTestBinary(t *testing.T) {
	t.Parallel()
	if os.Getenv(orphanEnv) != "" {
		r := testsvc.StartRedis(t)
		fmt.Println("addr", r.Addr())
		os.Exit(0)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestRedisDiesWithTestBinary$", "-test.count=1")
	cmd.Env = append(os.Environ(), orphanEnv+"=1")
	cmd.Env = append(cmd.Env, testsvc.ValkeyURLEnv+"=")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	var addr string
	for line := range strings.Lines(string(out)) {
		if a, ok := strings.CutPrefix(strings.TrimSpace(line), "addr "); ok {
			addr = a
		}
	}
	if addr == "" {
		t.Fatalf("child printed no address:\n%s", out)
	}
	deadline := time.Now().Add(10 * time.Second)
	for ping(addr) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("redis-server at %s outlived its test binary", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ping sends PING to addr and checks the answer.
func ping(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
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
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

func TestRedisTLS(t *testing.T) {
	t.Parallel()
	r := testsvc.StartRedisTLS(t)
	if !strings.HasPrefix(r.URL(), "rediss://127.0.0.1:") {
		t.Errorf("URL %q", r.URL())
	}
	if err := ping(r.Addr()); err == nil {
		t.Error("a TLS server answered in plain text")
	}
	conn, err := tls.Dial("tcp", r.Addr(), r.TLSConfig())
	if err != nil {
		t.Fatalf("TLS with the test CA: %v", err)
	}
	conn.Close()
	r.Stop()
	r.Start()
	conn, err = tls.Dial("tcp", r.Addr(), r.TLSConfig())
	if err != nil {
		t.Fatalf("TLS after a restart: %v", err)
	}
	conn.Close()
}
