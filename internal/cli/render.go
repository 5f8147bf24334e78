package cli

import (
	"fmt"
	"io"
	"strings"
	"time"

	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
)

// ANSI styles, used only when the output is a terminal.
const (
	styleReset  = "\x1b[0m"
	styleBold   = "\x1b[1m"
	styleDim    = "\x1b[2m"
	styleRed    = "\x1b[31m"
	styleGreen  = "\x1b[32m"
	styleYellow = "\x1b[33m"
	styleCyan   = "\x1b[36m"
	clearLine   = "\r\x1b[K"
)

// renderer writes a task's log for people: assistant text as is, tool
// calls as "→ Tool input", results as "← output" (red when the tool
// failed), system lines dimmed with "·", stderr with "!", errors in red.
// On a terminal it colours them and keeps a progress line under the log;
// elsewhere it writes plain lines only, one or more per log line.
type renderer struct {
	w        io.Writer
	terminal bool
	now      func() time.Time

	started  time.Time
	status   berthv1.TaskStatus
	progress *berthv1.TaskProgress
	shown    bool // a progress line is on screen
}

func (r *renderer) style(s, text string) string {
	if !r.terminal || s == "" {
		return text
	}
	return s + text + styleReset
}

// line renders one log entry.
func (r *renderer) line(e *berthv1.LogEntry) {
	fields := e.GetFields().GetFields()
	var prefix, style string
	switch e.GetSource() {
	case berthv1.LogSource_LOG_SOURCE_ASSISTANT:
		if e.GetLevel() == berthv1.LogLevel_LOG_LEVEL_DEBUG {
			prefix, style = "… ", styleDim // thinking
		}
	case berthv1.LogSource_LOG_SOURCE_TOOL:
		switch {
		case fields["tool_use_id"] != nil && fields["is_error"].GetBoolValue():
			prefix, style = "← ", styleRed
		case fields["tool_use_id"] != nil:
			prefix, style = "← ", styleDim
		default:
			prefix, style = "→ ", styleCyan
		}
	case berthv1.LogSource_LOG_SOURCE_SYSTEM:
		prefix, style = "· ", styleDim
	case berthv1.LogSource_LOG_SOURCE_STDERR:
		prefix, style = "! ", styleYellow
	}
	switch e.GetLevel() {
	case berthv1.LogLevel_LOG_LEVEL_ERROR:
		style = styleRed
	case berthv1.LogLevel_LOG_LEVEL_WARN:
		style = styleYellow
	}
	indent := strings.Repeat(" ", len([]rune(prefix)))
	var b strings.Builder
	for i, l := range strings.Split(strings.TrimRight(e.GetMessage(), "\n"), "\n") {
		p := prefix
		if i > 0 {
			p = indent
		}
		b.WriteString(r.style(style, p+l))
		b.WriteByte('\n')
	}
	r.clear()
	fmt.Fprint(r.w, b.String())
	r.draw()
}

// update records a status or progress event and redraws the progress line.
func (r *renderer) update(status berthv1.TaskStatus, progress *berthv1.TaskProgress) {
	if status != berthv1.TaskStatus_TASK_STATUS_UNSPECIFIED {
		r.status = status
		if status == berthv1.TaskStatus_TASK_STATUS_RUNNING && r.started.IsZero() {
			r.started = r.now()
		}
	}
	if progress != nil {
		r.progress = progress
	}
	r.clear()
	r.draw()
}

func (r *renderer) clear() {
	if r.shown {
		fmt.Fprint(r.w, clearLine)
		r.shown = false
	}
}

// draw shows the progress line (terminal only): status, progress message
// or percentage, time since it started running.
func (r *renderer) draw() {
	if !r.terminal || r.status == berthv1.TaskStatus_TASK_STATUS_UNSPECIFIED || terminalStatus(r.status) {
		return
	}
	parts := []string{enumName(r.status.String(), "TASK_STATUS_")}
	if p := r.progress; p != nil {
		switch {
		case p.GetMessage() != "":
			parts = append(parts, p.GetMessage())
		case p.GetTotal() > 0:
			parts = append(parts, fmt.Sprintf("%d/%d", p.GetCurrent(), p.GetTotal()))
		}
		if p.GetPercentage() > 0 {
			parts = append(parts, fmt.Sprintf("%d%%", p.GetPercentage()))
		}
	}
	if !r.started.IsZero() {
		parts = append(parts, r.now().Sub(r.started).Round(time.Second).String())
	}
	fmt.Fprint(r.w, r.style(styleBold, "▸ "+strings.Join(parts, " · ")))
	r.shown = true
}

// terminalStatus says whether a task in status s has finished.
func terminalStatus(s berthv1.TaskStatus) bool {
	switch s {
	case berthv1.TaskStatus_TASK_STATUS_SUCCEEDED, berthv1.TaskStatus_TASK_STATUS_FAILED,
		berthv1.TaskStatus_TASK_STATUS_CANCELLED, berthv1.TaskStatus_TASK_STATUS_TIMED_OUT:
		return true
	}
	return false
}

// exitStatus is the CLI's exit status for a finished task's status.
func exitStatus(s berthv1.TaskStatus) int {
	switch s {
	case berthv1.TaskStatus_TASK_STATUS_SUCCEEDED:
		return ExitOK
	case berthv1.TaskStatus_TASK_STATUS_CANCELLED:
		return ExitCancelled
	case berthv1.TaskStatus_TASK_STATUS_TIMED_OUT:
		return ExitTimedOut
	}
	return ExitTaskFailed
}

// summary is the line written when a followed task ends: its outcome, how
// long it ran, what it cost and its error.
func summary(t *berthv1.Task, terminal bool) string {
	status := enumName(t.GetStatus().String(), "TASK_STATUS_")
	parts := []string{"task " + t.GetId() + " " + status}
	if t.GetStartedAt() != nil && t.GetCompletedAt() != nil {
		parts = append(parts, "in "+t.GetCompletedAt().AsTime().Sub(t.GetStartedAt().AsTime()).Round(100*time.Millisecond).String())
	}
	if cost, ok := t.GetResult().GetDetails().GetFields()["total_cost_usd"]; ok {
		parts = append(parts, fmt.Sprintf("cost $%.4f", cost.GetNumberValue()))
	}
	if e := t.GetError(); e != nil && e.GetMessage() != "" {
		parts = append(parts, e.GetCode()+": "+e.GetMessage())
	}
	text := strings.Join(parts, " · ")
	if !terminal {
		return text
	}
	if t.GetStatus() == berthv1.TaskStatus_TASK_STATUS_SUCCEEDED {
		return styleGreen + "✓ " + text + styleReset
	}
	return styleRed + "✗ " + text + styleReset
}
