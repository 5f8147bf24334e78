package config

import (
	"path"
	"strconv"
	"strings"
	"time"
)

// Tasks configures the task runner.
type Tasks struct {
	// MaxRunning caps the tasks running at once on this server.
	MaxRunning int64
	// MaxRunningPerWorkspace caps the tasks running at once in one workspace.
	MaxRunningPerWorkspace int64
	// Timeout is a task's time limit when its config sets none.
	Timeout time.Duration
	// ClaudePath is the claude CLI inside workspace containers.
	ClaudePath string
	// ClaudeIdleTimeout ends an agent run that prints nothing for this long.
	ClaudeIdleTimeout time.Duration
	// ClaudeMaxTurns is the --max-turns of a claude_chat task whose config
	// sets none.
	ClaudeMaxTurns int64
	// AnthropicAPIKey is passed to the claude CLI as ANTHROPIC_API_KEY.
	AnthropicAPIKey Secret
	// LogRetention deletes the logs of tasks finished longer ago (0 = keep).
	LogRetention time.Duration
	// BudgetUSD caps what one user's claude_chat tasks may cost per
	// BudgetPeriod (0 = no budget).
	BudgetUSD    float64
	BudgetPeriod time.Duration
	// Lease is how long a runner's claim on a running task lasts without
	// a heartbeat.
	Lease time.Duration
	// EnvDeny lists glob patterns of variable names a task's
	// config.environment may not set, on top of the built-in rule.
	EnvDeny []string
	// EnvAllow lists glob patterns of variable names a task may set
	// although the built-in rule refuses them.
	EnvAllow []string
}

func (s *flagSet) addTaskFlags(c *Config) {
	t := &c.Tasks
	s.section("Tasks")
	s.count(&t.MaxRunning, "max-running-tasks", "count", 4,
		"Most tasks running at once on this server.")
	s.count(&t.MaxRunningPerWorkspace, "max-running-per-workspace", "count", 1,
		"Most tasks running at once in one workspace.")
	s.duration(&t.Timeout, "task-timeout", 30*time.Minute,
		"Time limit of a task whose `config.timeout` is 0 (at most 1h, the API's own cap).")
	s.str(&t.ClaudePath, "claude-path", "path", "claude",
		"The claude CLI inside workspace containers: a name looked up on the container's `PATH` or an absolute path.")
	s.duration(&t.ClaudeIdleTimeout, "claude-idle-timeout", 5*time.Minute,
		"Watchdog: an agent run that prints nothing for this long is stopped (`AGENT_IDLE`).")
	s.count(&t.ClaudeMaxTurns, "claude-max-turns", "count", 50,
		"`--max-turns` of a `claude_chat` task whose `config.max_turns` is 0 (1..1000; a request may ask for 1..50 itself). A turn is one round trip of the model and its tools, and agent work takes many (each tool call is one), so the default is the most a request may ask for; the time limit, the idle watchdog and `--budget-usd` bound a run anyway.")
	s.secret(&t.AnthropicAPIKey, "anthropic-api-key", "key",
		"Passed to the claude CLI as `ANTHROPIC_API_KEY` in the exec environment; never logged, stored or echoed (prefer the variable: flags show in process lists).")
	s.duration(&t.LogRetention, "log-retention", 30*24*time.Hour,
		"Delete the logs of tasks that finished longer ago than this (0 = keep them).")
	s.number(&t.BudgetUSD, "budget-usd", "dollars", 0,
		"Most one user's `claude_chat` tasks may cost, in US dollars, per `--budget-period`; new ones are refused once it is spent (0 = no budget).")
	s.duration(&t.BudgetPeriod, "budget-period", 30*24*time.Hour,
		"The period `--budget-usd` applies to, counted back from now.")
	s.list(&t.EnvDeny, "task-env-deny", "GLOB,...",
		"Extra variable names a task's `config.environment` may not set, on top of the built-in rule (`GIT_*`, `LD_*`, `NODE_*`, `SSH_*`, `ANTHROPIC_*`, `CLAUDE_*`, `PATH`, `HOME`, `*_PROXY`, `BERTH_*` and others; see \"What a task's environment may set\"): shell globs such as `*_TOKEN` or `SECRET`, matched case-insensitively, comma-separated; the flag may be repeated. Wins over `--task-env-allow`.")
	s.list(&t.EnvAllow, "task-env-allow", "GLOB,...",
		"Variable names a task may set although the built-in rule refuses them, such as `PYTHONUNBUFFERED`: shell globs, matched case-insensitively, comma-separated; the flag may be repeated. `BERTH_*` and `ANTHROPIC_API_KEY` are never allowed. Widening the rule lets members steer the programs berth runs for them; allow only what you have read about.")
}

func (c *Config) checkTasks(p *problems) {
	t := &c.Tasks
	if t.MaxRunning < 1 {
		p.add("max-running-tasks", strconv.FormatInt(t.MaxRunning, 10), "want 1 or more")
	}
	if t.MaxRunningPerWorkspace < 1 {
		p.add("max-running-per-workspace", strconv.FormatInt(t.MaxRunningPerWorkspace, 10), "want 1 or more")
	}
	if t.Timeout <= 0 || t.Timeout > time.Hour {
		p.add("task-timeout", formatDuration(t.Timeout), "want a duration between 1s and 1h")
	}
	if t.ClaudePath == "" {
		p.add("claude-path", t.ClaudePath, "want the claude CLI's name or absolute path")
	}
	if t.ClaudeIdleTimeout <= 0 {
		p.add("claude-idle-timeout", formatDuration(t.ClaudeIdleTimeout), "want a positive duration")
	}
	if t.ClaudeMaxTurns < 1 || t.ClaudeMaxTurns > 1000 {
		p.add("claude-max-turns", strconv.FormatInt(t.ClaudeMaxTurns, 10), "want 1..1000")
	}
	if t.LogRetention < 0 {
		p.add("log-retention", formatDuration(t.LogRetention), "want 0 (keep) or a positive duration")
	}
	if t.BudgetUSD < 0 {
		p.add("budget-usd", strconv.FormatFloat(t.BudgetUSD, 'g', -1, 64), "want 0 (none) or more")
	}
	if t.BudgetPeriod <= 0 {
		p.add("budget-period", formatDuration(t.BudgetPeriod), "want a positive duration")
	}
	for _, list := range []struct {
		flag     string
		patterns []string
	}{{"task-env-deny", t.EnvDeny}, {"task-env-allow", t.EnvAllow}} {
		for _, pat := range list.patterns {
			if !validEnvPattern(pat) {
				p.add(list.flag, pat, "want shell globs over variable names, such as FOO_* or *_TOKEN")
			}
		}
	}
}

// validEnvPattern reports whether pat is a glob internal/taskenv accepts:
// path.Match syntax, with no "/" (a variable name has none). It is
// repeated here because config imports nothing of berth's.
func validEnvPattern(pat string) bool {
	if pat == "" || strings.Contains(pat, "/") {
		return false
	}
	_, err := path.Match(strings.ToUpper(pat), "")
	return err == nil
}
