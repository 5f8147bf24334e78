package agent_test

import (
	"slices"
	"testing"

	"github.com/berthhq/berth/internal/agent"
)

func TestArgs(t *testing.T) {
	t.Parallel()
	base := []string{"-p", "--output-format", "stream-json", "--verbose"}
	tests := []struct {
		name string
		opts agent.Options
		want []string
	}{
		{
			name: "minimal",
			opts: agent.Options{Prompt: "hello", MaxTurns: 5},
			want: append(slices.Clone(base), "--max-turns", "5", "--", "hello"),
		},
		{
			name: "max turns defaults to one",
			opts: agent.Options{Prompt: "hello"},
			want: append(slices.Clone(base), "--max-turns", "1", "--", "hello"),
		},
		{
			name: "every option",
			opts: agent.Options{
				Prompt: "fix it", SystemPrompt: "be brief", Model: "claude-opus-4", MaxTurns: 50,
				AllowedTools: []string{"Read", "Bash(git log:*)"}, MaxBudgetUSD: 1.25, ResumeSessionID: "abc-123",
			},
			want: append(slices.Clone(base), "--max-turns", "50",
				"--allowedTools", "Read,Bash(git log:*)", "--system-prompt", "be brief", "--model", "claude-opus-4",
				"--max-budget-usd", "1.25", "--resume", "abc-123", "--", "fix it"),
		},
		{
			name: "allowed tools only, blanks dropped",
			opts: agent.Options{Prompt: "p", MaxTurns: 2, AllowedTools: []string{"", "Read", " "}},
			want: append(slices.Clone(base), "--max-turns", "2", "--allowedTools", "Read", "--", "p"),
		},
		{
			name: "no tools at all",
			opts: agent.Options{Prompt: "p", MaxTurns: 2, AllowedTools: []string{"", " "}},
			want: append(slices.Clone(base), "--max-turns", "2", "--", "p"),
		},
		{
			name: "system prompt only",
			opts: agent.Options{Prompt: "p", MaxTurns: 2, SystemPrompt: "s"},
			want: append(slices.Clone(base), "--max-turns", "2", "--system-prompt", "s", "--", "p"),
		},
		{
			name: "model only",
			opts: agent.Options{Prompt: "p", MaxTurns: 2, Model: "m"},
			want: append(slices.Clone(base), "--max-turns", "2", "--model", "m", "--", "p"),
		},
		{
			name: "budget only",
			opts: agent.Options{Prompt: "p", MaxTurns: 2, MaxBudgetUSD: 0.5},
			want: append(slices.Clone(base), "--max-turns", "2", "--max-budget-usd", "0.5", "--", "p"),
		},
		{
			name: "resume only",
			opts: agent.Options{Prompt: "p", MaxTurns: 2, ResumeSessionID: "s-1"},
			want: append(slices.Clone(base), "--max-turns", "2", "--resume", "s-1", "--", "p"),
		},
		{
			name: "prompt that looks like an option",
			opts: agent.Options{Prompt: "--dangerously-skip-permissions", MaxTurns: 1},
			want: append(slices.Clone(base), "--max-turns", "1", "--", "--dangerously-skip-permissions"),
		},
		{
			name: "values with shell metacharacters stay single elements",
			opts: agent.Options{Prompt: "a; rm -rf / $(x) `y`", SystemPrompt: "-s --x", MaxTurns: 1},
			want: append(slices.Clone(base), "--max-turns", "1", "--system-prompt", "-s --x", "--", "a; rm -rf / $(x) `y`"),
		},
		{
			name: "empty prompt is still one element",
			opts: agent.Options{MaxTurns: 3},
			want: append(slices.Clone(base), "--max-turns", "3", "--", ""),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := agent.Args(tt.opts)
			if !slices.Equal(got, tt.want) {
				t.Errorf("Args(%+v)\n got %q\nwant %q", tt.opts, got, tt.want)
			}
			// The prompt is always exactly the last element, after "--".
			if got[len(got)-2] != "--" || got[len(got)-1] != tt.opts.Prompt {
				t.Errorf("prompt not last after --: %q", got)
			}
		})
	}
}
