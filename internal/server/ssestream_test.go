package server_test

import (
	"context"
	"io"
	"iter"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	sse "github.com/tmaxmax/go-sse"
	"google.golang.org/protobuf/encoding/protojson"

	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
)

// sseStream is an open event stream. A test's cleanup may close it while
// a reader goroutine is still inside next: close marks the stream closing,
// cancels its request (which ends the blocked read), then takes mu, which
// next holds for the whole read, before it stops the iterator, so the two
// never touch the iterator or the body at once.
type sseStream struct {
	res     *http.Response
	cancel  context.CancelFunc
	closing atomic.Bool
	once    sync.Once
	mu      sync.Mutex // held by next for a whole read; close takes it to stop pull
	pull    func() (sse.Event, error, bool)
	stop    func()
	stopped bool // guarded by mu
}

var sseClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2000, MaxConnsPerHost: 0}}

// openSSE opens an event stream; header may be nil.
func openSSE(t testing.TB, ctx context.Context, url string, header http.Header) (*sseStream, int) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	res, err := sseClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, res.Body)
		_ = res.Body.Close()
		cancel()
		return nil, res.StatusCode
	}
	pull, stop := iter.Pull2(sse.Read(res.Body, nil))
	s := &sseStream{res: res, cancel: cancel, pull: pull, stop: stop}
	t.Cleanup(s.close)
	return s, res.StatusCode
}

// next reads the stream's next event; once the stream is closed it reports
// the end (ok false).
func (s *sseStream) next() (sse.Event, error, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return sse.Event{}, nil, false
	}
	return s.pull()
}

// closed reports whether close has begun: a read that fails after that was
// ended by the test, not by the server.
func (s *sseStream) closed() bool { return s.closing.Load() }

// close ends the stream once; it is safe while another goroutine reads.
func (s *sseStream) close() {
	s.once.Do(func() {
		s.closing.Store(true)
		s.cancel()
		s.mu.Lock()
		defer s.mu.Unlock()
		s.stopped = true
		s.stop()
		_ = s.res.Body.Close()
	})
}

func bearer(token string) http.Header {
	return http.Header{"Authorization": {"Bearer " + token}}
}

// readSSETask reads a task's event stream until end (or until take log
// lines when take > 0) and returns the seqs and the end.
func readSSETask(t testing.TB, s *sseStream, take int) ([]int64, *berthv1.TaskEnd) {
	t.Helper()
	var seqs []int64
	for {
		ev, err, ok := s.next()
		if (!ok || err != nil) && s.closed() {
			// The test closed the stream (it has ended or is cleaning up)
			// while this reader was still reading: nothing to report.
			return seqs, nil
		}
		if !ok {
			t.Fatalf("stream ended without end after %d lines", len(seqs))
		}
		if err != nil {
			t.Fatalf("reading the stream: %v", err)
		}
		switch ev.Type {
		case "log":
			var entry berthv1.LogEntry
			if err := protojson.Unmarshal([]byte(ev.Data), &entry); err != nil {
				t.Fatalf("log data %q: %v", ev.Data, err)
			}
			if ev.LastEventID != strconv.FormatInt(entry.GetSeq(), 10) {
				t.Fatalf("id %q for seq %d", ev.LastEventID, entry.GetSeq())
			}
			if !strings.Contains(ev.Data, `"task_id"`) {
				t.Fatalf("log data not snake_case: %s", ev.Data)
			}
			seqs = append(seqs, entry.GetSeq())
			if take > 0 && len(seqs) >= take {
				return seqs, nil
			}
		case "end":
			var end berthv1.TaskEnd
			if err := protojson.Unmarshal([]byte(ev.Data), &end); err != nil {
				t.Fatalf("end data %q: %v", ev.Data, err)
			}
			return seqs, &end
		}
	}
}
