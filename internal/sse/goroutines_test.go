package sse_test

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	gosse "github.com/tmaxmax/go-sse"

	"github.com/berthhq/berth/internal/testsvc"
)

// TestOneGoroutinePerStream: an idle SSE stream over HTTP/1.1 holds one
// goroutine, its reader, which waits on the connection to notice the
// client leaving — no request goroutine, no net/http background reader,
// no heartbeat, writer or shutdown watcher — where a bare go-sse handler
// that blocks on its request holds net/http's two per connection. Besides
// those, the whole handler adds a constant (its heartbeat wheel). The
// clients are raw TCP connections read by the test's goroutine, so they
// add none. Not parallel: it counts the process's goroutines.
func TestOneGoroutinePerStream(t *testing.T) {
	const streams = 40
	bare := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sess, err := gosse.Upgrade(w, r)
		if err != nil {
			return
		}
		m := &gosse.Message{Type: gosse.Type("status")}
		m.AppendData("{}")
		if sess.Send(m) != nil || sess.Flush() != nil {
			return
		}
		<-r.Context().Done()
	}))
	t.Cleanup(bare.Close)
	floor := goroutinesPerStreams(t, bare.URL, "/", "", streams)

	r := newRig(t)
	got := goroutinesPerStreams(t, r.url, "/api/v1/tasks/"+r.task.ID+"/logs/stream", "owner", streams)
	t.Logf("%d idle streams: bare go-sse adds %d goroutines, berth %d", streams, floor, got)
	// The constant: the heartbeat wheel's goroutine, and slack for one
	// of the runtime's or the test framework's coming or going.
	const constant = 3
	if got > streams+constant {
		t.Errorf("%d idle SSE streams add %d goroutines (bare go-sse: %d): berth holds %.1f goroutines per idle stream, want at most one",
			streams, got, floor, float64(got-constant)/streams)
	}
}

// goroutinesPerStreams opens n streams of path on the server at url (as
// bearer token who, if any), each read up to the end of its first event,
// and returns by how many the process's goroutines grew once they settled.
// The streams are closed before it returns.
func goroutinesPerStreams(t *testing.T, url, path, who string, n int) int {
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
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		if err := c.SetDeadline(deadline(t)); err != nil {
			t.Fatal(err)
		}
		req := "GET " + path + " HTTP/1.1\r\nHost: " + addr + "\r\n"
		if who != "" {
			req += "Authorization: Bearer " + who + "\r\n"
		}
		if _, err := fmt.Fprint(c, req+"\r\n"); err != nil {
			t.Fatal(err)
		}
		firstEvent(t, bufio.NewReader(c))
	}
	return testsvc.SettledGoroutines(t) - before
}

// firstEvent reads a response up to the end of its first event's data.
func firstEvent(t *testing.T, br *bufio.Reader) {
	t.Helper()
	data := false
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			t.Fatalf("before the first event: %v", err)
		}
		// Chunked encoding may wrap the stream (not on berth's HTTP/1.x
		// streams, whose body is the rest of the connection): a data line
		// is found inside a chunk, and the event ends with an empty line.
		if bytes.HasPrefix(line, []byte("data:")) {
			data = true
		} else if data && len(bytes.TrimSpace(line)) == 0 {
			return
		}
	}
}

// deadline is the test's deadline, or two minutes from now without one.
func deadline(t *testing.T) time.Time {
	if d, ok := t.Deadline(); ok {
		return d
	}
	return time.Now().Add(2 * time.Minute)
}
