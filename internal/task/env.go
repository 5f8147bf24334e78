package task

import (
	"fmt"

	"github.com/berthhq/berth/internal/fault"
	"github.com/berthhq/berth/internal/store"
)

// checkEnv applies the runner's environment rule (internal/taskenv) to a
// new task's config.environment: every refused variable is a field
// violation on config.environment["NAME"], so a client can point at each.
// A git operation takes no variables at all: it runs with an environment
// berth fixes (see Runner.gitEnv), and silently dropping what the caller
// asked for would mislead them.
func (s *Service) checkEnv(typ store.TaskType, env map[string]string) error {
	if refused := s.runner.env.CheckAll(env); len(refused) > 0 {
		f := &fault.Error{Kind: fault.ErrInvalid}
		for _, e := range refused {
			f.Violations = append(f.Violations, fault.Violation{Field: envField(e.Key), Reason: e.Reason})
		}
		f.Message = f.Violations[0].Field + ": " + f.Violations[0].Reason
		if n := len(refused) - 1; n > 0 {
			f.Message += fmt.Sprintf(" (and %d more variable(s) refused)", n)
		}
		return f
	}
	if typ == store.TaskGitOperation && len(env) > 0 {
		return fault.Invalid("config.environment", "git operations run with an environment berth fixes (commits are authored by your account's name and email); remove config.environment")
	}
	return nil
}

// envField is the request field of one variable of config.environment.
func envField(key string) string {
	return fmt.Sprintf("config.environment[%q]", key)
}

// envOf returns a task's config.environment as KEY=value pairs, or, when
// the runner's rule refuses one of them, the Failure that fails the
// task. The rule was checked when the task was created; it is checked
// again here because the task may have been stored before the rule, or
// before the operator narrowed it.
func (r *Runner) envOf(cfg Config) ([]string, *Failure) {
	if refused := r.env.CheckAll(cfg.Environment); len(refused) > 0 {
		return nil, &Failure{Code: "ENV_REFUSED",
			Message: fmt.Sprintf("config.environment[%q] is refused: %s", refused[0].Key, refused[0].Reason),
			Details: fmt.Sprintf("%d variable(s) refused", len(refused))}
	}
	var env []string
	for k, v := range cfg.Environment {
		env = append(env, k+"="+v)
	}
	return env, nil
}
