package agent

import "errors"

// ErrNoResult is what Outcome returns when the stream ended without a
// result event: the CLI crashed, was killed or hung up before finishing.
var ErrNoResult = errors.New("the agent exited without a result")

// Levels and sources of the log lines a Parser produces. They match the
// task log's levels and sources.
const (
	LevelDebug = "debug"
	LevelInfo  = "info"
	LevelWarn  = "warn"
	LevelError = "error"

	SourceSystem    = "system"
	SourceAssistant = "assistant"
	SourceTool      = "tool"
	SourceStdout    = "stdout"
)

// Output is one thing a stream-json line means for the task: a Log, a
// Progress, a Session or a Result. Callers switch on the concrete type.
type Output interface{ output() }

// Log is one task log line. Fields holds structured detail; its values are
// only what encoding/json produces (string, float64, bool, nil, []any,
// map[string]any), so it converts to a protobuf Struct as is.
type Log struct {
	Level   string
	Source  string
	Message string
	Fields  map[string]any
}

// Progress reports the assistant turns seen against the turn limit.
// Percentage is 0..100; Total is 0 when the parser has no limit.
type Progress struct {
	Current    int
	Total      int
	Percentage int
	Message    string
}

// Session carries the CLI's session id, which a later task can resume.
type Session struct {
	ID string
}

// Result is the CLI's final result event.
type Result struct {
	Subtype      string // success, error_max_turns, error_during_execution, error_max_budget_usd, …
	IsError      bool
	NumTurns     int
	DurationMS   int64
	TotalCostUSD float64
	Usage        map[string]any
	SessionID    string
	Text         string // the "result" field: the final answer, or the error text
}

// Failed reports whether the run did not succeed: the CLI flagged an
// error, or the subtype is anything but "success" (the CLI reports
// error_max_turns with is_error false).
func (r *Result) Failed() bool { return r.IsError || r.Subtype != "success" }

func (Log) output()      {}
func (Progress) output() {}
func (Session) output()  {}
func (Result) output()   {}
