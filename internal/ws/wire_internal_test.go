package ws

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// socket records the writes to a net.Conn (none: it only records), and
// fails them once fail is set.
type socket struct {
	net.Conn
	mu     sync.Mutex
	writes [][]byte
	fail   error
}

func (s *socket) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return 0, s.fail
	}
	s.writes = append(s.writes, bytes.Clone(p))
	if s.Conn == nil {
		return len(p), nil
	}
	return s.Conn.Write(p)
}

func (s *socket) written() (n int, all []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.writes), bytes.Join(s.writes, nil)
}

// TestWireBatches: outside a batch every write goes to the socket at once;
// in a batch they are kept and written with one write at its end (the
// end of any batch, when several are open), or as soon as they pass
// batchBytes, never past it; the bytes stay in order, and the buffer goes
// back at the end. A failed write breaks the stream for good.
func TestWireBatches(t *testing.T) {
	t.Parallel()
	sock := &socket{}
	w := &wire{Conn: sock}
	var want bytes.Buffer
	write := func(p []byte) {
		t.Helper()
		if n, err := w.Write(p); n != len(p) || err != nil {
			t.Fatalf("Write: %d, %v", n, err)
		}
		want.Write(p)
	}
	// check checks the socket's writes, and that they hold what was
	// written, in order, but for what open batches keep.
	check := func(what string, writes int) {
		t.Helper()
		kept := 0
		if w.batch != nil {
			kept = len(*w.batch)
		}
		n, all := sock.written()
		if n != writes || !bytes.Equal(all, want.Bytes()[:want.Len()-kept]) {
			t.Fatalf("%s: %d writes of %d bytes (%d kept), want %d writes of the %d bytes written", what, n, len(all), kept, writes, want.Len()-kept)
		}
	}

	write([]byte("alone"))
	check("outside a batch", 1)

	w.begin()
	for i := range 100 {
		write(fmt.Appendf(nil, "frame %d;", i))
	}
	check("in a batch", 1)
	if err := w.end(); err != nil {
		t.Fatal(err)
	}
	check("at the batch's end", 2)
	if w.batch != nil {
		t.Fatal("the wire holds a buffer after its batch ended")
	}

	w.begin()
	w.begin()
	write([]byte("first"))
	if err := w.end(); err != nil {
		t.Fatal(err)
	}
	check("at the end of one of two batches", 3)
	write([]byte("second"))
	check("kept by the batch still open", 3)
	if err := w.end(); err != nil {
		t.Fatal(err)
	}
	check("at the end of the other", 4)

	start, _ := sock.written()
	w.begin()
	piece := bytes.Repeat([]byte("x"), 1000)
	pieces := 3 * batchBytes / len(piece)
	for range pieces {
		write(piece)
	}
	n, _ := sock.written()
	if err := w.end(); err != nil {
		t.Fatal(err)
	}
	check("a batch of three times batchBytes", n+1)
	// Written early each time the next piece would not fit.
	if early, want := n-start, (pieces-1)/(batchBytes/len(piece)); early != want {
		t.Fatalf("a batch of three times batchBytes was written early %d times, want %d", early, want)
	}
	sock.mu.Lock()
	for i, p := range sock.writes {
		if len(p) > batchBytes {
			t.Errorf("write %d holds %d bytes, more than batchBytes", i, len(p))
		}
	}
	sock.mu.Unlock()

	w.begin()
	write([]byte("small"))
	write(bytes.Repeat([]byte("y"), batchBytes)) // too big to keep: written after what was kept
	if err := w.end(); err != nil {
		t.Fatal(err)
	}
	check("a write of batchBytes in a batch", n+3)

	broken := errors.New("broken pipe")
	sock.mu.Lock()
	sock.fail = broken
	sock.mu.Unlock()
	w.begin()
	if _, err := w.Write([]byte("lost")); err != nil {
		t.Fatalf("a write kept by a batch failed: %v", err)
	}
	if err := w.end(); !errors.Is(err, broken) {
		t.Fatalf("end: %v, want the socket's error", err)
	}
	sock.mu.Lock()
	sock.fail = nil
	sock.mu.Unlock()
	if _, err := w.Write([]byte("after")); !errors.Is(err, broken) {
		t.Fatalf("a write after a failed one: %v, want the first error", err)
	}
	w.begin()
	if _, err := w.Write([]byte("after")); !errors.Is(err, broken) {
		t.Fatalf("a write in a batch after a failed one: %v, want the first error", err)
	}
	if err := w.end(); !errors.Is(err, broken) || w.batch != nil {
		t.Fatalf("end after a failed write: %v (buffer held: %v), want the first error and no buffer", err, w.batch != nil)
	}
	check("after the failure", n+3)
}

// TestControlFramesInABatch: coder/websocket over a wire, a real client
// on the other end. A keep-alive ping and a close sent from other
// goroutines while a batch is open go out with the batch, after its data
// frames and whole: the client reads every data frame in order, answers
// the ping (which then returns), and sees the close with its code and
// reason. The 50 data frames and the ping take one write to the socket.
func TestControlFramesInABatch(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	if d, ok := t.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, d.Add(-time.Until(d)/10))
		defer cancel()
	}
	const frames = 50
	sock := make(chan *socket, 1)
	served := make(chan error, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		up := &upgrader{ResponseWriter: rw}
		c, err := websocket.Accept(up, r, nil)
		if err != nil {
			served <- err
			return
		}
		defer c.CloseNow()
		s := &socket{Conn: up.wire.Conn}
		up.wire.Conn = s
		sock <- s
		served <- serveBatches(ctx, c, up.wire, s, frames)
	}))
	defer srv.Close()

	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	<-sock
	for round := range 2 {
		for i := range frames {
			_, b, err := c.Read(ctx)
			if err != nil {
				t.Fatalf("round %d, frame %d: %v", round, i, err)
			}
			if want := fmt.Sprintf("round %d frame %d", round, i); string(b) != want {
				t.Fatalf("frame %q, want %q", b, want)
			}
		}
	}
	// The next read answers the ping, then meets the close.
	if _, b, err := c.Read(ctx); websocket.CloseStatus(err) != websocket.StatusGoingAway || !strings.Contains(err.Error(), "bye") {
		t.Fatalf("after the frames: %q, %v; want the close 1001 bye", b, err)
	}
	if err := <-served; err != nil {
		t.Fatal(err)
	}
}

// serveBatches is TestControlFramesInABatch's server: a batch of frames
// with a ping sent during it, then one with a close sent during it.
func serveBatches(ctx context.Context, c *websocket.Conn, w *wire, s *socket, frames int) error {
	go func() { // reads the pong, and the client's close
		for {
			if _, _, err := c.Read(context.WithoutCancel(ctx)); err != nil {
				return
			}
		}
	}()
	// kept waits until the batch holds more than n bytes.
	kept := func(n int) error {
		for {
			w.mu.Lock()
			held := w.batch != nil && len(*w.batch) > n
			w.mu.Unlock()
			if held {
				return nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("the batch holds no more than %d bytes: %w", n, ctx.Err())
			case <-time.After(time.Millisecond):
			}
		}
	}
	held := func() int {
		w.mu.Lock()
		defer w.mu.Unlock()
		return len(*w.batch)
	}

	w.begin()
	for i := range frames {
		if err := c.Write(ctx, websocket.MessageText, fmt.Appendf(nil, "round 0 frame %d", i)); err != nil {
			return err
		}
	}
	before, _ := s.written()
	frames0 := held() // before the ping is sent
	pinged := make(chan error, 1)
	go func() { pinged <- c.Ping(ctx) }()
	if err := kept(frames0); err != nil {
		return err
	}
	select {
	case err := <-pinged:
		return fmt.Errorf("the ping returned (%v) while the batch held it", err)
	default:
	}
	if err := w.end(); err != nil {
		return err
	}
	if err := <-pinged; err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	if after, _ := s.written(); after != before+1 {
		return fmt.Errorf("a batch of %d frames and a ping took %d writes, want 1", frames, after-before)
	}

	w.begin()
	for i := range frames {
		if err := c.Write(ctx, websocket.MessageText, fmt.Appendf(nil, "round 1 frame %d", i)); err != nil {
			return err
		}
	}
	frames1 := held() // before the close is sent
	closed := make(chan error, 1)
	go func() { closed <- c.Close(websocket.StatusGoingAway, "bye") }()
	if err := kept(frames1); err != nil {
		return err
	}
	if err := w.end(); err != nil {
		return err
	}
	return <-closed
}

// TestFramePipelinedWithTheHandshake: a frame the client sends right
// behind its handshake, which net/http has read with the request, is not
// lost when the connection is handed over with small buffers: the server
// reads it first. The client does not wait for the 101: request and frame
// go in one write.
func TestFramePipelinedWithTheHandshake(t *testing.T) {
	t.Parallel()
	got := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(&upgrader{ResponseWriter: rw}, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		_, b, err := c.Read(r.Context())
		if err != nil {
			got <- err.Error()
			return
		}
		got <- string(b)
	}))
	defer srv.Close()

	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	wait := time.Hour
	if d, ok := t.Deadline(); ok {
		wait = time.Until(d) * 9 / 10
	}
	payload := "sent with the handshake"
	req := "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
	// A text frame, masked with the key 0 (so the payload reads as is).
	frame := append([]byte{0x81, 0x80 | byte(len(payload)), 0, 0, 0, 0}, payload...)
	if _, err := conn.Write(append([]byte(req), frame...)); err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-got:
		if b != payload {
			t.Fatalf("the server read %q, want %q", b, payload)
		}
	case <-time.After(wait):
		t.Fatal("the server read no frame: the one sent with the handshake was lost")
	}
}

// stuck is a socket whose writes block, as on a client that reads nothing,
// until it is closed.
type stuck struct {
	net.Conn
	closed chan struct{}
	once   sync.Once
}

func (s *stuck) Write([]byte) (int, error) {
	<-s.closed
	return 0, net.ErrClosed
}

func (s *stuck) Close() error {
	s.once.Do(func() { close(s.closed) })
	return s.Conn.Close()
}

// TestStallAtABatchsEnd: the stall timeout covers the write at a batch's
// end, where a batch's frames meet the socket: a client that takes none of
// them is dropped (the session ends), and the stuck write then fails,
// which the batch returns — once coder/websocket gave up writing its close
// frame behind it (5 s), and closed the connection.
func TestStallAtABatchsEnd(t *testing.T) {
	t.Parallel()
	wait := time.Hour
	if d, ok := t.Deadline(); ok {
		wait = time.Until(d) * 9 / 10
	}
	type accepted struct {
		c *websocket.Conn
		w *wire
	}
	conns := make(chan accepted, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		up := &upgrader{ResponseWriter: rw}
		c, err := websocket.Accept(up, r, nil)
		if err != nil {
			return
		}
		conns <- accepted{c, up.wire}
	}))
	defer srv.Close()
	client, _, err := websocket.Dial(t.Context(), "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer client.CloseNow()
	a := <-conns
	defer a.c.CloseNow()
	a.w.Conn = &stuck{Conn: a.w.Conn, closed: make(chan struct{})}

	s := newSession(New(Config{StallTimeout: 50 * time.Millisecond}), a.c, a.w, nil)
	s.ctx, s.cancel = context.WithCancel(t.Context())
	defer s.cancel()
	ended := make(chan error, 1)
	go func() {
		_, err := s.batch(func() (bool, error) {
			if !s.sendBatched(Message{Type: "event"}) {
				return false, errors.New("a frame of an open batch was not kept")
			}
			return false, nil
		})
		ended <- err
	}()
	select {
	case err := <-ended:
		if err == nil {
			t.Fatal("the batch's end wrote to a socket that takes nothing, and succeeded")
		}
	case <-time.After(wait):
		t.Fatal("the batch's end is still stuck: the stall timeout did not drop the client")
	}
	if s.ctx.Err() == nil {
		t.Fatal("the session did not end with the stall")
	}
}
