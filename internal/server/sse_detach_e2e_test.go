package server_test

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
)

// TestDetachedSSEAccessLog: an SSE stream over HTTP/1.1, served on its
// connection past its handler's return, is logged once it ends, not when
// its handler returns: its access log line comes after the client closed
// the stream, with status 200 and a duration that covers the whole time
// the stream was open.
func TestDetachedSSEAccessLog(t *testing.T) {
	t.Parallel()
	var logs lockedBuffer
	srv := startLoggedServer(t, &logs)
	c := srv.clients(protocols[0])
	token := register(t, c, "detached@example.com").GetTokens().GetAccessToken()
	w, err := c.Workspace.CreateWorkspace(as(t.Context(), token), &berthv1.CreateWorkspaceRequest{Name: "detached"})
	if err != nil {
		t.Fatal(err)
	}
	path := "/api/v1/workspaces/" + w.GetWorkspace().GetId() + "/events"
	s, status := openSSE(t, t.Context(), srv.URL+path, http.Header{"Authorization": {"Bearer " + token}})
	if status != http.StatusOK {
		t.Fatalf("status %d", status)
	}
	if s.res.ProtoMajor != 1 {
		t.Fatalf("the stream is %s: the test needs HTTP/1.x", s.res.Proto)
	}
	opened := time.Now()
	if _, err, ok := s.next(); !ok || err != nil {
		t.Fatalf("first event: %v", err)
	}
	// The stream stays open a while; its handler returned long before.
	const hold = 400 * time.Millisecond
	time.Sleep(hold)
	if line, ok := accessLine(t, logs.String(), path); ok {
		t.Fatalf("the request was logged while its stream was open: %s", line)
	}
	s.close()
	held := time.Since(opened)

	end := time.Now().Add(time.Minute)
	if d, ok := t.Deadline(); ok && d.Before(end) {
		end = d
	}
	for {
		if line, ok := accessLine(t, logs.String(), path); ok {
			var e struct {
				Status   int
				Duration time.Duration // slog's JSON: nanoseconds
			}
			if err := json.Unmarshal([]byte(line), &e); err != nil {
				t.Fatal(err)
			}
			if e.Status != http.StatusOK {
				t.Errorf("logged with status %d, want 200: %s", e.Status, line)
			}
			if e.Duration < hold || e.Duration > held+time.Minute {
				t.Errorf("logged with duration %v, want one covering the stream (open %v): %s", e.Duration, held, line)
			}
			return
		}
		if time.Now().After(end) {
			t.Fatalf("no access log line for %s after its stream ended; logs:\n%s", path, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// accessLine finds the access log line of a request to path in logs.
func accessLine(t *testing.T, logs, path string) (string, bool) {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(logs))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e struct{ Msg, Path string }
		if json.Unmarshal(sc.Bytes(), &e) == nil && e.Msg == "request" && e.Path == path {
			return sc.Text(), true
		}
	}
	return "", false
}
