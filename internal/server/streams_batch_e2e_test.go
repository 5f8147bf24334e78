package server_test

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestConnectStreamFlushesPerBatch: a Connect server stream flushes once
// per batch of messages, not once per message. Over HTTP/1.1 every flush
// ends a chunk of the chunked response, so the chunks a client reads count
// the server's flushes: 400 stored lines, sent in one catch-up, came in
// more than 400 chunks while connect-go flushed after every message. All
// 400 lines still arrive, in order, and the end of the stream after them;
// the request is counted under its route.
func TestConnectStreamFlushesPerBatch(t *testing.T) {
	t.Parallel()
	e := newStreamEnv(t)
	const lines = 400
	id := e.task(t, fmt.Sprintf("batched [lines:%d]", lines))
	waitTaskEnd(t, e, id)

	u, err := url.Parse(e.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if d, ok := t.Deadline(); ok {
		_ = conn.SetDeadline(d)
	} else {
		_ = conn.SetDeadline(time.Now().Add(5 * time.Minute))
	}
	body := []byte(`{"task_id":"` + id + `"}`)
	envelope := binary.BigEndian.AppendUint32([]byte{0}, uint32(len(body)))
	envelope = append(envelope, body...)
	fmt.Fprintf(conn, "POST /berth.v1.TaskService/StreamTaskLogs HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"+
		"Content-Type: application/connect+json\r\nConnect-Protocol-Version: 1\r\nContent-Length: %d\r\nConnection: close\r\n\r\n",
		u.Host, e.token, len(envelope))
	if _, err := conn.Write(envelope); err != nil {
		t.Fatal(err)
	}

	r := bufio.NewReader(conn)
	status, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(status, "HTTP/1.1 200") {
		t.Fatalf("status line %q: %v", status, err)
	}
	chunked := false
	for {
		h, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if h == "\r\n" {
			break
		}
		if strings.EqualFold(strings.TrimSpace(h), "Transfer-Encoding: chunked") {
			chunked = true
		}
	}
	if !chunked {
		t.Fatal("the stream's response is not chunked")
	}

	var stream []byte
	chunks := 0
	for {
		sizeLine, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("after %d chunks: %v", chunks, err)
		}
		size, err := strconv.ParseInt(strings.TrimSpace(sizeLine), 16, 64)
		if err != nil {
			t.Fatalf("chunk size %q: %v", sizeLine, err)
		}
		if size == 0 {
			break
		}
		chunks++
		chunk := make([]byte, size+2) // and its CRLF
		if _, err := io.ReadFull(r, chunk); err != nil {
			t.Fatal(err)
		}
		stream = append(stream, chunk[:size]...)
	}

	var seqs []int64
	ended := false
	for len(stream) > 0 {
		if len(stream) < 5 {
			t.Fatalf("a truncated envelope: % x", stream)
		}
		flags, n := stream[0], binary.BigEndian.Uint32(stream[1:5])
		msg := stream[5 : 5+n]
		stream = stream[5+n:]
		if flags&2 != 0 { // the end of the stream
			if string(msg) != "{}" {
				t.Fatalf("the stream ended with %s", msg)
			}
			ended = true
			continue
		}
		var m struct {
			Log *struct {
				Seq string `json:"seq"`
			} `json:"log"`
		}
		if err := json.Unmarshal(msg, &m); err != nil {
			t.Fatalf("%s: %v", msg, err)
		}
		if m.Log != nil {
			seq, err := strconv.ParseInt(m.Log.Seq, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			seqs = append(seqs, seq)
		}
	}
	if !ended {
		t.Fatal("no end-of-stream message")
	}
	if len(seqs) < lines {
		t.Fatalf("%d lines, want at least %d", len(seqs), lines)
	}
	checkSeqs(t, "StreamTaskLogs", seqs, int64(len(seqs)))
	// One flush per message would make more chunks than lines; a batch
	// fills net/http's chunk buffer (a few KB) before it is written.
	if chunks > len(seqs)/4 {
		t.Errorf("%d chunks for %d lines: the stream flushed per message", chunks, len(seqs))
	}
	t.Logf("%d lines in %d chunks", len(seqs), chunks)
	// The batching wraps the request: its route is still the one the
	// metrics and the access log report.
	waitMetric(t, e.srv, `berth_http_requests_total{code="200",method="POST",route="/berth.v1.TaskService/StreamTaskLogs"}`, 1)
}
