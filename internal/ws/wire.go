package ws

import (
	"bufio"
	"net"
	"net/http"
	"sync"
)

// Sizes of what a connection holds under coder/websocket.
const (
	// readBuffer is the read buffer coder/websocket gets: enough for a
	// frame's header; a payload is read straight into the message's own
	// buffer when it is bigger. Clients send few frames, and an idle
	// connection waits with this buffer, not net/http's 4 KiB.
	readBuffer = 128
	// writeBuffer is the write buffer coder/websocket gets: a control frame
	// (ping, pong, close: at most 127 bytes with its header) fits whole, so
	// it goes out in one write. A data frame's header and payload go out
	// through the wire's batch (see wire).
	writeBuffer = 128
	// batchBytes bounds a batch: past it, what a batch holds is written
	// at once, so no batch keeps more.
	batchBytes = 64 << 10
)

// batches lends the buffers of open batches: a connection holds one only
// while a batch of it has bytes not yet written.
var batches = sync.Pool{New: func() any { return new([]byte) }}

// wire is the connection under coder/websocket, which writes every frame
// (header, payload, flush) under a lock of its own, control frames
// included, so the bytes it writes here never interleave two frames: the
// wire sees one stream of bytes, in order.
//
// Outside a batch a write goes to the socket at once. While a batch is
// open (begin, end), writes are kept in a buffer borrowed for the batch,
// and end writes them with one write: a wake-up that sends fifty log lines
// costs one write instead of fifty (or a hundred: coder/websocket writes
// a header and a payload bigger than its buffer apart). A control frame
// that coder/websocket writes from another goroutine during a batch (a
// pong, a keep-alive ping, a close) goes out with the batch, no later than
// its end. A batch past batchBytes is written at once, and its buffer goes
// back to the pool at every end, so an idle connection holds none.
//
// The first write that fails breaks the stream (what it held is lost):
// every write after it fails too. Close does not wait for a write in
// progress, so closing unblocks one stuck on a client that reads nothing.
type wire struct {
	net.Conn

	mu    sync.Mutex // held across a socket write: the bytes stay in order
	open  int        // batches open
	batch *[]byte    // bytes kept by the open batches, from batches; nil when none
	err   error      // the first failed write
}

// Write writes p, or keeps it while a batch is open.
func (w *wire) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return 0, w.err
	}
	if w.open == 0 {
		return w.write(p)
	}
	if w.batch != nil && len(*w.batch)+len(p) > batchBytes {
		if err := w.flush(); err != nil {
			return 0, err
		}
	}
	if len(p) >= batchBytes {
		return w.write(p) // the batch held nothing more: it was just written
	}
	if w.batch == nil {
		w.batch = batches.Get().(*[]byte)
	}
	*w.batch = append(*w.batch, p...)
	return len(p), nil
}

// begin opens a batch: writes are kept until its end.
func (w *wire) begin() {
	w.mu.Lock()
	w.open++
	w.mu.Unlock()
}

// end closes a batch and writes what the open batches kept, with one
// write; it returns the error of that write, or of an earlier one.
func (w *wire) end() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.open--
	if w.err != nil {
		w.release()
		return w.err
	}
	return w.flush()
}

// flush writes what the batch kept and gives its buffer back. w.mu is held.
func (w *wire) flush() error {
	if w.batch == nil {
		return nil
	}
	_, err := w.write(*w.batch)
	w.release()
	return err
}

// release gives the batch's buffer back, with what it held. w.mu is held.
func (w *wire) release() {
	if w.batch == nil {
		return
	}
	*w.batch = (*w.batch)[:0]
	batches.Put(w.batch)
	w.batch = nil
}

// write writes p to the socket; a failure breaks the stream. w.mu is held.
func (w *wire) write(p []byte) (int, error) {
	n, err := w.Conn.Write(p)
	if err != nil {
		w.err = err
	}
	return n, err
}

// upgrader is the ResponseWriter coder/websocket's Accept gets: its Hijack
// hands over the connection as a wire, with small buffers (readBuffer,
// writeBuffer) in place of net/http's 4 KiB ones, which coder/websocket
// would keep as long as the connection lives.
type upgrader struct {
	http.ResponseWriter
	wire *wire // set by Hijack
}

// Hijack takes the connection from net/http. Bytes the client sent after
// its handshake, which net/http already read, stay in net/http's reader,
// which is then handed over as it is (coder/websocket reads them first).
func (u *upgrader) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(u.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	u.wire = &wire{Conn: conn}
	br := brw.Reader
	if br.Buffered() == 0 {
		br = bufio.NewReaderSize(u.wire, readBuffer)
	}
	return u.wire, bufio.NewReadWriter(br, bufio.NewWriterSize(u.wire, writeBuffer)), nil
}
