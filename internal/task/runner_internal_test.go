package task

import (
	"strings"
	"testing"

	"github.com/berthhq/berth/internal/store"
)

// TestAgentErrorCode: the CLI's subtypes become codes; anything an agent
// could make up instead is AGENT_ERROR.
func TestAgentErrorCode(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"error_max_turns": "ERROR_MAX_TURNS", "error_during_execution": "ERROR_DURING_EXECUTION",
		"": "AGENT_ERROR", "INTERNAL": "AGENT_ERROR", "error max": "AGENT_ERROR", "érror": "AGENT_ERROR",
		strings.Repeat("a", 65): "AGENT_ERROR",
	} {
		if got := agentErrorCode(in); got != want {
			t.Errorf("agentErrorCode(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestIdentity: git always gets a name and an email it accepts.
func TestIdentity(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		u           store.User
		name, email string
	}{
		{store.User{ID: "u1", Name: "Ada Lovelace", Email: "ada@example.com"}, "Ada Lovelace", "ada@example.com"},
		{store.User{ID: "u2", Email: "bob@example.com"}, "bob@example.com", "bob@example.com"},
		{store.User{ID: "u3"}, "u3@users.berth.invalid", "u3@users.berth.invalid"},
		{store.User{ID: "u4", Name: "Eve <evil>\nX-Header\x00", Email: "<eve@example.com>"}, "Eve evil X-Header", "eve@example.com"},
	} {
		if name, email := identity(&tc.u); name != tc.name || email != tc.email {
			t.Errorf("identity(%+v) = %q, %q; want %q, %q", tc.u, name, email, tc.name, tc.email)
		}
	}
}
