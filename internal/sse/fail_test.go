package sse_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/berthhq/berth/internal/access"
	"github.com/berthhq/berth/internal/fault"
	"github.com/berthhq/berth/internal/sse"
	"github.com/berthhq/berth/internal/stream"
)

// TestRefusalsFollowTheFaultTable: a stream that cannot open is answered
// with its fault's HTTP status, Connect code and public message from the
// one table (fault.Classes) — a conflict is a 409, a failed precondition a
// 412, an exhausted budget a 429 with Retry-After — and anything that is
// not a fault with a 500 that tells nothing.
func TestRefusalsFollowTheFaultTable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err        error
		status     int
		code, msg  string
		retryAfter string
	}{
		{fault.New(fault.ErrConflict, "already streaming"), http.StatusConflict, "already_exists", "already streaming", ""},
		{fault.New(fault.ErrFailedPrecondition, "the task is archived"), http.StatusPreconditionFailed, "failed_precondition", "the task is archived", ""},
		{&fault.Error{Kind: fault.ErrResourceExhausted, Message: "too many streams", RetryAfter: 1500 * time.Millisecond}, http.StatusTooManyRequests, "resource_exhausted", "too many streams", "2"},
		{fault.New(fault.ErrUnauthenticated, "sign in"), http.StatusUnauthorized, "unauthenticated", "sign in", ""},
		{fault.New(fault.ErrUnavailable, "the store is down"), http.StatusServiceUnavailable, "unavailable", "the store is down", ""},
		{errors.New("disk on fire"), http.StatusInternalServerError, "internal", "internal error", ""},
	} {
		t.Run(tc.code, func(t *testing.T) {
			t.Parallel()
			h := sse.New(sse.Config{Auth: stream.Auth{Authenticate: func(*http.Request) (access.Principal, error) {
				return access.Principal{}, tc.err
			}}})
			mux := http.NewServeMux()
			h.Mount(mux)
			srv := httptest.NewServer(mux)
			t.Cleanup(srv.Close)
			for _, path := range []string{"/api/v1/tasks/t1/logs/stream", "/api/v1/workspaces/w1/events"} {
				res, err := srv.Client().Get(srv.URL + path)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(res.Body)
				_ = res.Body.Close()
				if res.StatusCode != tc.status {
					t.Errorf("%s: status %d, want %d (%s)", path, res.StatusCode, tc.status, body)
				}
				if got := res.Header.Get("Content-Type"); got != "application/json" {
					t.Errorf("%s: Content-Type %q", path, got)
				}
				var e struct{ Code, Message string }
				if err := json.Unmarshal(body, &e); err != nil || e.Code != tc.code || e.Message != tc.msg {
					t.Errorf("%s: body %s (%v), want code %q, message %q", path, body, err, tc.code, tc.msg)
				}
				if got := res.Header.Get("Retry-After"); got != tc.retryAfter {
					t.Errorf("%s: Retry-After %q, want %q", path, got, tc.retryAfter)
				}
			}
		})
	}
}
