package agent_test

import (
	"bytes"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/berthhq/berth/internal/agent"
)

func parseAll(t testing.TB, p *agent.Parser, input []byte) []agent.Output {
	t.Helper()
	var out []agent.Output
	if err := agent.Lines(bytes.NewReader(input), func(line []byte) {
		out = append(out, p.Line(line)...)
	}); err != nil {
		t.Fatalf("Lines: %v", err)
	}
	return out
}

const sid = "5f1c2a9e-7b3d-4e0a-9c41-2d8e6f0a1b23"

func TestParserTranscript(t *testing.T) {
	t.Parallel()
	input, err := os.ReadFile("testdata/transcript.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	p := agent.NewParser(10)
	got := parseAll(t, p, input)

	usage := map[string]any{
		"input_tokens": 6600.0, "cache_creation_input_tokens": 0.0, "cache_read_input_tokens": 13368.0,
		"output_tokens": 340.0, "server_tool_use": map[string]any{"web_search_requests": 0.0},
	}
	result := agent.Result{
		Subtype: "success", NumTurns: 4, DurationMS: 15234, TotalCostUSD: 0.0421,
		Usage: usage, SessionID: sid, Text: "Done: I wrote SUMMARY.md.",
	}
	want := []agent.Output{
		agent.Log{Level: "info", Source: "system",
			Message: "agent session " + sid + " started (model claude-sonnet-4-5-20250929, 3 tools, cwd /workspace)",
			Fields: map[string]any{"session_id": sid, "model": "claude-sonnet-4-5-20250929",
				"tools": []any{"Bash", "Read", "Write"}, "cwd": "/workspace"}},
		agent.Session{ID: sid},
		agent.Progress{Current: 1, Total: 10, Percentage: 10, Message: "turn 1 of 10"},
		agent.Log{Level: "debug", Source: "assistant", Message: "List the files before reading anything."},
		agent.Log{Level: "info", Source: "assistant", Message: "I'll look at the project layout first."},
		agent.Log{Level: "info", Source: "tool", Message: `Bash {"command":"ls -la","description":"List files"}`,
			Fields: map[string]any{"name": "Bash", "id": "toolu_01", "input": map[string]any{"command": "ls -la", "description": "List files"}}},
		agent.Log{Level: "info", Source: "tool", Message: "total 8\nREADME.md\nmain.go",
			Fields: map[string]any{"tool_use_id": "toolu_01", "is_error": false}},
		agent.Progress{Current: 2, Total: 10, Percentage: 20, Message: "turn 2 of 10"},
		agent.Log{Level: "info", Source: "assistant", Message: "Let me read the missing file."},
		agent.Log{Level: "info", Source: "tool", Message: `Read {"file_path":"/workspace/missing.go"}`,
			Fields: map[string]any{"name": "Read", "id": "toolu_02", "input": map[string]any{"file_path": "/workspace/missing.go"}}},
		agent.Log{Level: "warn", Source: "tool", Message: "<tool_use_error>File does not exist.</tool_use_error>",
			Fields: map[string]any{"tool_use_id": "toolu_02", "is_error": true}},
		agent.Progress{Current: 3, Total: 10, Percentage: 30, Message: "turn 3 of 10"},
		agent.Log{Level: "info", Source: "tool", Message: `Write {"file_path":"/workspace/SUMMARY.md","content":"# Summary\n"}`,
			Fields: map[string]any{"name": "Write", "id": "toolu_03", "input": map[string]any{"file_path": "/workspace/SUMMARY.md", "content": "# Summary\n"}}},
		agent.Log{Level: "info", Source: "tool", Message: "File created successfully at: /workspace/SUMMARY.md",
			Fields: map[string]any{"tool_use_id": "toolu_03", "is_error": false}},
		agent.Progress{Current: 4, Total: 10, Percentage: 40, Message: "turn 4 of 10"},
		agent.Log{Level: "info", Source: "assistant", Message: "Done: I wrote SUMMARY.md."},
		agent.Progress{Current: 4, Total: 10, Percentage: 100, Message: "finished after 4 turns"},
		agent.Log{Level: "info", Source: "system", Message: "agent finished: success after 4 turns in 15234 ms, cost $0.0421",
			Fields: map[string]any{"subtype": "success", "is_error": false, "num_turns": 4.0, "duration_ms": 15234.0,
				"total_cost_usd": 0.0421, "session_id": sid}},
		result,
	}
	if len(got) != len(want) {
		t.Fatalf("got %d outputs, want %d:\n%#v", len(got), len(want), got)
	}
	for i := range want {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Errorf("output %d:\n got %#v\nwant %#v", i, got[i], want[i])
		}
	}
	res, err := p.Outcome()
	if err != nil {
		t.Fatalf("Outcome: %v", err)
	}
	if !reflect.DeepEqual(*res, result) || res.Failed() {
		t.Errorf("Outcome = %#v (failed %v)", res, res.Failed())
	}
	if p.SessionID() != sid {
		t.Errorf("SessionID = %q", p.SessionID())
	}
	// Every log line's fields must be storable as a protobuf Struct.
	for _, o := range got {
		if l, ok := o.(agent.Log); ok && l.Fields != nil {
			if _, err := structpb.NewStruct(l.Fields); err != nil {
				t.Errorf("fields of %q: %v", l.Message, err)
			}
		}
	}
}

func TestParserMalformed(t *testing.T) {
	t.Parallel()
	huge := `{"type":"assistant","message":{"id":"m","content":[{"type":"text","text":"` + strings.Repeat("z", 2<<20) + `"}]}}`
	tests := []struct {
		name string
		line string
		want []agent.Output
	}{
		{"empty", "", nil},
		{"blank", "  \t ", nil},
		{"plain text", "Warning: something", []agent.Output{agent.Log{Level: "info", Source: "stdout", Message: "Warning: something"}}},
		{"truncated json", `{"type":"assistant","message":{"content":[`, []agent.Output{
			agent.Log{Level: "info", Source: "stdout", Message: `{"type":"assistant","message":{"content":[`}}},
		{"json but not an object", `[1,2]`, []agent.Output{agent.Log{Level: "info", Source: "stdout", Message: `[1,2]`}}},
		{"number", `42`, []agent.Output{agent.Log{Level: "info", Source: "stdout", Message: `42`}}},
		{"no type", `{}`, []agent.Output{agent.Log{Level: "debug", Source: "system", Message: "agent event (no type) not interpreted",
			Fields: map[string]any{"type": "", "subtype": ""}}}},
		{"unknown type", `{"type":"stream_event","event":{}}`, []agent.Output{agent.Log{Level: "debug", Source: "system",
			Message: "agent event stream_event not interpreted", Fields: map[string]any{"type": "stream_event", "subtype": ""}}}},
		{"unknown system subtype", `{"type":"system","subtype":"compact_boundary"}`, []agent.Output{agent.Log{Level: "debug", Source: "system",
			Message: "agent event system/compact_boundary not interpreted", Fields: map[string]any{"type": "system", "subtype": "compact_boundary"}}}},
		{"type of wrong type", `{"type":5}`, []agent.Output{agent.Log{Level: "debug", Source: "system", Message: "agent event (no type) not interpreted",
			Fields: map[string]any{"type": "", "subtype": ""}}}},
		{"message of wrong type", `{"type":"assistant","message":"hi"}`, []agent.Output{agent.Log{Level: "debug", Source: "system",
			Message: "agent event assistant not interpreted", Fields: map[string]any{"type": "assistant", "subtype": ""}}}},
		{"text of wrong type keeps the rest", `{"type":"assistant","message":{"id":"m1","content":[{"type":"text","text":7},{"type":"text","text":"ok"}]}}`,
			[]agent.Output{agent.Progress{Current: 1, Total: 4, Percentage: 25, Message: "turn 1 of 4"},
				agent.Log{Level: "info", Source: "assistant", Message: "ok"}}},
		{"unknown block", `{"type":"assistant","message":{"id":"m2","content":[{"type":"image"}]}}`,
			[]agent.Output{agent.Progress{Current: 1, Total: 4, Percentage: 25, Message: "turn 1 of 4"},
				agent.Log{Level: "debug", Source: "system", Message: `agent assistant content block "image" not interpreted`,
					Fields: map[string]any{"type": "assistant", "block": "image"}}}},
		{"tool input not an object", `{"type":"assistant","message":{"id":"m3","content":[{"type":"tool_use","name":"X","input":"raw"}]}}`,
			[]agent.Output{agent.Progress{Current: 1, Total: 4, Percentage: 25, Message: "turn 1 of 4"},
				agent.Log{Level: "info", Source: "tool", Message: `X "raw"`, Fields: map[string]any{"name": "X", "id": "", "input": "raw"}}}},
		{"tool result of odd content", `{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"t","content":{"a":1}}]}}`,
			[]agent.Output{agent.Log{Level: "info", Source: "tool", Message: `{"a":1}`, Fields: map[string]any{"tool_use_id": "t", "is_error": false}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := agent.NewParser(4)
			got := p.Line([]byte(tt.line))
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Line(%q)\n got %#v\nwant %#v", tt.line, got, tt.want)
			}
			if _, err := p.Outcome(); !errors.Is(err, agent.ErrNoResult) {
				t.Errorf("Outcome err = %v, want ErrNoResult", err)
			}
		})
	}

	t.Run("huge line", func(t *testing.T) {
		t.Parallel()
		p := agent.NewParser(4)
		got := parseAll(t, p, []byte(huge+"\n"))
		if len(got) != 2 || len(got[1].(agent.Log).Message) != 2<<20 {
			t.Errorf("huge line gave %d outputs", len(got))
		}
	})

	t.Run("odd result text", func(t *testing.T) {
		t.Parallel()
		p := agent.NewParser(4)
		p.Line([]byte(`{"type":"result","subtype":"success","num_turns":3,"total_cost_usd":0.5,"result":{"x":1}}`))
		res, err := p.Outcome()
		if err != nil {
			t.Fatal(err)
		}
		if res.NumTurns != 3 || res.TotalCostUSD != 0.5 || res.Text != `{"x":1}` {
			t.Errorf("result = %+v", res)
		}
	})
}

// TestParserRefusesUnbelievableNumbers: a result whose cost, turns,
// duration or token counts are not finite, negative, fractional counts,
// past their caps or not numbers at all is refused: Outcome names the
// field, and no Result is given out — even when a good result follows.
func TestParserRefusesUnbelievableNumbers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ fields, field string }{
		{`"total_cost_usd":-1000`, "total_cost_usd"},
		{`"total_cost_usd":1e308`, "total_cost_usd"},
		{`"total_cost_usd":1e400`, "total_cost_usd"},
		{`"total_cost_usd":-1e400`, "total_cost_usd"},
		{`"total_cost_usd":"NaN"`, "total_cost_usd"},
		{`"total_cost_usd":"Infinity"`, "total_cost_usd"},
		{`"total_cost_usd":10000.01`, "total_cost_usd"},
		{`"total_cost_usd":{"a":1}`, "total_cost_usd"},
		{`"num_turns":-1`, "num_turns"},
		{`"num_turns":1.5`, "num_turns"},
		{`"num_turns":"three"`, "num_turns"},
		{`"num_turns":10001`, "num_turns"},
		{`"duration_ms":-5`, "duration_ms"},
		{`"duration_ms":1e19`, "duration_ms"},
		{`"usage":{"input_tokens":-1}`, "usage.input_tokens"},
		{`"usage":{"output_tokens":1e13}`, "usage.output_tokens"},
		{`"usage":{"server_tool_use":{"web_search_requests":1e400}}`, "usage.server_tool_use.web_search_requests"},
		{`"usage":[1]`, "usage"},
	} {
		p := agent.NewParser(4)
		out := p.Line([]byte(`{"type":"result","subtype":"success","session_id":"s",` + tc.fields + `}`))
		p.Line([]byte(`{"type":"result","subtype":"success","num_turns":1,"total_cost_usd":0.1}`))
		res, err := p.Outcome()
		var oe *agent.OutputError
		if res != nil || !errors.As(err, &oe) || oe.Field != tc.field || oe.Reason == "" {
			t.Errorf("%s: Outcome = %+v, %v; want an OutputError on %s", tc.fields, res, err, tc.field)
		}
		for _, o := range out {
			if _, ok := o.(agent.Result); ok {
				t.Errorf("%s: a Result was given out", tc.fields)
			}
		}
		if len(out) != 1 || out[0].(agent.Log).Level != agent.LevelError || !strings.Contains(out[0].(agent.Log).Message, tc.field) {
			t.Errorf("%s: outputs %#v", tc.fields, out)
		}
	}
	// At the caps, and with nulls, it is a result.
	p := agent.NewParser(4)
	p.Line([]byte(`{"type":"result","subtype":"success","total_cost_usd":10000,"num_turns":10000,"duration_ms":null,"usage":{"input_tokens":1e12,"service_tier":"standard","x":null}}`))
	res, err := p.Outcome()
	if err != nil || res.TotalCostUSD != agent.MaxCostUSD || res.NumTurns != agent.MaxTurns || res.Usage["input_tokens"] != 1e12 || res.Usage["service_tier"] != "standard" {
		t.Errorf("at the caps: %+v, %v", res, err)
	}
}

// TestParserProgress: progress counts turns — round trips of the model and
// berth's tools — not assistant messages; it never claims more turns than
// the limit nor 100 % before the end, and the result sets the CLI's own
// count at 100 %.
func TestParserProgress(t *testing.T) {
	t.Parallel()
	p := agent.NewParser(2)
	var progress []agent.Progress
	assistant := func(id string) string {
		return `{"type":"assistant","message":{"id":"` + id + `","content":[]}}`
	}
	toolResult := `{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"t","content":"ok"}]}}`
	for _, line := range []string{
		assistant("a"), assistant("a"), assistant("b"), // one turn: no tool ran between them
		toolResult, assistant("c"), // turn 2
		toolResult, assistant("d"), toolResult, assistant("e"), // past the limit: shown at it
		`{"type":"result","subtype":"success","num_turns":4,"total_cost_usd":0.01,"duration_ms":5}`,
	} {
		for _, o := range p.Line([]byte(line)) {
			if pr, ok := o.(agent.Progress); ok {
				progress = append(progress, pr)
			}
		}
	}
	want := []agent.Progress{
		{Current: 1, Total: 2, Percentage: 50, Message: "turn 1 of 2"},
		{Current: 2, Total: 2, Percentage: 99, Message: "turn 2 of 2"},
		{Current: 2, Total: 2, Percentage: 99, Message: "turn 2 of 2"},
		{Current: 2, Total: 2, Percentage: 99, Message: "turn 2 of 2"},
		{Current: 4, Total: 4, Percentage: 100, Message: "finished after 4 turns"},
	}
	if !reflect.DeepEqual(progress, want) {
		t.Errorf("progress = %+v", progress)
	}
	if got := agent.NewParser(0).Line([]byte(`{"type":"assistant","message":{"id":"x"}}`)); !reflect.DeepEqual(got,
		[]agent.Output{agent.Progress{Current: 1, Message: "turn 1"}}) {
		t.Errorf("without a limit: %#v", got)
	}
}

func TestParserResultWithoutInit(t *testing.T) {
	t.Parallel()
	p := agent.NewParser(3)
	out := p.Line([]byte(`{"type":"result","subtype":"error_max_turns","is_error":false,"num_turns":3,"session_id":"s9"}`))
	if len(out) != 3 || out[0] != (agent.Session{ID: "s9"}) {
		t.Fatalf("outputs %#v", out)
	}
	res, err := p.Outcome()
	if err != nil || !res.Failed() || res.Subtype != "error_max_turns" {
		t.Errorf("Outcome = %+v, %v", res, err)
	}
}

func FuzzParser(f *testing.F) {
	transcript, err := os.ReadFile("testdata/transcript.jsonl")
	if err != nil {
		f.Fatal(err)
	}
	for _, line := range bytes.Split(transcript, []byte("\n")) {
		f.Add(line)
	}
	f.Add(transcript)
	f.Add([]byte(`{"type":"assistant","message":{"content":[{"type":"tool_use","input":{"a":[1,{"b":null}]}}]}}`))
	f.Add([]byte(`{"type":"user","message":{"content":[{"type":"tool_result","content":[{"type":"image"}]}]}}`))
	f.Add([]byte("\xff\xfe{\"type\":\"result\"}\n\n{"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p := agent.NewParser(5)
		var n int
		if err := agent.Lines(bytes.NewReader(data), func(line []byte) {
			for _, o := range p.Line(line) {
				n++
				if l, ok := o.(agent.Log); ok && l.Fields != nil {
					if _, err := structpb.NewStruct(l.Fields); err != nil && !strings.Contains(err.Error(), "UTF-8") {
						t.Errorf("fields not storable: %v", err)
					}
				}
			}
		}); err != nil {
			t.Fatalf("Lines: %v", err)
		}
		res, err := p.Outcome()
		if (res == nil) == (err == nil) {
			t.Fatalf("Outcome = %v, %v", res, err)
		}
	})
}
