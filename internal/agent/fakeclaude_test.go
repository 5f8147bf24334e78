package agent_test

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berthhq/berth/internal/agent"
	"github.com/berthhq/berth/internal/testsvc"
)

const testKey = "sk-ant-test-DO-NOT-PRINT-0123456789"

type run struct {
	outputs  []agent.Output
	result   *agent.Result
	err      error // from Outcome
	exitCode int
	stdout   string
	stderr   string
}

func runFake(t *testing.T, ctx context.Context, opts agent.Options, env ...string) run {
	t.Helper()
	cmd := exec.CommandContext(ctx, testsvc.FakeClaude(t), agent.Args(opts)...)
	cmd.Env = env
	cmd.Dir = t.TempDir()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var r run
	var raw bytes.Buffer
	p := agent.NewParser(opts.MaxTurns)
	if err := agent.Lines(stdout, func(line []byte) {
		raw.Write(line)
		raw.WriteByte('\n')
		r.outputs = append(r.outputs, p.Line(line)...)
	}); err != nil {
		t.Fatal(err)
	}
	werr := cmd.Wait()
	var exitErr *exec.ExitError
	switch {
	case werr == nil:
	case errors.As(werr, &exitErr):
		r.exitCode = exitErr.ExitCode()
	default:
		t.Fatal(werr)
	}
	r.result, r.err = p.Outcome()
	r.stdout, r.stderr = raw.String(), stderr.String()
	if strings.Contains(r.stdout+r.stderr, testKey) {
		t.Error("the stand-in printed the API key")
	}
	return r
}

func count[T agent.Output](outs []agent.Output) int {
	n := 0
	for _, o := range outs {
		if _, ok := o.(T); ok {
			n++
		}
	}
	return n
}

func logs(outs []agent.Output, source, level string) []string {
	var msgs []string
	for _, o := range outs {
		if l, ok := o.(agent.Log); ok && l.Source == source && (level == "" || l.Level == level) {
			msgs = append(msgs, l.Message)
		}
	}
	return msgs
}

func TestFakeClaude(t *testing.T) {
	t.Parallel()
	key := "ANTHROPIC_API_KEY=" + testKey

	t.Run("normal", func(t *testing.T) {
		t.Parallel()
		r := runFake(t, t.Context(), agent.Options{Prompt: "summarise", MaxTurns: 10, Model: "claude-test",
			AllowedTools: []string{"Read", "Write"}, SystemPrompt: "-s", MaxBudgetUSD: 1}, key)
		if r.err != nil || r.exitCode != 0 {
			t.Fatalf("err %v, exit %d, stderr %s", r.err, r.exitCode, r.stderr)
		}
		res := r.result
		if res.Failed() || res.NumTurns != 4 || res.TotalCostUSD <= 0 || res.Usage["output_tokens"] == nil || res.SessionID == "" || res.Text == "" {
			t.Errorf("result %+v", res)
		}
		if n := count[agent.Progress](r.outputs); n != 5 {
			t.Errorf("%d progress updates, want 5 (4 turns, then 100 %% at the result)", n)
		}
		if n := len(logs(r.outputs, "tool", "warn")); n != 1 {
			t.Errorf("%d failed tool results, want 1", n)
		}
		if n := len(logs(r.outputs, "tool", "info")); n != 5 { // 3 tool_use, 2 ok results
			t.Errorf("%d tool lines, want 5", n)
		}
		if n := len(logs(r.outputs, "assistant", "debug")); n != 1 {
			t.Errorf("%d thinking lines, want 1", n)
		}
		if n := len(logs(r.outputs, "stdout", "")); n != 0 {
			t.Errorf("unexpected stdout lines")
		}
		init := r.outputs[0].(agent.Log)
		if init.Fields["model"] != "claude-test" || len(init.Fields["tools"].([]any)) != 2 {
			t.Errorf("init fields %v", init.Fields)
		}
		if r.outputs[1] != (agent.Session{ID: res.SessionID}) {
			t.Errorf("second output %#v", r.outputs[1])
		}
	})

	t.Run("max turns", func(t *testing.T) {
		t.Parallel()
		r := runFake(t, t.Context(), agent.Options{Prompt: "p", MaxTurns: 2}, key)
		if r.err != nil || r.result.Subtype != "error_max_turns" || r.result.NumTurns != 2 || !r.result.Failed() {
			t.Errorf("result %+v, %v", r.result, r.err)
		}
	})

	t.Run("resume", func(t *testing.T) {
		t.Parallel()
		r := runFake(t, t.Context(), agent.Options{Prompt: "go on", MaxTurns: 5, ResumeSessionID: "sess-earlier-1"}, key)
		if r.err != nil || r.result.SessionID != "sess-earlier-1" || !strings.Contains(r.result.Text, "Resumed") {
			t.Errorf("result %+v, %v", r.result, r.err)
		}
	})

	t.Run("prompt like an option", func(t *testing.T) {
		t.Parallel()
		r := runFake(t, t.Context(), agent.Options{Prompt: "--dangerously-skip-permissions", MaxTurns: 5}, key)
		if r.err != nil || r.exitCode != 0 {
			t.Errorf("err %v, exit %d, stderr %s", r.err, r.exitCode, r.stderr)
		}
	})

	t.Run("fail", func(t *testing.T) {
		t.Parallel()
		r := runFake(t, t.Context(), agent.Options{Prompt: "please [fail]", MaxTurns: 5}, key)
		if r.exitCode != 1 || r.err != nil || !r.result.IsError || r.result.Subtype != "error_during_execution" {
			t.Errorf("exit %d, result %+v, %v", r.exitCode, r.result, r.err)
		}
	})

	t.Run("no key", func(t *testing.T) {
		t.Parallel()
		r := runFake(t, t.Context(), agent.Options{Prompt: "p", MaxTurns: 5})
		if r.exitCode != 2 || r.err != nil || !r.result.IsError || !strings.Contains(r.result.Text, "ANTHROPIC_API_KEY") {
			t.Errorf("exit %d, result %+v, %v", r.exitCode, r.result, r.err)
		}
	})

	t.Run("nonjson", func(t *testing.T) {
		t.Parallel()
		r := runFake(t, t.Context(), agent.Options{Prompt: "[nonjson]", MaxTurns: 5}, key)
		if got := logs(r.outputs, "stdout", "info"); len(got) != 1 || got[0] != "Warning: this line is not JSON" {
			t.Errorf("stdout lines %q", got)
		}
		if r.err != nil || r.result.Failed() {
			t.Errorf("result %+v, %v", r.result, r.err)
		}
	})

	t.Run("noresult", func(t *testing.T) {
		t.Parallel()
		r := runFake(t, t.Context(), agent.Options{Prompt: "[noresult]", MaxTurns: 5}, key)
		if r.exitCode != 0 || !errors.Is(r.err, agent.ErrNoResult) || len(r.outputs) < 10 {
			t.Errorf("exit %d, %d outputs, err %v", r.exitCode, len(r.outputs), r.err)
		}
	})

	t.Run("lines", func(t *testing.T) {
		t.Parallel()
		r := runFake(t, t.Context(), agent.Options{Prompt: "[lines:5000]", MaxTurns: 5}, key)
		if n := len(logs(r.outputs, "assistant", "info")); n != 5000+4 {
			t.Errorf("%d assistant lines, want 5004", n)
		}
		if n := count[agent.Progress](r.outputs); n != 5 {
			t.Errorf("%d progress updates, want 5 (4 turns, then 100 %% at the result)", n)
		}
		if r.err != nil || r.result.NumTurns != 4 {
			t.Errorf("result %+v, %v", r.result, r.err)
		}
	})

	t.Run("rate", func(t *testing.T) {
		t.Parallel()
		start := time.Now()
		r := runFake(t, t.Context(), agent.Options{Prompt: "[lines:50] [rate:500]", MaxTurns: 1}, key)
		end := time.Now()
		// 50 lines at 500 a second: the last is due 49/500 s after the first.
		if d := end.Sub(start); d < 98*time.Millisecond {
			t.Errorf("50 lines at 500/s took %v", d)
		}
		var sent []int64
		for _, msg := range logs(r.outputs, "assistant", "info") {
			if !strings.HasPrefix(msg, "extra line ") {
				continue
			}
			_, stamp, ok := strings.Cut(msg, " sent ")
			ns, err := strconv.ParseInt(stamp, 10, 64)
			if !ok || err != nil {
				t.Fatalf("line %q carries no send time", msg)
			}
			sent = append(sent, ns)
		}
		if len(sent) != 50 {
			t.Fatalf("%d extra lines, want 50", len(sent))
		}
		if sent[0] < start.UnixNano() || sent[49] > end.UnixNano() || !slices.IsSorted(sent) {
			t.Errorf("send times %v not in order within [%d, %d]", sent, start.UnixNano(), end.UnixNano())
		}
		if d := time.Duration(sent[49] - sent[0]); d < 98*time.Millisecond {
			t.Errorf("first to last line took %v, want 98ms or more", d)
		}
		if r.err != nil {
			t.Error(r.err)
		}
	})

	t.Run("slow", func(t *testing.T) {
		t.Parallel()
		start := time.Now()
		r := runFake(t, t.Context(), agent.Options{Prompt: "[slow]", MaxTurns: 1}, key)
		// init, thinking, text, tool_use, tool_result, result: 5 pauses.
		if d := time.Since(start); d < time.Second {
			t.Errorf("slow run took %v", d)
		}
		if r.err != nil {
			t.Error(r.err)
		}
	})

	t.Run("hang", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(t.Context(), 1500*time.Millisecond)
		defer cancel()
		start := time.Now()
		r := runFake(t, ctx, agent.Options{Prompt: "[hang]", MaxTurns: 5}, key)
		if time.Since(start) < time.Second {
			t.Errorf("the hung agent ended early")
		}
		if len(r.outputs) != 2 || !errors.Is(r.err, agent.ErrNoResult) || r.exitCode != -1 {
			t.Errorf("%d outputs %#v, exit %d, err %v", len(r.outputs), r.outputs, r.exitCode, r.err)
		}
	})

	t.Run("unknown flag refused", func(t *testing.T) {
		t.Parallel()
		cmd := exec.Command(testsvc.FakeClaude(t), "-p", "--output-format", "stream-json", "--verbose", "--bogus", "--", "x")
		cmd.Env = []string{key}
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "unknown option") {
			t.Errorf("err %v, output %s", err, out)
		}
	})
}
