package server

import (
	"log/slog"
	"testing"

	"connectrpc.com/connect/v2"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/proto"

	"github.com/berthhq/berth/internal/fault"
)

// TestConnectErrorsFollowTheFaultTable: every fault class crosses the
// Connect edge with its code and its ErrorInfo reason, as SSE, the
// WebSocket and OIDC send them (fault.Classes is the one table).
func TestConnectErrorsFollowTheFaultTable(t *testing.T) {
	t.Parallel()
	logger := slog.New(slog.DiscardHandler)
	for _, c := range fault.Classes {
		err := toConnectError(t.Context(), logger, connect.Spec{Procedure: "/test"}, fault.New(c.Kind, "public words"))
		ce, ok := err.(*connect.Error)
		if !ok {
			t.Fatalf("%v: %T", c.Kind, err)
		}
		if ce.Code().String() != c.Code || ce.Message() != "public words" {
			t.Errorf("%v: %v %q, want %s", c.Kind, ce.Code(), ce.Message(), c.Code)
		}
		if Reason(ce.Code()) != c.Reason {
			t.Errorf("Reason(%v) = %s, want %s", ce.Code(), Reason(ce.Code()), c.Reason)
		}
		reason := ""
		for _, d := range ce.Details() {
			var info errdetails.ErrorInfo
			if d.Type == "google.rpc.ErrorInfo" && proto.Unmarshal(d.Value, &info) == nil {
				reason = info.GetReason()
			}
		}
		if reason != c.Reason {
			t.Errorf("%v: ErrorInfo reason %q, want %q", c.Kind, reason, c.Reason)
		}
	}
}
