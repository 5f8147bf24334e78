package ws_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/berthhq/berth/internal/access"
	"github.com/berthhq/berth/internal/fault"
	"github.com/berthhq/berth/internal/store"
	"github.com/berthhq/berth/internal/stream"
	"github.com/berthhq/berth/internal/ws"
)

// TestUpgradeRefusalsFollowTheFaultTable: an upgrade refused by its
// credentials or by admission is answered with the fault's HTTP status,
// Connect code and public message from the one table (fault.Classes): a
// conflict is a 409, a failed precondition a 412, an exhausted budget a
// 429 with Retry-After; anything that is not a fault a 500 that tells
// nothing.
func TestUpgradeRefusalsFollowTheFaultTable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err        error
		status     int
		code, msg  string
		retryAfter string
	}{
		{fault.New(fault.ErrConflict, "already connected"), http.StatusConflict, "already_exists", "already connected", ""},
		{fault.New(fault.ErrFailedPrecondition, "the account is locked"), http.StatusPreconditionFailed, "failed_precondition", "the account is locked", ""},
		{&fault.Error{Kind: fault.ErrResourceExhausted, Message: "too many streams", RetryAfter: 3 * time.Second}, http.StatusTooManyRequests, "resource_exhausted", "too many streams", "3"},
		{fault.New(fault.ErrPermissionDenied, "not yours"), http.StatusForbidden, "permission_denied", "not yours", ""},
		{errors.New("disk on fire"), http.StatusInternalServerError, "internal", "internal error", ""},
	} {
		t.Run(tc.code, func(t *testing.T) {
			t.Parallel()
			for _, stage := range []string{"credentials", "admission"} {
				cfg := ws.Config{Auth: stream.Auth{Authenticate: func(*http.Request) (access.Principal, error) {
					if stage == "credentials" {
						return access.Principal{}, tc.err
					}
					return access.Principal{UserID: "u", Role: store.RoleMember}, nil
				}}}
				if stage == "admission" {
					cfg.Admit = func(context.Context, access.Principal, http.Header) (func(), error) { return nil, tc.err }
				}
				h := ws.New(cfg)
				srv := httptest.NewServer(h)
				t.Cleanup(srv.Close)
				req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/ws", nil)
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Sec-WebSocket-Protocol", ws.Subprotocol)
				res, err := srv.Client().Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(res.Body)
				_ = res.Body.Close()
				if res.StatusCode != tc.status {
					t.Errorf("%s: status %d, want %d (%s)", stage, res.StatusCode, tc.status, body)
				}
				var e struct{ Code, Message string }
				if err := json.Unmarshal(body, &e); err != nil || e.Code != tc.code || e.Message != tc.msg {
					t.Errorf("%s: body %s (%v), want code %q, message %q", stage, body, err, tc.code, tc.msg)
				}
				if got := res.Header.Get("Retry-After"); got != tc.retryAfter {
					t.Errorf("%s: Retry-After %q, want %q", stage, got, tc.retryAfter)
				}
			}
		})
	}
}
