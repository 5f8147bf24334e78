package agent

import (
	"strconv"
	"strings"
)

// Options are the settings of one headless claude run. Zero values mean
// "not set": the flag is left out and the CLI uses its own default.
type Options struct {
	Prompt          string
	SystemPrompt    string
	Model           string
	MaxTurns        int
	AllowedTools    []string
	MaxBudgetUSD    float64
	ResumeSessionID string
}

// Args returns the claude CLI argv after the binary name for o:
//
//	-p --output-format stream-json --verbose --max-turns N
//	   [--allowedTools a,b] [--system-prompt S] [--model M]
//	   [--max-budget-usd B] [--resume ID] -- <prompt>
//
// It is an argv, never a shell string, so no value is interpreted by a
// shell. In the real CLI -p (--print) is a boolean flag and the prompt is a
// positional argument, so the prompt goes last, after "--": a prompt such
// as "--dangerously-skip-permissions" stays a prompt and can never become
// an option. Option values are separate elements after their flag; the CLI
// takes a required option value verbatim, even when it starts with "-".
// --allowedTools takes a variadic list in the real CLI, which is why it is
// followed only by other flags or "--", never by a bare value.
//
// --max-turns is always passed (the CLI is unbounded otherwise); a
// non-positive MaxTurns becomes 1.
func Args(o Options) []string {
	turns := o.MaxTurns
	if turns < 1 {
		turns = 1
	}
	args := []string{
		"-p",
		"--output-format", "stream-json",
		"--verbose",
		"--max-turns", strconv.Itoa(turns),
	}
	if tools := nonEmpty(o.AllowedTools); len(tools) > 0 {
		args = append(args, "--allowedTools", strings.Join(tools, ","))
	}
	if o.SystemPrompt != "" {
		args = append(args, "--system-prompt", o.SystemPrompt)
	}
	if o.Model != "" {
		args = append(args, "--model", o.Model)
	}
	if o.MaxBudgetUSD > 0 {
		args = append(args, "--max-budget-usd", strconv.FormatFloat(o.MaxBudgetUSD, 'f', -1, 64))
	}
	if o.ResumeSessionID != "" {
		args = append(args, "--resume", o.ResumeSessionID)
	}
	return append(args, "--", o.Prompt)
}

// nonEmpty drops blank tool names so a stray "" never yields ",,".
func nonEmpty(tools []string) []string {
	var out []string
	for _, t := range tools {
		if t = strings.TrimSpace(t); t != "" {
			out = append(out, t)
		}
	}
	return out
}
