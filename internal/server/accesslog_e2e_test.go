package server_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
)

// TestAccessLogLine checks the access log line of Connect JSON calls, field
// by field and in order, as the README documents it: a call served, one
// refused by validation (its Connect code) and one refused for want of
// credentials (no user).
func TestAccessLogLine(t *testing.T) {
	t.Parallel()
	var logs lockedBuffer
	srv := startLoggedServer(t, &logs)
	c := srv.clients(protocols[0])
	token := register(t, c, "logged@example.com").GetTokens().GetAccessToken()
	me, err := c.Auth.GetCurrentUser(as(t.Context(), token), &berthv1.GetCurrentUserRequest{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := c.Workspace.CreateWorkspace(as(t.Context(), token), &berthv1.CreateWorkspaceRequest{Name: "logged"})
	if err != nil {
		t.Fatal(err)
	}
	const path = "/berth.v1.WorkspaceService/GetWorkspace"
	for _, call := range []struct {
		requestID, auth, body string
		status                int
		user, code            string
	}{
		{"log-ok", "Bearer " + token, `{"id":"` + w.GetWorkspace().GetId() + `"}`, http.StatusOK, me.GetUser().GetId(), ""},
		{"log-invalid", "Bearer " + token, `{"id":"not a uuid"}`, http.StatusBadRequest, me.GetUser().GetId(), "invalid_argument"},
		{"log-anonymous", "", `{"id":"` + w.GetWorkspace().GetId() + `"}`, http.StatusUnauthorized, "", "unauthenticated"},
	} {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+path, strings.NewReader(call.body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Request-Id", call.requestID)
		if call.auth != "" {
			req.Header.Set("Authorization", call.auth)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(res.Body)
		_ = res.Body.Close()
		if err != nil || res.StatusCode != call.status {
			t.Fatalf("%s: status %d (%v), want %d: %s", call.requestID, res.StatusCode, err, call.status, body)
		}

		line := waitForLine(t, &logs, `"request_id":"`+call.requestID+`"`)
		keys := []string{"time", "level", "msg", "method", "path", "status", "bytes", "duration", "remote", "proto"}
		if call.user != "" {
			keys = append(keys, "user")
		}
		if call.code != "" {
			keys = append(keys, "code")
		}
		keys = append(keys, "request_id")
		if got := lineKeys(t, line); !slices.Equal(got, keys) {
			t.Errorf("%s: keys %q, want %q: %s", call.requestID, got, keys, line)
		}
		var e struct {
			Time                                                time.Time
			Level, Msg, Method, Path, Remote, Proto, User, Code string
			RequestID                                           string `json:"request_id"`
			Status, Bytes                                       int
			Duration                                            time.Duration // slog's JSON: nanoseconds
		}
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatal(err)
		}
		if e.Level != "INFO" || e.Msg != "request" || e.Method != http.MethodPost || e.Path != path || e.Status != call.status ||
			e.Bytes != len(body) || e.Duration <= 0 || !strings.HasPrefix(e.Remote, "127.0.0.1:") || e.Proto != "HTTP/1.1" ||
			e.User != call.user || e.Code != call.code || e.RequestID != call.requestID || time.Since(e.Time) > time.Hour {
			t.Errorf("%s: logged %s", call.requestID, line)
		}
	}
}

// waitForLine waits for the log line that holds needle, as long as the
// test may run.
func waitForLine(t *testing.T, logs *lockedBuffer, needle string) string {
	t.Helper()
	end := time.Now().Add(time.Minute)
	if d, ok := t.Deadline(); ok && d.Before(end) {
		end = d
	}
	for {
		for l := range strings.SplitSeq(logs.String(), "\n") {
			if strings.Contains(l, needle) {
				return l
			}
		}
		if time.Now().After(end) {
			t.Fatalf("no log line holds %s:\n%s", needle, logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// lineKeys are the keys of a JSON log line's object, in order.
func lineKeys(t *testing.T, line string) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader([]byte(line)))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("not a JSON object: %s", line)
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, tok.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	return keys
}
