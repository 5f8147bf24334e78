// Package tasklog turns a task's output into its durable log: numbered
// entries (seq 1, 2, 3 … with no gaps) written to the store in batches and
// only then published on the bus, as *event.Line values on the task's topic
// (event.TaskTopic), so that a reader who saw entry n on the bus can always
// find 1…n in the store and resume from there.
package tasklog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/berthhq/berth/internal/bus"
	"github.com/berthhq/berth/internal/event"
	"github.com/berthhq/berth/internal/fault"
	"github.com/berthhq/berth/internal/store"
)

// Options tune a Writer; the zero value of each field takes its default.
type Options struct {
	// MaxLine is the longest message of one entry, in bytes (default 16 KiB).
	// A longer line is split, at a UTF-8 character boundary, into several
	// consecutive entries of at most MaxLine bytes each, which all carry the
	// line's level, source and fields. The line writers of Stdout and Stderr
	// also cut a line that grows past MaxLine without a newline, so one
	// endless line cannot hold unbounded memory.
	MaxLine int
	// FlushLines is how many buffered entries start a write at once
	// (default 256).
	FlushLines int
	// FlushEvery is the longest an entry waits in the buffer before it is
	// written (default 100 ms).
	FlushEvery time.Duration
	// MaxBuffered bounds the entries held in memory, buffered or being
	// written (default 64 Ki). When it is reached, Log blocks until the
	// store has caught up: backpressure on the task's output rather than
	// unbounded memory.
	MaxBuffered int
	// Retries is how many times in a row a failed write is retried, with
	// exponential backoff from Backoff (default 100 ms) up to 5 s, before
	// the Writer gives up (default 8, about 20 s in all).
	Retries int
	Backoff time.Duration
	// Now is the clock that stamps entries (default time.Now).
	Now func() time.Time
	// MaxBytes caps the bytes of messages this Writer stores (0: no cap),
	// so that one task's output cannot fill the database. The entry that
	// would pass it is not stored; in its place comes one system entry
	// saying the log was truncated, and every later entry is dropped (the
	// task itself goes on: see Truncated).
	MaxBytes int64
}

// Defaults of Options.
const (
	DefaultMaxLine     = 16 << 10
	DefaultFlushLines  = 256
	DefaultFlushEvery  = 100 * time.Millisecond
	DefaultMaxBuffered = 64 << 10
	DefaultRetries     = 8
	DefaultBackoff     = 100 * time.Millisecond

	maxBackoff = 5 * time.Second
	// maxBatch bounds the entries of one AppendTaskLogs call, and so the
	// time the store's write lock is held for one task's log.
	maxBatch = 4096
	// writeTimeout bounds one store write.
	writeTimeout = 30 * time.Second
)

func (o Options) withDefaults() Options {
	if o.MaxLine <= 0 {
		o.MaxLine = DefaultMaxLine
	}
	o.MaxLine = max(o.MaxLine, utf8.UTFMax)
	if o.FlushLines <= 0 {
		o.FlushLines = DefaultFlushLines
	}
	if o.FlushEvery <= 0 {
		o.FlushEvery = DefaultFlushEvery
	}
	if o.MaxBuffered <= 0 {
		o.MaxBuffered = DefaultMaxBuffered
	}
	if o.Retries <= 0 {
		o.Retries = DefaultRetries
	}
	if o.Backoff <= 0 {
		o.Backoff = DefaultBackoff
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Writer is the log of one task. Log never waits for the store (only, under
// backpressure, for room in the buffer): entries are numbered as they
// arrive and a flusher goroutine writes them in order, in batches, through
// store.AppendTaskLogs, then publishes each written entry, as an
// *event.Line (which its subscribers share), on the bus topic "task:<id>".
//
// A failed write is retried, with backoff, as it was: entries are never
// dropped, reordered or renumbered, so the stored log is always 1…n with no
// gap. After Options.Retries failures in a row the Writer gives up: what was
// stored stays, later entries are discarded, and Close reports the error.
//
// A Writer is safe for concurrent use. Close it exactly when the task's
// output has ended.
type Writer struct {
	st     *store.Store
	bus    *bus.Bus
	taskID string
	topic  string
	opts   Options

	mu       sync.Mutex
	room     *sync.Cond // signalled when pending drops or the writer fails
	buf      []store.LogEntry
	pending  int   // entries buffered or being written
	nextSeq  int64 // the seq of the next entry
	lastSeq  int64 // the last seq stored
	closed   bool  // Close has begun: Log ignores further entries
	bytes    int64 // message bytes taken, against MaxBytes
	cutOff   bool  // MaxBytes was reached: Log drops further entries
	failed   error // the store error the writer gave up on
	lines    []*lineWriter
	kick     chan struct{} // wakes the flusher; capacity 1
	closing  chan struct{}
	done     chan struct{}
	closeErr error
	once     sync.Once
}

// NewWriter starts the log of task taskID, whose first entry gets firstSeq
// (1 for a new task; one more than store.LastLogSeq to go on with a log).
// b may be nil: then nothing is published.
func NewWriter(st *store.Store, b *bus.Bus, taskID string, firstSeq int64, opts Options) *Writer {
	firstSeq = max(firstSeq, 1)
	w := &Writer{
		st:      st,
		bus:     b,
		taskID:  taskID,
		topic:   event.TaskTopic(taskID),
		opts:    opts.withDefaults(),
		nextSeq: firstSeq,
		lastSeq: firstSeq - 1,
		kick:    make(chan struct{}, 1),
		closing: make(chan struct{}),
		done:    make(chan struct{}),
	}
	w.room = sync.NewCond(&w.mu)
	go w.flush()
	return w
}

// Log adds one line to the log. Invalid UTF-8 in message is replaced with
// U+FFFD and one trailing "\r" removed; a message longer than
// Options.MaxLine becomes several entries. An unknown level is logged as
// info and an unknown source as system, so that one bad call cannot stop
// the log. Log after Close does nothing.
func (w *Writer) Log(level, source, message string, fields json.RawMessage) {
	if !validLevel(level) {
		level = store.LogInfo
	}
	if !validSource(source) {
		source = store.LogSystem
	}
	message = strings.TrimSuffix(strings.ToValidUTF8(message, "\uFFFD"), "\r")
	if len(fields) == 0 || !json.Valid(fields) {
		fields = nil
	}
	now := w.opts.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	for {
		part := message
		if len(part) > w.opts.MaxLine {
			part = part[:cut(part, w.opts.MaxLine)]
		}
		message = message[len(part):]
		if !w.withinCap(len(part), now) {
			return
		}
		if !w.add(store.LogEntry{Level: level, Source: source, Message: part, Time: now, Fields: fields}) {
			return
		}
		if message == "" {
			return
		}
	}
}

// withinCap reports whether n more message bytes fit under MaxBytes, and
// counts them if so. The first time they do not, it logs the truncation
// line instead. w.mu is held.
func (w *Writer) withinCap(n int, now time.Time) bool {
	if w.cutOff {
		return false
	}
	if w.opts.MaxBytes <= 0 || w.bytes+int64(n) <= w.opts.MaxBytes {
		w.bytes += int64(n)
		return true
	}
	w.cutOff = true
	w.add(store.LogEntry{Level: store.LogWarn, Source: store.LogSystem, Time: now,
		Message: fmt.Sprintf("log truncated: this task's output passed the cap of %d bytes (max-task-log-bytes); the task goes on, its further output is not kept", w.opts.MaxBytes)})
	return false
}

// Truncated reports whether the log reached Options.MaxBytes and dropped
// output since.
func (w *Writer) Truncated() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cutOff
}

// add numbers and buffers one entry, waiting for room; it reports false
// when the writer is closed or has failed. w.mu is held.
func (w *Writer) add(e store.LogEntry) bool {
	for w.pending >= w.opts.MaxBuffered && w.failed == nil && !w.closed {
		w.room.Wait()
	}
	if w.failed != nil || w.closed {
		return false
	}
	e.TaskID = w.taskID
	e.Seq = w.nextSeq
	w.nextSeq++
	w.buf = append(w.buf, e)
	w.pending++
	if len(w.buf) >= w.opts.FlushLines {
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}
	return true
}

// cut returns where to cut s to at most n bytes without splitting a UTF-8
// character; s is valid UTF-8 and longer than n.
func cut(s string, n int) int {
	i := n
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	if i == 0 { // cannot happen for valid UTF-8 and n >= UTFMax
		return n
	}
	return i
}

// LastSeq returns the seq of the last entry stored (and published): firstSeq
// - 1 before the first write.
func (w *Writer) LastSeq() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastSeq
}

// Sync waits until every entry logged before it is stored (or the writer
// gave up, or was closed). A task's state published after Sync — its
// progress — then never reaches a reader before the lines it follows:
// readers that get the state first find those lines in the store.
func (w *Writer) Sync() {
	w.mu.Lock()
	defer w.mu.Unlock()
	target := w.nextSeq - 1
	for w.lastSeq < target && w.failed == nil {
		select {
		case <-w.done:
			return
		case w.kick <- struct{}{}:
		default:
		}
		w.room.Wait()
	}
}

// Close logs the partial last lines of Stdout and Stderr, waits until every
// entry is stored and published, stops the flusher and returns the store
// error the writer gave up on, if any. It is safe to call more than once.
func (w *Writer) Close() error {
	w.once.Do(func() {
		w.mu.Lock()
		lines := w.lines
		w.mu.Unlock()
		for _, lw := range lines {
			lw.close()
		}
		w.mu.Lock()
		w.closed = true
		w.room.Broadcast()
		w.mu.Unlock()
		close(w.closing)
		<-w.done
		w.mu.Lock()
		w.closeErr = w.failed
		w.mu.Unlock()
	})
	return w.closeErr
}

// flush is the flusher goroutine: it writes the buffer whenever it holds
// FlushLines entries or FlushEvery has passed, and everything at Close.
func (w *Writer) flush() {
	defer close(w.done)
	ticker := time.NewTicker(w.opts.FlushEvery)
	defer ticker.Stop()
	for {
		closing := false
		select {
		case <-w.kick:
		case <-ticker.C:
		case <-w.closing:
			closing = true
		}
		for w.writeBatch() {
		}
		if closing {
			return
		}
	}
}

// writeBatch writes up to maxBatch buffered entries, retrying on failure,
// then publishes them. It reports whether more may be waiting.
func (w *Writer) writeBatch() bool {
	w.mu.Lock()
	if w.failed != nil || len(w.buf) == 0 {
		w.mu.Unlock()
		return false
	}
	n := min(len(w.buf), maxBatch)
	batch := w.buf[:n:n]
	w.buf = w.buf[n:]
	if len(w.buf) == 0 {
		w.buf = nil // let the array go
	}
	w.mu.Unlock()

	err := w.write(batch)

	w.mu.Lock()
	if err != nil {
		w.failed = fmt.Errorf("task %s log: entries %d to %d: %w", w.taskID, batch[0].Seq, batch[n-1].Seq, err)
		w.buf = nil
		w.pending = 0
	} else {
		w.lastSeq = batch[n-1].Seq
		w.pending -= n
	}
	w.room.Broadcast()
	more := err == nil && len(w.buf) > 0
	w.mu.Unlock()
	if err == nil && w.bus != nil {
		// All at once: each subscriber wakes once for the batch.
		lines := make([]any, len(batch))
		for i, e := range batch {
			lines[i] = event.NewLine(e)
		}
		w.bus.PublishAll(w.topic, lines)
	}
	return more
}

// write stores batch, retrying with backoff. A conflict on a retry is a
// success when the store holds the batch already: the failed attempt may
// have committed.
func (w *Writer) write(batch []store.LogEntry) error {
	backoff := w.opts.Backoff
	var err error
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
		err = w.st.AppendTaskLogs(ctx, batch)
		if err != nil && attempt > 0 && errors.Is(err, fault.ErrConflict) {
			if last, lerr := w.st.LastLogSeq(ctx, w.taskID); lerr == nil && last >= batch[len(batch)-1].Seq {
				err = nil
			}
		}
		cancel()
		if err == nil || attempt >= w.opts.Retries {
			return err
		}
		time.Sleep(backoff)
		backoff = min(2*backoff, maxBackoff)
	}
}

func validLevel(l string) bool {
	switch l {
	case store.LogDebug, store.LogInfo, store.LogWarn, store.LogError:
		return true
	}
	return false
}

func validSource(s string) bool {
	switch s {
	case store.LogStdout, store.LogStderr, store.LogSystem, store.LogAssistant, store.LogTool:
		return true
	}
	return false
}
