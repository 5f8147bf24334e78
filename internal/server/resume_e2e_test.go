package server_test

import (
	"math"
	"net/http"
	"strconv"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"

	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
)

// TestResumeAfterLargestSeq: a client that says it has every line up to
// the largest seq (9223372036854775807, found by FuzzSeq) gets no line
// again, only the end, over SSE (since and Last-Event-ID) and WebSocket.
// since+1 used to wrap round to a negative seq and replay the whole log.
func TestResumeAfterLargestSeq(t *testing.T) {
	t.Parallel()
	e := newStreamEnv(t)
	id := e.task(t, "resume [lines:5]")
	waitTaskEnd(t, e, id)
	largest := strconv.FormatInt(math.MaxInt64, 10)
	url := e.srv.URL + "/api/v1/tasks/" + id + "/logs/stream"

	lastEventID := bearer(e.token)
	lastEventID.Set("Last-Event-ID", largest)
	for name, try := range map[string]struct {
		url    string
		header http.Header
	}{
		"since":         {url + "?since=" + largest, bearer(e.token)},
		"Last-Event-ID": {url, lastEventID},
	} {
		s, code := openSSE(t, e.ctx, try.url, try.header)
		if code != http.StatusOK {
			t.Fatalf("%s: status %d", name, code)
		}
		seqs, end := readSSETask(t, s, 0)
		s.close()
		if len(seqs) != 0 || end.GetLastSeq() < 5 {
			t.Errorf("%s: lines %v again, end %v", name, seqs, end)
		}
	}

	c := mustDialWS(t, e, e.token)
	wsSend(t, c, wsMessage{Type: "subscribe", ID: "s1", Channel: "task:" + id, Since: math.MaxInt64})
	if m := wsRead(t, c); m.Type != "subscribed" {
		t.Fatalf("got %+v, want subscribed", m)
	}
	for {
		m := wsRead(t, c)
		if m.Type != "event" {
			t.Fatalf("got %+v", m)
		}
		if m.Action == "log" {
			t.Fatalf("line %s again", m.Data)
		}
		if m.Action == "end" {
			var end berthv1.TaskEnd
			if err := protojson.Unmarshal(m.Data, &end); err != nil || end.GetLastSeq() < 5 {
				t.Fatalf("end %s: %v", m.Data, err)
			}
			return
		}
	}
}
