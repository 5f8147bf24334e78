package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Parser turns the CLI's stream-json lines into Outputs, one line at a
// time, so output is logged while the agent runs. It never fails: a line
// it cannot read becomes a stdout log line, an event it does not know a
// debug system line. A Parser is not safe for concurrent use.
type Parser struct {
	maxTurns  int
	turns     int
	inTurn    bool // an assistant message came since the last tool results
	lastMsgID string
	sessionID string
	result    *Result
	// bad is the first result whose numbers could not be believed; once
	// set, Outcome returns it, whatever came after.
	bad *OutputError
}

// NewParser returns a Parser that reports progress against maxTurns
// (the --max-turns given to the CLI; 0 or less means unknown).
func NewParser(maxTurns int) *Parser {
	if maxTurns < 0 {
		maxTurns = 0
	}
	return &Parser{maxTurns: maxTurns}
}

// SessionID returns the session id seen so far, from the init event or
// the result.
func (p *Parser) SessionID() string { return p.sessionID }

// Outcome returns the result event once the stream has ended, or
// ErrNoResult when none came, or an *OutputError when a result event's
// numbers (cost, turns, duration, token counts) were not believable.
func (p *Parser) Outcome() (*Result, error) {
	if p.bad != nil {
		return nil, p.bad
	}
	if p.result == nil {
		return nil, ErrNoResult
	}
	r := *p.result
	return &r, nil
}

// event is the union of the stream-json event fields berth reads.
type event struct {
	Type      string          `json:"type"`
	Subtype   string          `json:"subtype"`
	SessionID string          `json:"session_id"`
	Model     string          `json:"model"`
	CWD       string          `json:"cwd"`
	Tools     []string        `json:"tools"`
	Message   json.RawMessage `json:"message"`
	IsError   bool            `json:"is_error"`
	// The result's numbers stay raw: finish reads them strictly (see
	// numbers.go), where a wrong type must fail the run, not become 0.
	NumTurns     json.RawMessage `json:"num_turns"`
	DurationMS   json.RawMessage `json:"duration_ms"`
	TotalCostUSD json.RawMessage `json:"total_cost_usd"`
	Usage        json.RawMessage `json:"usage"`
	Result       json.RawMessage `json:"result"`
}

type message struct {
	ID      string  `json:"id"`
	Content []block `json:"content"`
}

type block struct {
	Type      string          `json:"type"`
	Text      string          `json:"text"`
	Thinking  string          `json:"thinking"`
	ID        string          `json:"id"`
	Name      string          `json:"name"`
	Input     json.RawMessage `json:"input"`
	ToolUseID string          `json:"tool_use_id"`
	IsError   bool            `json:"is_error"`
	Content   json.RawMessage `json:"content"`
}

// maxSummary bounds the JSON of a tool input repeated in a log message;
// the full input stays in the line's fields.
const maxSummary = 2000

// Line parses one line of the CLI's stdout and returns what it means, in
// order. An empty line means nothing.
func (p *Parser) Line(line []byte) []Output {
	trimmed := bytes.TrimSpace(line)
	if len(trimmed) == 0 {
		return nil
	}
	if trimmed[0] != '{' {
		return []Output{stdout(line)}
	}
	var ev event
	if err := json.Unmarshal(trimmed, &ev); err != nil {
		// A field of an unexpected type is skipped and the rest kept;
		// anything else (broken JSON) is the CLI printing plain text.
		var typeErr *json.UnmarshalTypeError
		if !errors.As(err, &typeErr) {
			return []Output{stdout(line)}
		}
	}
	switch ev.Type {
	case "system":
		if ev.Subtype == "init" {
			return p.init(&ev)
		}
	case "assistant":
		if msg := decodeMessage(ev.Message); msg != nil {
			return p.assistant(msg)
		}
	case "user":
		if msg := decodeMessage(ev.Message); msg != nil {
			return p.user(msg)
		}
	case "result":
		return p.finish(&ev)
	}
	return []Output{unknown(ev.Type, ev.Subtype)}
}

func (p *Parser) init(ev *event) []Output {
	tools := make([]any, len(ev.Tools))
	for i, t := range ev.Tools {
		tools[i] = t
	}
	out := []Output{Log{
		Level:   LevelInfo,
		Source:  SourceSystem,
		Message: fmt.Sprintf("agent session %s started (model %s, %d tools, cwd %s)", ev.SessionID, ev.Model, len(ev.Tools), ev.CWD),
		Fields: map[string]any{
			"session_id": ev.SessionID,
			"model":      ev.Model,
			"tools":      tools,
			"cwd":        ev.CWD,
		},
	}}
	if ev.SessionID != "" {
		p.sessionID = ev.SessionID
		out = append(out, Session{ID: ev.SessionID})
	}
	return out
}

// decodeMessage returns the message of an assistant or user event, or nil
// when it is not an object. Fields of unexpected types are left empty.
func decodeMessage(raw json.RawMessage) *message {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return nil
	}
	var msg message
	if err := json.Unmarshal(raw, &msg); err != nil {
		var typeErr *json.UnmarshalTypeError
		if !errors.As(err, &typeErr) {
			return nil
		}
	}
	return &msg
}

func (p *Parser) assistant(msg *message) []Output {
	var out []Output
	// A turn is one round trip: the model answers, berth's tools run, their
	// results go back. So the first assistant message after tool results
	// (or at the start) begins a turn, and the messages that follow it
	// before the next tool results belong to it — as the CLI counts
	// num_turns. (The CLI prints each content block of one message as its
	// own event with the same id; those were never several turns.)
	if id := msg.ID; !p.inTurn && (id == "" || id != p.lastMsgID) {
		p.lastMsgID = id
		p.inTurn = true
		p.turns++
		out = append(out, p.progress())
	}
	for _, b := range msg.Content {
		switch b.Type {
		case "text":
			if strings.TrimSpace(b.Text) == "" {
				continue
			}
			out = append(out, Log{Level: LevelInfo, Source: SourceAssistant, Message: b.Text})
		case "thinking":
			out = append(out, Log{Level: LevelDebug, Source: SourceAssistant, Message: b.Thinking})
		case "tool_use":
			input := decodeAny(b.Input)
			out = append(out, Log{
				Level:   LevelInfo,
				Source:  SourceTool,
				Message: strings.TrimSpace(b.Name + " " + summary(b.Input)),
				Fields:  map[string]any{"name": b.Name, "id": b.ID, "input": input},
			})
		default:
			out = append(out, unknownBlock("assistant", b.Type))
		}
	}
	return out
}

func (p *Parser) user(msg *message) []Output {
	var out []Output
	for _, b := range msg.Content {
		switch b.Type {
		case "tool_result":
			p.inTurn = false // the next answer is the next turn
			level := LevelInfo
			if b.IsError {
				level = LevelWarn
			}
			out = append(out, Log{
				Level:   level,
				Source:  SourceTool,
				Message: resultText(b.Content),
				Fields:  map[string]any{"tool_use_id": b.ToolUseID, "is_error": b.IsError},
			})
		case "text":
			// The prompt echoed back; the task already records it.
		default:
			out = append(out, unknownBlock("user", b.Type))
		}
	}
	return out
}

func (p *Parser) finish(ev *event) []Output {
	var text string
	if err := json.Unmarshal(ev.Result, &text); err != nil && len(ev.Result) > 0 {
		text = string(ev.Result) // not a string: keep it readable anyway
	}
	r := Result{
		Subtype:   ev.Subtype,
		IsError:   ev.IsError,
		SessionID: ev.SessionID,
		Text:      text,
	}
	if err := readNumbers(ev, &r); err != nil {
		// Nothing of this result is kept: a run whose numbers are made up
		// is not a result berth records, bills or counts.
		if p.bad == nil {
			p.bad = err
		}
		p.result = nil
		return []Output{Log{
			Level:   LevelError,
			Source:  SourceSystem,
			Message: "agent result refused: " + err.Error(),
			Fields:  map[string]any{"field": err.Field, "reason": err.Reason},
		}}
	}
	if r.SessionID == "" {
		r.SessionID = p.sessionID
	}
	var out []Output
	if r.SessionID != "" && r.SessionID != p.sessionID {
		p.sessionID = r.SessionID
		out = append(out, Session{ID: r.SessionID}) // no init event came
	}
	p.result = &r
	level := LevelInfo
	if r.Failed() {
		level = LevelError
	} else {
		// Done: the CLI's own turn count, and 100 %.
		p.turns = r.NumTurns
		out = append(out, Progress{Current: r.NumTurns, Total: max(p.maxTurns, r.NumTurns), Percentage: 100,
			Message: fmt.Sprintf("finished after %d turns", r.NumTurns)})
	}
	return append(out,
		Log{
			Level:   level,
			Source:  SourceSystem,
			Message: fmt.Sprintf("agent finished: %s after %d turns in %d ms, cost $%.4f", r.Subtype, r.NumTurns, r.DurationMS, r.TotalCostUSD),
			Fields: map[string]any{
				"subtype":        r.Subtype,
				"is_error":       r.IsError,
				"num_turns":      float64(r.NumTurns),
				"duration_ms":    float64(r.DurationMS),
				"total_cost_usd": r.TotalCostUSD,
				"session_id":     r.SessionID,
			},
		},
		r,
	)
}

// progress is the turns so far against the limit. A run that is still
// going never shows 100 %: only its result does (see finish).
func (p *Parser) progress() Progress {
	pr := Progress{Current: p.turns, Total: p.maxTurns}
	if p.maxTurns > 0 {
		pr.Percentage = min(99, p.turns*100/p.maxTurns)
		pr.Message = fmt.Sprintf("turn %d of %d", min(p.turns, p.maxTurns), p.maxTurns)
		pr.Current = min(p.turns, p.maxTurns)
	} else {
		pr.Message = fmt.Sprintf("turn %d", p.turns)
	}
	return pr
}

func stdout(line []byte) Log {
	return Log{Level: LevelInfo, Source: SourceStdout, Message: string(line)}
}

func unknown(typ, subtype string) Log {
	name := typ
	if subtype != "" {
		name += "/" + subtype
	}
	if name == "" {
		name = "(no type)"
	}
	return Log{
		Level:   LevelDebug,
		Source:  SourceSystem,
		Message: "agent event " + name + " not interpreted",
		Fields:  map[string]any{"type": typ, "subtype": subtype},
	}
}

func unknownBlock(role, typ string) Log {
	return Log{
		Level:   LevelDebug,
		Source:  SourceSystem,
		Message: fmt.Sprintf("agent %s content block %q not interpreted", role, typ),
		Fields:  map[string]any{"type": role, "block": typ},
	}
}

// decodeAny decodes JSON into the types a protobuf Struct accepts.
func decodeAny(raw json.RawMessage) any {
	if len(raw) == 0 {
		return nil
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return string(raw)
	}
	return v
}

// summary is raw compacted and cut to maxSummary bytes for a log message.
func summary(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var buf bytes.Buffer
	s := string(raw)
	if json.Compact(&buf, raw) == nil {
		s = buf.String()
	}
	if len(s) > maxSummary {
		s = strings.ToValidUTF8(s[:maxSummary], "") + "…"
	}
	return s
}

// resultText flattens a tool_result's content: a string, or a list of
// blocks whose text parts are joined.
func resultText(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var blocks []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if json.Unmarshal(raw, &blocks) == nil {
		var parts []string
		for _, b := range blocks {
			if b.Type == "text" {
				parts = append(parts, b.Text)
			} else {
				parts = append(parts, "["+b.Type+"]")
			}
		}
		return strings.Join(parts, "\n")
	}
	return string(raw)
}
