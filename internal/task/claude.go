package task

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/berthhq/berth/internal/agent"
	"github.com/berthhq/berth/internal/fault"
	"github.com/berthhq/berth/internal/sandbox"
	"github.com/berthhq/berth/internal/store"
	"github.com/berthhq/berth/internal/taskdoc"
)

// DefaultMaxTurns is RunnerConfig.ClaudeMaxTurns when it is not set.
const DefaultMaxTurns = 50

// maxTurns is the --max-turns of a claude_chat task that asks for none.
func (r *Runner) maxTurns() int {
	if r.cfg.ClaudeMaxTurns > 0 {
		return r.cfg.ClaudeMaxTurns
	}
	return DefaultMaxTurns
}

// claudeExecutor runs claude_chat tasks: the claude CLI, headless, whose
// stream-json output becomes log lines, progress and the result.
type claudeExecutor struct{ r *Runner }

func (e claudeExecutor) run(ctx context.Context, j job) outcome {
	r, t, cfg, w, logs, dir := e.r, j.task, j.cfg, j.ws, j.logs, j.dir
	maxTurns := cfg.MaxTurns
	if maxTurns == 0 {
		maxTurns = r.maxTurns() // a task stored before records said what is in effect
	}
	opts := agent.Options{
		Prompt: t.Prompt, SystemPrompt: cfg.SystemPrompt, Model: cfg.Model, MaxTurns: maxTurns,
		AllowedTools: cfg.AllowedTools, MaxBudgetUSD: cfg.MaxBudgetUSD,
	}
	if t.ContinueTaskID != "" {
		prev, _, err := r.store.FindTask(ctx, t.ContinueTaskID, store.Viewer{Admin: true})
		if err != nil && !errors.Is(err, fault.ErrNotFound) {
			r.logger.Error("reading the task to continue failed", "task", t.ID, "continue_task_id", t.ContinueTaskID, "error", err.Error())
			return outcome{err: &Failure{Code: "NO_SESSION", Message: "the task to continue could not be read; try again"}}
		}
		if err != nil || prev.SessionID == "" {
			return outcome{err: &Failure{Code: "NO_SESSION", Message: "the task to continue has no agent session any more"}}
		}
		opts.ResumeSessionID = prev.SessionID
	}
	env, refused := r.envOf(cfg)
	if refused != nil {
		return outcome{err: refused}
	}
	if r.cfg.APIKey != "" {
		// Last: a later value wins, and the rule refuses this name anyway.
		env = append(env, "ANTHROPIC_API_KEY="+r.cfg.APIKey)
	}
	redact := redactor(r.cfg.APIKey)

	execCtx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	idle := time.AfterFunc(r.cfg.ClaudeIdle, func() { stop(errAgentIdle) })
	defer idle.Stop()

	parser := agent.NewParser(maxTurns)
	pr, pw := io.Pipe()
	parsed := make(chan struct{})
	// On every path, a panic included, the parser ends before run
	// returns: closing the pipe ends its read.
	defer func() {
		_ = pw.Close() // a pipe writer's Close never fails
		<-parsed
	}()
	go func() {
		defer close(parsed)
		defer func() { _, _ = io.Copy(io.Discard, pr) }() // the CLI never blocks on a full pipe; a pipe read fails only once closed
		// A panic while parsing ends the run (the CLI is stopped), not
		// the process.
		defer r.panics.Recover(r.logger, "agent-parser", func(any) { stop(errInternal) }, "task", t.ID)
		// Lines fails only when reading fails, and a pipe reader only
		// fails once its writer is closed with an error, which never
		// happens here.
		_ = agent.Lines(pr, func(line []byte) {
			idle.Reset(r.cfg.ClaudeIdle)
			if r.faultHook != nil {
				r.faultHook("agent-parser", t.ID)
			}
			for _, o := range parser.Line(line) {
				switch o := o.(type) {
				case agent.Log:
					logs.Log(o.Level, o.Source, redact(o.Message), fieldsJSON(o.Fields, redact))
				case agent.Progress:
					logs.Sync() // the lines before the progress are stored first
					r.setProgress(ctx, t, &Progress{Current: o.Current, Total: o.Total, Percentage: o.Percentage, Message: o.Message})
				case agent.Session:
					r.recordSession(ctx, t, o.ID)
				}
			}
		})
	}()
	stderr := logs.Stderr()
	if r.cfg.APIKey != "" {
		stderr = newRedactingWriter(stderr, r.cfg.APIKey)
	}
	argv := append([]string{r.cfg.ClaudePath}, agent.Args(opts)...)
	code, err := r.rt.Exec(execCtx, w.ContainerID, sandbox.ExecSpec{Argv: argv, Dir: dir, Env: env, Stdout: pw, Stderr: stderr, Tag: t.ID})
	_ = pw.Close() // a pipe writer's Close never fails
	<-parsed
	if c, ok := stderr.(io.Closer); ok {
		_ = c.Close() // a log line writer: it flushes its partial line, and cannot fail
	}

	if errors.Is(context.Cause(execCtx), errInternal) && ctx.Err() == nil {
		return outcome{err: internalError(), session: sessionOf(parser.SessionID())}
	}
	if errors.Is(context.Cause(execCtx), errAgentIdle) && ctx.Err() == nil {
		return outcome{err: &Failure{Code: "AGENT_IDLE", Message: fmt.Sprintf("the agent printed nothing for %s and was stopped", r.cfg.ClaudeIdle)}, session: sessionOf(parser.SessionID())}
	}
	if ctx.Err() != nil {
		return outcome{session: sessionOf(parser.SessionID())}
	}
	if err != nil {
		return outcome{err: &Failure{Code: "EXEC_FAILED", Message: "the claude CLI could not be run: " + redact(err.Error())}}
	}
	res, perr := parser.Outcome()
	if oe, ok := errors.AsType[*agent.OutputError](perr); ok {
		// No cost: a made-up number must not move the user's budget, the
		// stats or the metrics.
		return outcome{session: sessionOf(parser.SessionID()), err: &Failure{Code: "AGENT_OUTPUT",
			Message: fmt.Sprintf("the agent reported a %s that cannot be right (%s), so nothing of its result was recorded", oe.Field, oe.Reason),
			Details: redact(oe.Error()) + fmt.Sprintf("; exit code %d", code)}}
	}
	if perr != nil {
		return outcome{session: sessionOf(parser.SessionID()), err: &Failure{Code: "NO_RESULT", Message: "the agent exited without a result", Details: fmt.Sprintf("exit code %d", code)}}
	}
	cost := res.TotalCostUSD
	if res.Failed() {
		return outcome{cost: &cost, session: sessionOf(parser.SessionID()), err: &Failure{Code: agentErrorCode(res.Subtype), Message: redact(res.Text), Details: fmt.Sprintf("exit code %d, %d turns", code, res.NumTurns)}}
	}
	details, err := taskdoc.Details(map[string]any{
		"num_turns": res.NumTurns, "duration_ms": res.DurationMS, "total_cost_usd": res.TotalCostUSD,
		"session_id": res.SessionID, "usage": res.Usage,
	})
	if err != nil {
		// The agent's usage could not be written as JSON: the result
		// keeps what berth itself knows, and the reason is logged.
		r.logger.Warn("the agent's usage could not be recorded with the result", "task", t.ID, "error", err.Error())
		details = map[string]any{"num_turns": float64(res.NumTurns), "session_id": res.SessionID}
	}
	return outcome{cost: &cost, session: sessionOf(parser.SessionID()), result: &Result{Success: true, Summary: redact(res.Text), Details: details}}
}

// sessionOf is the session id a run ended with, for the task's end: nil
// when the agent reported none, which leaves the stored one alone.
func sessionOf(id string) *string {
	if id == "" {
		return nil
	}
	return &id
}

// recordSession stores the agent's session id as soon as the agent
// reports it, so a task still running can already be continued. A failed
// write is logged with the task; the session is written again with the
// task's end (outcome.session), so later continue_task_id calls do not
// fail with NO_SESSION for it.
func (r *Runner) recordSession(ctx context.Context, t *store.TaskRecord, id string) {
	if err := r.store.SetTaskProgress(context.WithoutCancel(ctx), t.ID, nil, &id, nil); err != nil {
		r.logger.Error("recording the agent session id failed; it is written again when the task ends", "task", t.ID, "error", err.Error())
		return
	}
	t.SessionID = id
}

// agentErrorCode is the Failure code of a failed agent run: the CLI's
// subtype in upper case (ERROR_MAX_TURNS), when it looks like one. The
// subtype is the agent's output: anything else (a huge string, one
// posing as berth's own codes' shape with other bytes) is AGENT_ERROR.
func agentErrorCode(subtype string) string {
	if len(subtype) == 0 || len(subtype) > 64 || strings.Trim(subtype, "abcdefghijklmnopqrstuvwxyz_") != "" {
		return "AGENT_ERROR"
	}
	return strings.ToUpper(subtype)
}

func fieldsJSON(fields map[string]any, redact func(string) string) json.RawMessage {
	if len(fields) == 0 {
		return nil
	}
	b, err := json.Marshal(fields)
	if err != nil {
		// The parser's fields are decoded JSON values and always
		// encode; a line without its fields is still the line.
		return nil
	}
	return json.RawMessage(redact(string(b)))
}

// clamp32 is n as an int32, within 0..MaxInt32: turn counts come from the
// agent's output, whose length nothing bounds.
func clamp32(n int) int32 {
	return int32(max(0, min(n, math.MaxInt32))) // #nosec G115 -- clamped
}
