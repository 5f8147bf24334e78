package server_test

import (
	"context"
	"iter"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tmaxmax/go-sse"
	"google.golang.org/protobuf/encoding/protojson"

	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
)

// eventSource is a client that follows the HTML EventSource rules a
// browser does: one fixed URL, cookies kept by a jar (path-scoped, as a
// browser keeps them), Last-Event-ID sent on every reconnect, a reconnect
// after any drop, and closed for good by a 204 or any other non-200 answer.
type eventSource struct {
	url    string
	client *http.Client
	lastID string
}

// connect opens the stream once; status is the answer's code, and next
// yields its events until the connection ends.
func (es *eventSource) connect(t *testing.T, ctx context.Context) (status int, header http.Header, next func() (sse.Event, error, bool), stop func()) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, es.url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Cache-Control", "no-cache")
	if es.lastID != "" {
		req.Header.Set("Last-Event-ID", es.lastID)
	}
	res, err := es.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK {
		res.Body.Close()
		return res.StatusCode, res.Header, nil, func() {}
	}
	n, s := iter.Pull2(sse.Read(res.Body, nil))
	return res.StatusCode, res.Header, n, func() { s(); res.Body.Close() }
}

// TestEventSourceWithTicketReconnects: a browser's EventSource opened with
// a single-use ?ticket= survives dropped connections — its reconnects send
// the spent ticket again, and the path-scoped HttpOnly resume cookie the
// stream set lets them in — and gets every line exactly once; after the
// end, its reconnect gets 204 and it stops.
func TestEventSourceWithTicketReconnects(t *testing.T) {
	t.Parallel()
	e := newStreamEnv(t, "--secure-cookies=false")
	id := e.task(t, "resumable [slow] [lines:30]")
	ticket, err := e.c.Auth.CreateStreamTicket(e.ctx, &berthv1.CreateStreamTicketRequest{Target: "task:" + id})
	if err != nil {
		t.Fatal(err)
	}
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	path := "/api/v1/tasks/" + id + "/logs/stream"
	es := &eventSource{url: e.srv.URL + path + "?ticket=" + ticket.GetTicket(), client: &http.Client{Jar: jar}}

	var seqs []int64
	var end *berthv1.TaskEnd
	deadline := time.Now().Add(within(t))
	for drops := 0; end == nil; drops++ {
		if time.Now().After(deadline) {
			t.Fatalf("no end after %d reconnects and %d lines", drops, len(seqs))
		}
		ctx, cancel := context.WithCancel(t.Context())
		status, header, next, stop := es.connect(t, ctx)
		if status != http.StatusOK {
			cancel()
			t.Fatalf("reconnect %d: status %d; an EventSource would close for good", drops, status)
		}
		if drops == 0 {
			checkResumeCookie(t, jar, e.srv.URL+path)
			set := header.Get("Set-Cookie")
			for _, attr := range []string{"Path=" + path, "HttpOnly", "SameSite=Strict", "Max-Age="} {
				if !strings.Contains(set, attr) {
					t.Errorf("Set-Cookie %q lacks %s", set, attr)
				}
			}
		}
		// Drop the connection after a few lines, as a flaky network does.
		for taken := 0; end == nil && (drops >= 4 || taken < 3); {
			ev, err, ok := next()
			if !ok || err != nil {
				break
			}
			switch ev.Type {
			case "log":
				n, _ := strconv.ParseInt(ev.LastEventID, 10, 64)
				seqs = append(seqs, n)
				es.lastID = ev.LastEventID
				taken++
			case "end":
				if ev.LastEventID != "end" {
					t.Errorf("the end event's id is %q, want end", ev.LastEventID)
				}
				es.lastID = ev.LastEventID // as EventSource keeps any event's id
				end = &berthv1.TaskEnd{}
				if err := protojson.Unmarshal([]byte(ev.Data), end); err != nil {
					t.Fatal(err)
				}
			}
		}
		stop()
		cancel()
	}
	checkSeqs(t, "eventsource", seqs, end.GetLastSeq())

	// The stream is over; the browser reconnects once more and is told
	// there is nothing left.
	status, _, _, stop := es.connect(t, t.Context())
	stop()
	if status != http.StatusNoContent {
		t.Errorf("a reconnect after the end: status %d, want 204", status)
	}

	// Without the cookie the spent ticket opens nothing.
	fresh := &eventSource{url: es.url, client: &http.Client{}}
	if status, _, _, stop := fresh.connect(t, t.Context()); status != http.StatusUnauthorized {
		stop()
		t.Errorf("the spent ticket alone: status %d, want 401", status)
	}
}

// checkResumeCookie checks the resume cookie is where a browser keeps it
// for this stream only, and how the server set it.
func checkResumeCookie(t *testing.T, jar http.CookieJar, streamURL string) {
	t.Helper()
	found := false
	for _, c := range jar.Cookies(mustURL(t, streamURL)) {
		found = found || c.Name == "berth_resume" && strings.HasPrefix(c.Value, "berth_tk_")
	}
	if !found {
		t.Error("the stream set no resume cookie for its own path")
	}
	for _, other := range []string{"/berth.v1.TaskService/GetTask", "/api/v1/tasks/other/logs/stream"} {
		u := mustURL(t, streamURL)
		u.Path = other
		for _, c := range jar.Cookies(u) {
			if c.Name == "berth_resume" {
				t.Errorf("the resume cookie is also sent to %s", other)
			}
		}
	}
}

func mustURL(t *testing.T, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
