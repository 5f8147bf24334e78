package telemetry

import (
	"io"
	"sync"
)

// LogWriter hands what is written to it to another writer (the process's
// stderr) from a goroutine of its own, so that a request's access-log line
// costs it a copy into memory instead of a write to a pipe, file or
// terminal that may be slow: with stderr on a busy disk, one synchronous
// write per request under slog's lock set every request's tail latency.
//
// It is a group commit, like the task log writer: lines that arrive while
// a write is under way are written together by the next one, at once, not
// after a timer, so the log is as fresh as the sink allows. Nothing is
// dropped and nothing reordered: a Write that would take the buffered bytes
// past the limit waits until the writer has taken them (backpressure on a
// sink that cannot keep up, rather than unbounded memory or lost lines).
// Close writes what is buffered; writes after it go straight to the sink.
// A crash loses at most what was buffered in that instant.
type LogWriter struct {
	w     io.Writer
	limit int

	mu     sync.Mutex
	room   *sync.Cond // signalled when the writer takes the buffer
	buf    []byte     // bytes waiting for the writer
	spare  []byte     // the buffer the writer wrote last, for reuse
	closed bool
	err    error // the sink's first write error, for Close

	wake chan struct{} // one slot: the buffer is not empty, or Close
	done chan struct{} // closed when the writer has stopped
}

// maxSpare bounds the buffer kept for reuse after a burst.
const maxSpare = 64 << 10

// NewLogWriter starts a LogWriter that writes to w and buffers at most
// limit bytes (a single larger write is still taken whole).
func NewLogWriter(w io.Writer, limit int) *LogWriter {
	l := &LogWriter{w: w, limit: max(limit, 1), wake: make(chan struct{}, 1), done: make(chan struct{})}
	l.room = sync.NewCond(&l.mu)
	go l.run()
	return l
}

// Write copies p into the buffer for the writer goroutine, waiting first
// while the buffer is full. After Close it writes p to the sink itself.
func (l *LogWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	for !l.closed && len(l.buf) > 0 && len(l.buf)+len(p) > l.limit {
		l.room.Wait()
	}
	if l.closed {
		l.mu.Unlock()
		<-l.done // after every buffered byte, in order
		return l.w.Write(p)
	}
	l.buf = append(l.buf, p...)
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default: // already woken
	}
	return len(p), nil
}

// Close writes what is buffered, stops the writer goroutine and returns
// the sink's first write error, if any. It is safe to call twice.
func (l *LogWriter) Close() error {
	l.mu.Lock()
	l.closed = true
	l.room.Broadcast()
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// run is the writer goroutine: it takes the whole buffer each time it is
// woken and writes it with one call, until Close.
func (l *LogWriter) run() {
	defer close(l.done)
	for range l.wake {
		l.mu.Lock()
		out := l.buf
		l.buf = l.spare[:0]
		l.spare = nil
		closed := l.closed
		l.room.Broadcast()
		l.mu.Unlock()
		var err error
		if len(out) > 0 {
			_, err = l.w.Write(out)
		}
		l.mu.Lock()
		if err != nil && l.err == nil {
			l.err = err
		}
		if cap(out) <= maxSpare {
			l.spare = out[:0]
		}
		l.mu.Unlock()
		if closed {
			return
		}
	}
}
