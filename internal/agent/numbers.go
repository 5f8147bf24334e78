package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Caps on the numbers of a result event. The CLI reports them and berth
// stores, bills and counts them (the user's budget, GetStats, the
// Prometheus counters), so a number past a cap is a lying or broken agent,
// and the run fails rather than move anyone's totals. Each cap is orders
// of magnitude above any real run and far below what breaks arithmetic:
const (
	// MaxCostUSD: one run is cut off by its time limit (at most an hour)
	// and by --max-budget-usd; real runs cost cents to tens of dollars.
	MaxCostUSD = 10_000
	// MaxTurns: the API caps max_turns at 50; a resumed session counts its
	// earlier turns too, still nowhere near this.
	MaxTurns = 10_000
	// MaxTokens bounds each token count in usage: a model's context is
	// about a million tokens, and a run lasts at most an hour.
	MaxTokens = 1e12
	// MaxDurationMS is about 11.5 days, where a task runs at most an hour.
	MaxDurationMS = 1e9
)

// OutputError is a result event whose numbers cannot be believed: not a
// number, not finite, negative, fractional where a count is due, or past
// its cap. The task fails with code AGENT_OUTPUT and nothing of the
// result is recorded.
type OutputError struct {
	// Field is the result field, such as total_cost_usd or
	// usage.input_tokens.
	Field string
	// Value is the field's JSON text, cut short.
	Value string
	// Reason says what is wrong with it.
	Reason string
}

// Error names the field, its value and what is wrong.
func (e *OutputError) Error() string {
	return fmt.Sprintf("%s = %s: %s", e.Field, e.Value, e.Reason)
}

// readNumbers reads the result's cost, turns, duration and usage from ev
// into r, or says which one is not believable. An absent or null field
// is 0.
func readNumbers(ev *event, r *Result) *OutputError {
	cost, err := number("total_cost_usd", ev.TotalCostUSD, MaxCostUSD, false)
	if err != nil {
		return err
	}
	turns, err := number("num_turns", ev.NumTurns, MaxTurns, true)
	if err != nil {
		return err
	}
	duration, err := number("duration_ms", ev.DurationMS, MaxDurationMS, true)
	if err != nil {
		return err
	}
	usage, err := readUsage(ev.Usage)
	if err != nil {
		return err
	}
	r.TotalCostUSD, r.NumTurns, r.DurationMS, r.Usage = cost, int(turns), int64(duration), usage
	return nil
}

// number reads one JSON number in [0, limit]; whole says it must be an
// integer.
func number(field string, raw json.RawMessage, limit float64, whole bool) (float64, *OutputError) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return 0, nil
	}
	bad := func(reason string) (float64, *OutputError) {
		v := string(raw)
		if len(v) > 40 {
			v = strings.ToValidUTF8(v[:40], "") + "…"
		}
		return 0, &OutputError{Field: field, Value: v, Reason: reason}
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err != nil || n == "" {
		return bad("not a number")
	}
	f, err := strconv.ParseFloat(string(n), 64)
	switch {
	case errors.Is(err, strconv.ErrRange), err == nil && (math.IsInf(f, 0) || math.IsNaN(f)):
		return bad("too large to be a number berth can count")
	case err != nil:
		return bad("not a number")
	case f < 0:
		return bad("negative")
	case f > limit:
		return bad(fmt.Sprintf("above the cap of %g", limit))
	case whole && f != math.Trunc(f):
		return bad("not a whole number")
	}
	return f, nil
}

// readUsage reads the usage object: every number in it, at any depth,
// is a token (or request) count, so it must be a whole number in
// [0, MaxTokens]; strings and booleans (service_tier) pass as they are.
// The numbers come back as float64, as encoding/json gives them.
func readUsage(raw json.RawMessage) (map[string]any, *OutputError) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, &OutputError{Field: "usage", Value: "…", Reason: "not valid JSON"}
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, &OutputError{Field: "usage", Value: "…", Reason: "not an object"}
	}
	out, err := usageValue("usage", m)
	if err != nil {
		return nil, err
	}
	return out.(map[string]any), nil
}

func usageValue(field string, v any) (any, *OutputError) {
	switch v := v.(type) {
	case json.Number:
		return number(field, json.RawMessage(v), MaxTokens, true)
	case map[string]any:
		for k, e := range v {
			c, err := usageValue(field+"."+k, e)
			if err != nil {
				return nil, err
			}
			v[k] = c
		}
		return v, nil
	case []any:
		for i, e := range v {
			c, err := usageValue(fmt.Sprintf("%s[%d]", field, i), e)
			if err != nil {
				return nil, err
			}
			v[i] = c
		}
		return v, nil
	}
	return v, nil
}
