package task

import "fmt"

// noteTruncated records in a task's outcome that its log reached the cap
// of limit bytes, so whoever reads the result knows the log is not whole:
// the result's details get log_truncated_at_bytes, an error's details a
// sentence.
func noteTruncated(out *outcome, limit int64) {
	if out.result != nil {
		if out.result.Details == nil {
			out.result.Details = map[string]any{}
		}
		out.result.Details["log_truncated_at_bytes"] = float64(limit) // a JSON number, as a read gives it back
	}
	if out.err != nil {
		note := fmt.Sprintf("the log was truncated at %d bytes (max-task-log-bytes)", limit)
		if out.err.Details != "" {
			note = out.err.Details + "; " + note
		}
		out.err.Details = note
	}
}
