package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/tmaxmax/go-sse"
)

// floorFlag is the hidden flag with which the harness re-executes itself
// as the SSE floor, so that the floor's resident set is its own.
const floorFlag = "-floor-sse"

// unaryFloor serves header and body to every request: a bare net/http
// server answering what berth answered for the same call, headers
// included (net/http sets Date and Content-Length itself). It reads the
// request body, as berth must. It listens on a free port of 127.0.0.1
// until ctx ends.
func unaryFloor(ctx context.Context, header http.Header, body []byte) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	srv := &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			for k, v := range header {
				w.Header()[k] = v
			}
			_, _ = w.Write(body)
		}),
	}
	go func() { _ = srv.Serve(ln) }()
	context.AfterFunc(ctx, func() { _ = srv.Close() })
	return "http://" + ln.Addr().String(), nil
}

// serveSSEFloor is the body of the SSE floor process: a bare go-sse
// provider behind net/http on a free port of 127.0.0.1, whose address it
// prints on stdout. Each stream gets its headers flushed (as berth's do),
// then is subscribed to one topic on which nothing is published. It runs
// until stdin closes, which it does when the harness goes, whatever way.
func serveSSEFloor() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	joe := &sse.Joe{}
	srv := &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			sess, err := sse.Upgrade(w, r)
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			if err := sess.Flush(); err != nil {
				return
			}
			_ = joe.Subscribe(r.Context(), sse.Subscription{Client: sess, Topics: []string{"idle"}})
		}),
	}
	go func() { _ = srv.Serve(ln) }()
	fmt.Println(ln.Addr().String())
	_, _ = io.Copy(io.Discard, os.Stdin)
	return srv.Close()
}

// child is a process the harness started; stop ends it.
type child struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

// startChild starts cmd with a pipe on its stdin (a floor ends when it
// closes) and SIGKILL as its parent-death signal.
func startChild(cmd *exec.Cmd) (*child, io.WriteCloser, error) {
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, nil, err
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	c := &child{cmd: cmd, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(c.exited) }()
	return c, stdin, nil
}

// stop sends SIGTERM and, after grace, SIGKILL; it returns when the
// process is gone.
func (c *child) stop(grace time.Duration) {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(grace):
		_ = c.cmd.Process.Kill()
		<-c.exited
	}
}

// startSSEFloor re-executes this program as the SSE floor and returns it
// with its base URL.
func startSSEFloor(ctx context.Context) (*child, string, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, "", err
	}
	cmd := exec.Command(self, floorFlag) // #nosec G204 -- this very program, with a fixed flag
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", err
	}
	c, stdin, err := startChild(cmd)
	if err != nil {
		return nil, "", err
	}
	_ = stdin // closed with the harness; stop ends the floor first
	addr := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		addr <- strings.TrimSpace(line)
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case a := <-addr:
		if a == "" {
			c.stop(time.Second)
			return nil, "", errors.New("the SSE floor printed no address")
		}
		return c, "http://" + a, nil
	case <-ctx.Done():
		c.stop(time.Second)
		return nil, "", ctx.Err()
	}
}

// rss is the resident set of process pid, in bytes, from /proc.
func rss(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kb int64
			if _, err := fmt.Sscanf(strings.TrimSpace(rest), "%d kB", &kb); err != nil {
				return 0, fmt.Errorf("VmRSS %q: %w", rest, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}
