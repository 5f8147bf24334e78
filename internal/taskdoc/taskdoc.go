// Package taskdoc holds the structured parts of a task — its configuration,
// git operation, image build, progress, result and failure — as plain Go
// values with the JSON shape the tasks table stores them in.
//
// They are task's domain types (package task names them task.Config,
// task.Progress …); they live in this leaf package so that the store, which
// task imports, can decode a row into them once, as it reads it, and return
// a decode error with the row instead of handing out bytes that every reader
// decodes again.
//
// The stored shape is the protojson that berth wrote before these types
// existed (protojson.MarshalOptions{UseProtoNames: true} of the API
// messages, since the commit that introduced tasks): field names are the
// proto names (max_turns, not maxTurns), zero values are left out, the git
// operation is its enum name (GIT_OPERATION_TYPE_CLONE), and a result's
// details are a JSON object. None of these documents has a 64-bit integer,
// so no number is ever a JSON string. Rows written then decode to the same
// values now, and rows written now read the same through the old code.
package taskdoc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Config is how a task runs: what CreateTask's config asked for, with the
// server's defaults filled in when the task was created.
type Config struct {
	SystemPrompt string            `json:"system_prompt,omitempty"`
	MaxTurns     int               `json:"max_turns,omitempty"`
	AllowedTools []string          `json:"allowed_tools,omitempty"`
	WorkingDir   string            `json:"working_dir,omitempty"` // relative to the workspace; "" is the workspace
	Environment  map[string]string `json:"environment,omitempty"`
	Timeout      int               `json:"timeout,omitempty"` // seconds
	Model        string            `json:"model,omitempty"`
	MaxBudgetUSD float64           `json:"max_budget_usd,omitempty"`
}

// GitOp is the operation of a git_operation task.
type GitOp struct {
	Operation GitOperation `json:"operation,omitempty"`
	URL       string       `json:"url,omitempty"`
	Ref       string       `json:"ref,omitempty"`
	Message   string       `json:"message,omitempty"`
	Paths     []string     `json:"paths,omitempty"`
}

// GitOperation names a git operation as internal/gitop does: "clone",
// "fetch", "pull", "checkout", "status", "diff", "log", "commit", "init"; "" is
// none. It is stored as the API's enum name (GIT_OPERATION_TYPE_CLONE).
type GitOperation string

// gitOperations are the operations in the API enum's order: the enum
// number of gitOperations[i] is i.
var gitOperations = []GitOperation{"", "clone", "fetch", "pull", "checkout", "status", "diff", "log", "commit", "init"}

const gitEnumPrefix = "GIT_OPERATION_TYPE_"

// EnumName is op's API enum name, GIT_OPERATION_TYPE_UNSPECIFIED for "".
func (op GitOperation) EnumName() string {
	if op == "" {
		return gitEnumPrefix + "UNSPECIFIED"
	}
	return gitEnumPrefix + strings.ToUpper(string(op))
}

// MarshalJSON writes op as its enum name.
func (op GitOperation) MarshalJSON() ([]byte, error) {
	for _, known := range gitOperations {
		if op == known {
			return json.Marshal(op.EnumName())
		}
	}
	return nil, fmt.Errorf("unknown git operation %q", string(op))
}

// UnmarshalJSON reads an enum name, or an enum number (protojson accepts
// both); anything else is an error.
func (op *GitOperation) UnmarshalJSON(b []byte) error {
	var name string
	if err := json.Unmarshal(b, &name); err != nil {
		n, nerr := strconv.Atoi(string(b))
		if nerr != nil || n < 0 || n >= len(gitOperations) {
			return fmt.Errorf("git operation %s: want an enum name or number", b)
		}
		*op = gitOperations[n]
		return nil
	}
	for _, known := range gitOperations {
		if name == known.EnumName() {
			*op = known
			return nil
		}
	}
	return fmt.Errorf("unknown git operation %q", name)
}

// DockerBuild is the image build of a docker_build task.
type DockerBuild struct {
	ContextDir string `json:"context_dir,omitempty"` // relative to the workspace
	Dockerfile string `json:"dockerfile,omitempty"`  // relative to the context
	Tag        string `json:"tag,omitempty"`         // the full tag, once the task is stored
}

// Progress is how far a running task got.
type Progress struct {
	Current    int    `json:"current,omitempty"`
	Total      int    `json:"total,omitempty"`
	Percentage int    `json:"percentage,omitempty"` // 0..100
	Message    string `json:"message,omitempty"`
}

// Result is what a task that succeeded produced.
type Result struct {
	Success bool   `json:"success,omitempty"`
	Summary string `json:"summary,omitempty"`
	// Details are structured facts of the run (turns, cost, image id …):
	// JSON values only (nil, bool, float64, string, []any, map[string]any),
	// so that they survive the store and the API's google.protobuf.Struct
	// unchanged. Details builds them from Go values.
	Details map[string]any `json:"details,omitempty"`
}

// Details turns v, a map of Go values that encoding/json can write, into
// Result.Details: the JSON values a read of the stored result gives back.
func Details(v map[string]any) (map[string]any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("result details: %w", err)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("result details: %w", err)
	}
	return out, nil
}

// Failure is why a task did not succeed: a code a program can act on
// (CANCELLED, TIMED_OUT, INTERRUPTED, NO_SESSION …), a message for people,
// and optional details.
type Failure struct {
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
	Details string `json:"details,omitempty"`
}

// Error makes a Failure readable where an error is expected: code: message.
func (f *Failure) Error() string { return f.Code + ": " + f.Message }

// Encode returns v as stored; a nil v is nil (stored as NULL).
func Encode[T any](v *T) ([]byte, error) {
	if v == nil {
		return nil, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode %T: %w", v, err)
	}
	return b, nil
}

// Decode reads a stored document: nil when there is none (no bytes, or
// JSON null). A document that is not one JSON object of T's shape — a field
// T does not have (a renamed one included), a value of the wrong type,
// trailing data — is an error, never a silent default.
func Decode[T any](raw []byte) (*T, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, nil
	}
	var v T
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("decode %T: %w", v, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("decode %T: data after the document", v)
	}
	return &v, nil
}
