package server_test

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/berthhq/berth/internal/testsvc"
)

// TestConnectStreamGoroutines: an idle Connect server stream runs on its
// request's goroutine alone — its credentials' re-checks come from a
// shared timer wheel, not a goroutine and a ticker of its own — so
// berth's streams add no more goroutines per connection than a bare
// net/http handler that answers one message and blocks on its request
// (net/http's own connection goroutines), plus a constant for the whole
// server. The clients are raw TCP connections read by the test's
// goroutine, so they add none. Not parallel: it counts the process's
// goroutines.
func TestConnectStreamGoroutines(t *testing.T) {
	const streams = 40
	bare := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/connect+json")
		_, _ = w.Write(envelope([]byte(`{}`)))
		http.NewResponseController(w).Flush()
		<-r.Context().Done()
	}))
	t.Cleanup(bare.Close)
	floor := connectStreamGoroutines(t, bare.URL, "/", "", "{}", streams)

	e := newStreamEnv(t)
	got := connectStreamGoroutines(t, e.srv.URL, "/berth.v1.WorkspaceService/WatchWorkspace", e.token,
		`{"workspace_id":"`+e.ws+`"}`, streams)
	t.Logf("%d idle Connect streams: a bare handler adds %d goroutines, berth %d", streams, floor, got)
	// The constant: the re-check wheel's goroutine, and slack for one of
	// the runtime's or the test framework's coming or going.
	const constant = 3
	if got > floor+constant {
		t.Errorf("%d idle Connect streams add %d goroutines, a bare handler %d: berth runs %.1f goroutines of its own per stream, want none",
			streams, got, floor, float64(got-floor)/streams)
	}
}

// envelope frames msg as one message of a Connect stream.
func envelope(msg []byte) []byte {
	b := make([]byte, 5+len(msg))
	binary.BigEndian.PutUint32(b[1:5], uint32(len(msg))) // #nosec G115 -- a few dozen bytes
	copy(b[5:], msg)
	return b
}

// connectStreamGoroutines opens n Connect server streams of procedure
// path on the server at url, as bearer token (if any) with the request
// message msg (JSON), each read up to its first message, and returns by
// how many the process's goroutines grew once they settled. The streams
// are closed before it returns.
func connectStreamGoroutines(t *testing.T, url, path, token, msg string, n int) int {
	t.Helper()
	before := testsvc.SettledGoroutines(t)
	addr := strings.TrimPrefix(url, "http://")
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
		testsvc.SettledGoroutines(t)
	}()
	body := envelope([]byte(msg))
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		if err := c.SetDeadline(time.Now().Add(within(t))); err != nil {
			t.Fatal(err)
		}
		req := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/connect+json\r\nContent-Length: %d\r\n", path, addr, len(body))
		if token != "" {
			req += "Authorization: Bearer " + token + "\r\n"
		}
		if _, err := io.WriteString(c, req+"\r\n"+string(body)); err != nil {
			t.Fatal(err)
		}
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "application/connect+json" {
			t.Fatalf("%s: %d %s", path, res.StatusCode, res.Header.Get("Content-Type"))
		}
		head := make([]byte, 5)
		if _, err := io.ReadFull(res.Body, head); err != nil {
			t.Fatalf("%s: before the first message: %v", path, err)
		}
		if _, err := io.ReadFull(res.Body, make([]byte, binary.BigEndian.Uint32(head[1:]))); err != nil {
			t.Fatalf("%s: the first message: %v", path, err)
		}
		if head[0] != 0 {
			t.Fatalf("%s: the first message has flags %#x: the stream ended", path, head[0])
		}
	}
	return testsvc.SettledGoroutines(t) - before
}
