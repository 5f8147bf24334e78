// Package tasklog turns a task's output into its durable log: numbered
// entries (seq 1, 2, 3 … with no gaps) written to the store in batches and
// only then published on the bus, as *event.Line values on the task's topic
// (event.TaskTopic), so that a reader who saw entry n on the bus can always
// find 1…n in the store and resume from there. The batches are a group
// commit (commit.go): a line waits for the write before it, not for a
// timer, so a live log is as fresh as the store is fast.
package tasklog

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/berthhq/berth/internal/bus"
	"github.com/berthhq/berth/internal/event"
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
	// FlushEvery is how long the writer lingers, once a line is waiting
	// and no write is under way, for more lines to join it in one write
	// (default 0: none). Lines that arrive while a write is under way are
	// written right after it, without a linger: they have batched already.
	// Measured at 2,000 lines/s (BenchmarkLatency), a linger of 1–2 ms
	// saved at most a quarter of the writer's CPU per line and added its
	// own length to every line's latency; a store that slows down under
	// load makes larger batches by itself.
	FlushEvery time.Duration
	// FlushLines is how many waiting entries end the linger at once
	// (default 256).
	FlushLines int
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
	DefaultMaxBuffered = 64 << 10
	DefaultRetries     = 8
	DefaultBackoff     = 100 * time.Millisecond

	maxBackoff = 5 * time.Second
	// maxBatch and maxBatchBytes bound the entries of one AppendTaskLogs
	// call, and their bytes, and so the time the store's write lock is held
	// for one task's log and the memory of one statement.
	maxBatch      = 4096
	maxBatchBytes = 4 << 20
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
// arrive and a flusher goroutine writes them in order, in batches (see
// flush), through store.AppendTaskLogs, then publishes each written entry,
// as an *event.Line (which its subscribers share), on the bus topic
// "task:<id>".
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
	hurry    bool  // Sync waits: write what is waiting without a linger
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
	// The first line waiting wakes the flusher, and a full batch ends its
	// linger; lines in between join them without a word.
	if len(w.buf) == 1 || len(w.buf) == w.opts.FlushLines {
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
		w.hurry = true
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
