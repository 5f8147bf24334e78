package task

import (
	"fmt"

	"google.golang.org/protobuf/types/known/structpb"
)

// noteTruncated records in a task's outcome that its log reached the cap
// of limit bytes, so whoever reads the result knows the log is not whole:
// the result's details get log_truncated_at_bytes, an error's details a
// sentence.
func noteTruncated(out *outcome, limit int64) {
	if out.result != nil {
		if out.result.Details == nil {
			out.result.Details = &structpb.Struct{Fields: map[string]*structpb.Value{}}
		}
		if out.result.Details.Fields == nil {
			out.result.Details.Fields = map[string]*structpb.Value{}
		}
		out.result.Details.Fields["log_truncated_at_bytes"] = structpb.NewNumberValue(float64(limit))
	}
	if out.err != nil {
		note := fmt.Sprintf("the log was truncated at %d bytes (max-task-log-bytes)", limit)
		if out.err.Details != "" {
			note = out.err.Details + "; " + note
		}
		out.err.Details = note
	}
}
