package tasklog

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/berthhq/berth/internal/event"
	"github.com/berthhq/berth/internal/fault"
	"github.com/berthhq/berth/internal/store"
)

// flush is the flusher goroutine, a group commit: it sleeps until a line
// is waiting, lingers up to FlushEvery for more to join it, then writes
// what is waiting and goes on writing while lines keep coming, each write
// taking every line that arrived during the one before. A lone line is
// thus stored (and published) one linger and one write after it was
// logged, and a flood is written in batches as large as the store's
// pace makes them, with no timer between them.
func (w *Writer) flush() {
	defer close(w.done)
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	for {
		closing := false
		select {
		case <-w.kick:
			closing = w.linger(linger)
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

// linger waits, on timer, up to FlushEvery for more lines to join those
// waiting, unless FlushLines are waiting already or Sync is waiting; a
// kick (FlushLines reached, or Sync) or Close ends it early. It reports
// whether Close has begun.
//
// Sync sets hurry before it kicks, so it cannot be missed: either linger
// sees hurry, or it saw the flag unset before Sync took the lock, and
// Sync's kick (or one still in the channel) then ends the wait.
func (w *Writer) linger(timer *time.Timer) (closing bool) {
	if w.opts.FlushEvery <= 0 {
		return false
	}
	w.mu.Lock()
	waiting, hurry := len(w.buf), w.hurry
	w.mu.Unlock()
	if waiting == 0 || waiting >= w.opts.FlushLines || hurry {
		return false // a stale kick, a batch ready, or Sync waiting
	}
	timer.Reset(w.opts.FlushEvery)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-w.kick:
	case <-w.closing:
		return true
	}
	return false
}

// writeBatch writes the next batch of buffered entries — at most maxBatch
// of them and maxBatchBytes of messages, at least one — retrying on
// failure, then publishes them. It reports whether more are waiting.
func (w *Writer) writeBatch() bool {
	w.mu.Lock()
	if w.failed != nil || len(w.buf) == 0 {
		w.mu.Unlock()
		return false
	}
	n := batchLen(w.buf)
	batch := w.buf[:n:n]
	w.buf = w.buf[n:]
	w.hurry = false // a Sync still waiting after this write sets it again
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

// batchLen is how many entries at the head of buf the next batch takes:
// up to maxBatch, and up to maxBatchBytes of messages and fields, but
// always at least one.
func batchLen(buf []store.LogEntry) int {
	size := 0
	for i, e := range buf {
		size += len(e.Message) + len(e.Fields)
		if i == maxBatch || (i > 0 && size > maxBatchBytes) {
			return i
		}
	}
	return len(buf)
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
