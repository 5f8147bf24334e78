package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/coder/websocket"
)

// subscriber is what one client of a latency run received.
type subscriber struct {
	lat      []time.Duration // receipt minus write, by stamped line
	first    int64           // the write stamp of the first stamped line (unix ns)
	lastRecv time.Time       // when the last stamped line came
	seq      int64           // the last line's seq
	gaps     int             // lines whose seq did not follow the previous one
	ended    bool            // the end event came
	err      error
}

func (s *subscriber) log(seq, stamp int64, now time.Time) {
	if seq != s.seq+1 {
		s.gaps++
	}
	s.seq = seq
	if stamp <= 0 {
		return
	}
	s.lat = append(s.lat, now.Sub(time.Unix(0, stamp)))
	if s.first == 0 {
		s.first = stamp
	}
	s.lastRecv = now
}

// numberAfter returns the whole number just after the first key in b, or
// -1.
func numberAfter(b, key []byte) int64 {
	i := bytes.Index(b, key)
	if i < 0 {
		return -1
	}
	return leadingNumber(b[i+len(key):])
}

// leadingNumber returns the whole number b starts with, or -1.
func leadingNumber(b []byte) int64 {
	n, digits := int64(0), 0
	for _, c := range b {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int64(c-'0')
		digits++
	}
	if digits == 0 {
		return -1
	}
	return n
}

var (
	sentKey = []byte(" sent ")  // in a stamped line's message
	seqKey  = []byte(`"seq":"`) // in a WebSocket log event (an int64, so a JSON string)
	logKey  = []byte(`"action":"log"`)
	endKey  = []byte(`"action":"end"`)
)

// readSSE reads a task's event stream until its end, calling ready after
// the first event.
func (s *subscriber) readSSE(body io.Reader, ready func()) {
	const (
		none = iota
		logEvent
		endEvent
		otherEvent
	)
	br := bufio.NewReaderSize(body, 64<<10)
	event, seq, stamp := none, int64(-1), int64(-1)
	whole := true // the read starts a line
	for {
		line, err := br.ReadSlice('\n')
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			s.err = fmt.Errorf("after seq %d: %w", s.seq, err)
			return
		}
		start := whole
		whole = err == nil
		if !start { // the rest of a line longer than the buffer
			if n := numberAfter(line, sentKey); n > 0 {
				stamp = n
			}
			continue
		}
		name, value, _ := bytes.Cut(bytes.TrimRight(line, "\n"), []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(name) {
		case "": // a blank line ends an event; a comment has no name either
			if len(value) > 0 || event == none {
				continue
			}
			switch event {
			case logEvent:
				s.log(seq, stamp, time.Now())
			case endEvent:
				s.ended = true
				return
			}
			ready()
			event, seq, stamp = none, -1, -1
		case "event":
			switch string(value) {
			case "log":
				event = logEvent
			case "end":
				event = endEvent
			default:
				event = otherEvent
			}
		case "id":
			seq = leadingNumber(value)
		case "data":
			stamp = numberAfter(value, sentKey)
		}
	}
}

// readWS reads a task channel's events until its end, calling ready after
// the first event.
func (s *subscriber) readWS(ctx context.Context, c *websocket.Conn, ready func()) {
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			s.err = fmt.Errorf("after seq %d: %w", s.seq, err)
			return
		}
		switch {
		case bytes.Contains(b, logKey):
			s.log(numberAfter(b, seqKey), numberAfter(b, sentKey), time.Now())
		case bytes.Contains(b, endKey):
			s.ended = true
			return
		case bytes.Contains(b, []byte(`"type":"error"`)):
			s.err = fmt.Errorf("error frame %s", b)
			return
		}
		if bytes.Contains(b, []byte(`"type":"event"`)) {
			ready()
		}
	}
}

// readConnect reads a Connect StreamTaskLogs response (JSON messages in
// Connect's envelopes) until the end of the stream, calling ready after
// the first message.
func (s *subscriber) readConnect(body io.Reader, ready func()) {
	br := bufio.NewReaderSize(body, 64<<10)
	var head [5]byte
	var msg []byte
	for {
		if _, err := io.ReadFull(br, head[:]); err != nil {
			s.err = fmt.Errorf("after seq %d: %w", s.seq, err)
			return
		}
		n := int(binary.BigEndian.Uint32(head[1:]))
		if cap(msg) < n {
			msg = make([]byte, n)
		}
		msg = msg[:n]
		if _, err := io.ReadFull(br, msg); err != nil {
			s.err = fmt.Errorf("after seq %d: %w", s.seq, err)
			return
		}
		switch {
		case head[0]&2 != 0: // the end of the stream: an error, or none
			if !s.ended {
				s.err = fmt.Errorf("the stream ended with %s before its end event", msg)
			}
			return
		case bytes.HasPrefix(msg, connectLogKey):
			s.log(numberAfter(msg, seqKey), numberAfter(msg, sentKey), time.Now())
		case bytes.HasPrefix(msg, connectEndKey):
			s.ended = true
		}
		ready()
	}
}

var (
	connectLogKey = []byte(`{"log":`) // a StreamTaskLogsResponse's log line
	connectEndKey = []byte(`{"end":`)
)

// readResponse sends req with token and reads its response's body with
// read, if it is a 200.
func (s *subscriber) readResponse(client *http.Client, req *http.Request, token string, read func(io.Reader, func()), ready func()) {
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := client.Do(req)
	if err != nil {
		s.err = err
		return
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		s.err = fmt.Errorf("status %d", res.StatusCode)
		return
	}
	read(res.Body, ready)
}

// subscribe connects one subscriber to task id and reads until the end or
// until ctx ends.
func (s *subscriber) subscribe(ctx context.Context, e *benchEnv, client *http.Client, transport, id string, ready func()) {
	defer ready() // also when the connection fails
	switch transport {
	case "sse":
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.p.URL+"/api/v1/tasks/"+id+"/logs/stream", nil)
		if err == nil {
			s.readResponse(client, req, e.token, s.readSSE, ready)
		} else {
			s.err = err
		}
	case "connect":
		body := []byte(`{"task_id":"` + id + `"}`)
		envelope := append(binary.BigEndian.AppendUint32([]byte{0}, uint32(len(body))), body...)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.p.URL+"/berth.v1.TaskService/StreamTaskLogs", bytes.NewReader(envelope))
		if err == nil {
			req.Header.Set("Content-Type", "application/connect+json")
			req.Header.Set("Connect-Protocol-Version", "1")
			s.readResponse(client, req, e.token, s.readConnect, ready)
		} else {
			s.err = err
		}
	case "websocket":
		c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(e.p.URL, "http")+"/ws", &websocket.DialOptions{
			HTTPClient: client, HTTPHeader: http.Header{"Authorization": {"Bearer " + e.token}},
			Subprotocols: []string{"berth.v1.json"},
		})
		if err != nil {
			s.err = err
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(1 << 20)
		sub, _ := json.Marshal(wsMessage{Type: "subscribe", ID: "1", Channel: "task:" + id})
		if err := c.Write(ctx, websocket.MessageText, sub); err != nil {
			s.err = err
			return
		}
		s.readWS(ctx, c, ready)
	}
}
