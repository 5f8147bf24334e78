package ws

import (
	"errors"
	"strings"
	"testing"

	"buf.build/go/protovalidate"
	"connectrpc.com/connect/v2"
	"github.com/coder/websocket"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/berthhq/berth/internal/fault"
	"github.com/berthhq/berth/internal/stream"
)

// invalid reports whether err is answered as invalid_argument: a fault
// of kind ErrInvalid or a Connect error with that code.
func invalid(err error) bool {
	return errors.Is(err, fault.ErrInvalid) || connect.CodeOf(err) == connect.CodeInvalidArgument
}

// FuzzFrame: any frame a client sends is either refused with an
// invalid_argument error (the error frame the session sends for it), or
// decoded into a Message whose fields the session can act on: a subscribe
// names a task or workspace channel with an id and a since from 0 whose
// resume seq does not overflow, and a known command's data decodes into
// its request that passes the request's protovalidate rules and survives a
// protojson round trip. No input panics.
func FuzzFrame(f *testing.F) {
	id := "0190f2a4-7d1e-7c3a-9b2e-3f4a5b6c7d8e"
	for _, s := range []string{
		`{"type":"ping","id":"5"}`,
		`{"type":"subscribe","id":"1","channel":"task:` + id + `","since":41}`,
		`{"type":"subscribe","id":"2","channel":"workspace:` + id + `"}`,
		`{"type":"unsubscribe","id":"3","channel":"task:` + id + `"}`,
		`{"type":"command","id":"4","action":"task.create","data":{"workspace_id":"` + id + `","type":"TASK_TYPE_GIT_OPERATION","git":{"operation":"GIT_OPERATION_STATUS"}}}`,
		`{"type":"command","id":"4","action":"task.create","data":{"workspaceId":"` + id + `","type":1,"prompt":"hi"}}`,
		`{"type":"command","action":"task.continue","data":{"workspace_id":"` + id + `","type":1,"prompt":"go on","continue_task_id":"` + id + `"}}`,
		`{"type":"command","action":"task.cancel","data":{"id":"` + id + `"}}`,
		`{"type":"command","action":"workspace.start","data":{"id":"` + id + `"}}`,
		`{"type":"command","action":"workspace.stop"}`,
		`{"type":"command","action":"workspace.get","data":null}`,
		`{"type":"command","action":"workspace.get","data":"{}"}`,
		`{"type":"command","action":"task.create","data":{"workspace_id":"x","type":99,"tags":["` + strings.Repeat("t", 51) + `"]}}`,
		`{"type":"command","action":"task.create","data":{"metadata":{"\u0000":"\ud800"}}}`,
		`{"type":"command","action":"nope"}`,
		`{"type":"subscribe","channel":"task:"}`,
		`{"type":"subscribe","channel":":x"}`,
		`{"type":"subscribe","channel":"task:x","since":-1}`,
		`{"type":"subscribe","channel":"task:x","since":9223372036854775807}`,
		`{"type":"subscribe","channel":"task:x","since":9223372036854775808}`,
		`{"type":"subscribe","channel":"task:x","since":1e3}`,
		`{"type":"subscribe","channel":"task:x","since":"1"}`,
		`{"type":"subscribe","channel":"admin:x"}`,
		`{"type":"subscribe","channel":"task:a:b"}`,
		`{"type":"subscribe","type":"command","action":"workspace.get","data":{"id":"` + id + `"}}`,
		`{"TYPE":"ping"}`,
		`{"type":1}`, `[]`, `null`, `"ping"`, `{}`, ``, `{`, "\xff\xfe", `{"type":"ping"}{"type":"ping"}`,
		`{"type":"ping","data":` + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + `}`,
		`{"type":"command","action":"task.create","data":` + strings.Repeat(`{"config":`, 200) + `{}` + strings.Repeat("}", 200) + `}`,
	} {
		f.Add(true, []byte(s))
	}
	f.Add(false, []byte(`{"type":"ping"}`))
	f.Fuzz(func(t *testing.T, text bool, b []byte) {
		typ := websocket.MessageBinary
		if text {
			typ = websocket.MessageText
		}
		m, err := decodeFrame(typ, b)
		if err != nil {
			if !errors.Is(err, fault.ErrInvalid) {
				t.Fatalf("decodeFrame(%q): %v is not invalid_argument", b, err)
			}
			return
		}
		if !text {
			t.Fatalf("decodeFrame took a binary frame: %+v", m)
		}
		switch m.Type {
		case "subscribe":
			kind, id, permission, err := checkSubscribe(m)
			if err != nil {
				if !invalid(err) {
					t.Fatalf("checkSubscribe(%+v): %v is not invalid_argument", m, err)
				}
				return
			}
			want := map[string]string{"task": "task.read", "workspace": "workspace.read"}[kind]
			switch {
			case want == "" || permission != want:
				t.Fatalf("checkSubscribe(%+v) = kind %q permission %q", m, kind, permission)
			case id == "" || m.Channel != kind+":"+id:
				t.Fatalf("checkSubscribe(%+v) = id %q, not the channel's", m, id)
			case m.Since < 0 || stream.After(m.Since) < 1:
				t.Fatalf("checkSubscribe(%+v) took since %d", m, m.Since)
			}
		case "command":
			c, ok := commands[m.Action]
			if !ok {
				return // refused as unknown before anything else
			}
			req, err := c.decode(m.Data)
			if err != nil {
				if !invalid(err) {
					t.Fatalf("decode(%s, %q): %v is not invalid_argument", m.Action, m.Data, err)
				}
				return
			}
			if err := protovalidate.Validate(req); err != nil {
				t.Fatalf("decode(%s, %q) = %v, which fails validation: %v", m.Action, m.Data, req, err)
			}
			out, err := protojson.Marshal(req)
			if err != nil {
				t.Fatalf("decode(%s, %q) = %v, which does not marshal: %v", m.Action, m.Data, req, err)
			}
			back := c.request()
			if err := protojson.Unmarshal(out, back); err != nil || !proto.Equal(req, back) {
				t.Fatalf("decode(%s, %q) = %v, which reads back as %v (%v)", m.Action, m.Data, req, back, err)
			}
		}
	})
}
