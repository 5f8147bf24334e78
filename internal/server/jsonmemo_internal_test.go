package server

import (
	"bytes"
	"strconv"
	"testing"

	"connectrpc.com/connect/v2/connectproto"
	"google.golang.org/protobuf/proto"

	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
)

// TestMemoJSON checks that the memo codec writes exactly what protojson
// writes, for memoised and other types, for a message read again, after
// a field changed, and once the memo is past its bound.
func TestMemoJSON(t *testing.T) {
	t.Parallel()
	plain := connectproto.NewJSONCodec()
	plain.MarshalOptions.UseProtoNames = true
	plain.MarshalOptions.EmitDefaultValues = true
	memo := newMemoJSON(plain)
	memo.maxSize = 4 << 10
	check := func(msg proto.Message) {
		t.Helper()
		var want, got bytes.Buffer
		if err := plain.MarshalWrite(t.Context(), &want, msg); err != nil {
			t.Fatal(err)
		}
		if err := memo.MarshalWrite(t.Context(), &got, msg); err != nil {
			t.Fatal(err)
		}
		if got.String() != want.String() {
			t.Fatalf("memo wrote\n%s\nprotojson wrote\n%s", got.String(), want.String())
		}
	}
	ws := &berthv1.Workspace{Id: "w1", Name: "one", Tags: []string{"a"}, Metadata: map[string]string{"k": "v", "j": "u"},
		Stats: &berthv1.WorkspaceStats{TotalTasks: 1}}
	res := &berthv1.GetWorkspaceResponse{Workspace: ws}
	for range 3 {
		check(res)
	}
	if len(memo.entries) != 1 {
		t.Fatalf("%d entries after reading one message three times", len(memo.entries))
	}
	ws.Stats.TotalTasks = 2 // a changed message: its own encoding
	check(res)
	ws.Metadata["k"] = "w"
	check(res)
	// A type that is not memoised is encoded each time, never kept.
	check(&berthv1.LoginResponse{Tokens: &berthv1.Tokens{AccessToken: "secret"}})
	for _, k := range keysOf(memo) {
		if bytes.Contains([]byte(k), []byte("secret")) {
			t.Fatalf("a login response was memoised")
		}
	}
	// Many distinct messages: every one still right, the bound held.
	for i := range 200 {
		ws.Name = "name-" + strconv.Itoa(i)
		check(res)
		if memo.bytes > memo.maxSize {
			t.Fatalf("memo holds %d bytes, bound %d", memo.bytes, memo.maxSize)
		}
	}
	check(&berthv1.GetTaskResponse{Task: &berthv1.Task{Id: "t1", Prompt: "hi"}})
}

func keysOf(m *memoJSON) []string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]string, 0, len(m.entries))
	for k := range m.entries {
		out = append(out, k)
	}
	return out
}
