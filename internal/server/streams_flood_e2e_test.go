package server_test

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	sse "github.com/tmaxmax/go-sse"
	"google.golang.org/protobuf/encoding/protojson"

	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
)

// TestSlowStreamConsumer: a reader that reads nothing while a task floods
// its log neither delays a fast reader nor the task, and then gets every
// line. (That a reader whose queue overflows catches up from the store with
// no gap is proved in internal/stream, TestFollowLaggedReader;
// BenchmarkSlowStreamConsumer floods with 20,000 lines.)
func TestSlowStreamConsumer(t *testing.T) {
	t.Parallel()
	e := newStreamEnv(t)
	const lines = 3000
	id := e.task(t, fmt.Sprintf("flood [lines:%d]", lines))
	slow, fast := slowAndFast(t, e, id)
	var fastSeqs []int64
	var fastEnd *berthv1.TaskEnd
	select {
	case r := <-fast:
		fastSeqs, fastEnd = r.seqs, r.end
	case <-time.After(within(t)):
		t.Fatal("the fast reader did not finish while the slow one stalled")
	}
	checkSeqs(t, "fast", fastSeqs, fastEnd.GetLastSeq())
	if fastEnd.GetLastSeq() < lines {
		t.Fatalf("only %d lines", fastEnd.GetLastSeq())
	}
	task := waitTask(t, e.c, e.ctx, id, nil)
	if task.GetStatus() != berthv1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("task %v", task.GetStatus())
	}
	slowSeqs, slowEnd := readSSETask(t, slow, 0)
	checkSeqs(t, "slow", slowSeqs, slowEnd.GetLastSeq())
	if slowEnd.GetLastSeq() != fastEnd.GetLastSeq() {
		t.Errorf("slow got %d lines, fast %d", slowEnd.GetLastSeq(), fastEnd.GetLastSeq())
	}
}

// BenchmarkSlowStreamConsumer is TestSlowStreamConsumer at flood size: a
// task writes 20,000 lines while one SSE reader stalls; it reports how long
// the fast reader took to get them all, and the stalled one after it.
func BenchmarkSlowStreamConsumer(b *testing.B) {
	const lines = 20000
	e := newStreamEnv(b)
	for b.Loop() {
		start := time.Now()
		id := e.task(b, fmt.Sprintf("flood [lines:%d]", lines))
		slow, fast := slowAndFast(b, e, id)
		r := <-fast
		fastTook := time.Since(start)
		checkSeqs(b, "fast", r.seqs, r.end.GetLastSeq())
		if r.end.GetLastSeq() < lines || r.end.GetStatus() != berthv1.TaskStatus_TASK_STATUS_SUCCEEDED {
			b.Fatalf("fast: %d lines, %v", r.end.GetLastSeq(), r.end.GetStatus())
		}
		slowSeqs, slowEnd := readSSETask(b, slow, 0)
		checkSeqs(b, "slow", slowSeqs, slowEnd.GetLastSeq())
		if slowEnd.GetLastSeq() != r.end.GetLastSeq() {
			b.Fatalf("slow got %d lines, fast %d", slowEnd.GetLastSeq(), r.end.GetLastSeq())
		}
		b.ReportMetric(float64(r.end.GetLastSeq()), "lines")
		b.ReportMetric(float64(fastTook.Milliseconds()), "ms-fast-reader")
		b.ReportMetric(float64(time.Since(start).Milliseconds()), "ms-slow-reader")
	}
}

// taskRead is what a reader of a task's SSE stream got.
type taskRead struct {
	seqs []int64
	end  *berthv1.TaskEnd
}

// slowAndFast opens two SSE streams of task id: slow, which the caller
// reads later (or never), and one read to its end at once, whose result
// fast delivers.
func slowAndFast(t testing.TB, e *streamEnv, id string) (slow *sseStream, fast <-chan taskRead) {
	t.Helper()
	url := e.srv.URL + "/api/v1/tasks/" + id + "/logs/stream"
	slow, code := openSSE(t, e.ctx, url, bearer(e.token))
	if code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	f, code := openSSE(t, e.ctx, url, bearer(e.token))
	if code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	done := make(chan taskRead, 1)
	go func() {
		seqs, end := readSSETask(t, f, 0)
		done <- taskRead{seqs, end}
	}()
	return slow, done
}

// sseSubscribers is how many SSE clients follow one task at once in the
// test; BenchmarkManySSESubscribers floods with ten times as many.
const sseSubscribers = 100

// TestManySSESubscribers: many clients follow one task at once and every
// one gets every line, in order, then the end.
func TestManySSESubscribers(t *testing.T) {
	t.Parallel()
	e := newStreamEnv(t)
	ctx, cancel := context.WithTimeout(e.ctx, within(t))
	defer cancel()
	start := time.Now()
	last, err := followMany(ctx, e, e.task(t, "many [slow] [lines:20]"), sseSubscribers)
	if err != nil {
		t.Fatal(err)
	}
	if last < 20 {
		t.Fatalf("last seq %d", last)
	}
	t.Logf("%d subscribers got %d lines each in %s", sseSubscribers, last, time.Since(start).Round(time.Millisecond))
}

// BenchmarkManySSESubscribers is TestManySSESubscribers at flood size:
// 1,000 SSE clients follow one task; it reports how long until every one
// had every line and the end.
func BenchmarkManySSESubscribers(b *testing.B) {
	const subscribers = 1000
	e := newStreamEnv(b)
	for b.Loop() {
		start := time.Now()
		last, err := followMany(e.ctx, e, e.task(b, "many [slow] [lines:20]"), subscribers)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(subscribers), "subscribers")
		b.ReportMetric(float64(last), "lines")
		b.ReportMetric(float64(time.Since(start).Milliseconds()), "ms-all-delivered")
	}
}

// followMany has n SSE clients follow task id from its start to its end at
// once, each checking that it gets seqs 1, 2, 3 … with no gap and no
// duplicate and an end that names its last line. It returns that last seq,
// on which they must all agree, or the first subscriber's failure.
func followMany(ctx context.Context, e *streamEnv, id string, n int) (int64, error) {
	url := e.srv.URL + "/api/v1/tasks/" + id + "/logs/stream"
	var wg sync.WaitGroup
	errs := make(chan error, n)
	lasts := make(chan int64, n)
	for i := range n {
		wg.Go(func() {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			req.Header = bearer(e.token)
			res, err := sseClient.Do(req)
			if err != nil {
				errs <- err
				return
			}
			defer res.Body.Close()
			want := int64(1)
			for ev, err := range sse.Read(res.Body, nil) {
				if err != nil {
					errs <- fmt.Errorf("subscriber %d: %w", i, err)
					return
				}
				switch ev.Type {
				case "log":
					if ev.LastEventID != strconv.FormatInt(want, 10) {
						errs <- fmt.Errorf("subscriber %d: id %s, want %d", i, ev.LastEventID, want)
						return
					}
					want++
				case "end":
					var end berthv1.TaskEnd
					_ = protojson.Unmarshal([]byte(ev.Data), &end)
					if end.GetLastSeq() != want-1 {
						errs <- fmt.Errorf("subscriber %d: %d lines, end says %d", i, want-1, end.GetLastSeq())
					}
					if end.GetStatus() != berthv1.TaskStatus_TASK_STATUS_SUCCEEDED {
						errs <- fmt.Errorf("subscriber %d: end %v", i, &end)
					}
					lasts <- end.GetLastSeq()
					return
				}
			}
			errs <- fmt.Errorf("subscriber %d: no end after %d lines", i, want-1)
		})
	}
	wg.Wait()
	close(errs)
	close(lasts)
	for err := range errs {
		return 0, err
	}
	var last int64 = -1
	for l := range lasts {
		if last >= 0 && l != last {
			return 0, fmt.Errorf("subscribers disagree on the last seq: %d and %d", l, last)
		}
		last = l
	}
	return last, nil
}
