package task

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/berthhq/berth/internal/gitop"
	"github.com/berthhq/berth/internal/sandbox"
	"github.com/berthhq/berth/internal/store"
)

// gitExecutor runs git_operation tasks: one whitelisted git operation,
// then it records the resulting HEAD.
type gitExecutor struct{ r *Runner }

func (e gitExecutor) run(ctx context.Context, j job) outcome {
	r, t, cfg, w, logs, dir := e.r, j.task, j.cfg, j.ws, j.logs, j.dir
	if t.Git == nil {
		return outcome{err: &Failure{Code: "INVALID", Message: "the task has no git operation"}}
	}
	op := gitOp(t.Git)
	steps, err := gitop.Steps(op)
	if err != nil {
		return outcome{err: &Failure{Code: "INVALID", Message: err.Error()}}
	}
	if _, refused := r.envOf(cfg); refused != nil {
		// A task stored before the rule: refused as at creation, though
		// git would not see its variables.
		return outcome{err: refused}
	}
	env, err := r.gitEnv(ctx, t)
	if err != nil {
		r.logger.ErrorContext(ctx, "reading a git task's author failed", "task", t.ID, "user", t.CreatedBy, "error", err.Error())
		return outcome{err: &Failure{Code: "NO_IDENTITY", Message: "the account that created the task could not be read for the commit identity"}}
	}
	for i, argv := range steps {
		if i > 0 {
			// The step before may have changed the tree: the working
			// directory is checked again before every exec.
			if err := checkWorkDir(w.Path, cfg.WorkingDir); err != nil {
				return outcome{err: &Failure{Code: "WORKING_DIR", Message: err.Error()}}
			}
		}
		stdout, stderr := logs.Stdout(), logs.Stderr()
		code, err := r.rt.Exec(ctx, w.ContainerID, sandbox.ExecSpec{Argv: argv, Dir: dir, Env: env, Stdout: stdout, Stderr: stderr, Tag: t.ID})
		closeAll(stdout, stderr)
		if ctx.Err() != nil {
			return outcome{}
		}
		if err != nil {
			return outcome{err: &Failure{Code: "EXEC_FAILED", Message: "git could not be run: " + err.Error()}}
		}
		if code != 0 {
			return outcome{err: &Failure{Code: "EXIT_CODE", Message: fmt.Sprintf("git exited with status %d", code), Details: strings.Join(argv, " ")}}
		}
	}
	// HEAD is a detail of the result: a repository without one (a fresh
	// init, or no repository at all for status) records it empty.
	var head bytes.Buffer
	if c, err := r.rt.Exec(ctx, w.ContainerID, sandbox.ExecSpec{Argv: gitop.HeadArgv(), Dir: dir, Env: env, Stdout: &head, Stderr: io.Discard}); err != nil || c != 0 {
		head.Reset()
	}
	details := map[string]any{"operation": t.Git.Operation.EnumName(), "head": strings.TrimSpace(head.String())}
	return outcome{result: &Result{Success: true, Summary: "git " + op.Operation + " done", Details: details}}
}

// gitHome is HOME for git operations: a directory that does not exist, so
// no configuration is ever read from it — not the host's ~/.gitconfig on
// the process runtime, not an ~/.ssh/config planted in a shared /tmp. (A
// git operation never needs to write there.)
const gitHome = "/nonexistent"

// gitEnv is the whole environment of a git operation, fixed by berth:
// never the task's config.environment, which could rewrite URLs to
// commands (GIT_CONFIG_*), pick the ssh program (GIT_SSH_COMMAND) or
// re-allow transports (GIT_ALLOW_PROTOCOL). No global or system
// configuration is read, and commits are authored and committed by the
// berth account that created the task. Runtimes add their own variables
// first (the process runtime passes the host's HOME); these come later
// and win.
func (r *Runner) gitEnv(ctx context.Context, t *store.TaskRecord) ([]string, error) {
	u, err := r.store.FindUserByID(ctx, t.CreatedBy)
	if err != nil {
		return nil, err
	}
	name, email := identity(u)
	return append(gitop.Env(),
		"HOME="+gitHome,
		"XDG_CONFIG_HOME="+gitHome,
		"GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_TERMINAL_PROMPT=0",
		"GIT_AUTHOR_NAME="+name, "GIT_AUTHOR_EMAIL="+email,
		"GIT_COMMITTER_NAME="+name, "GIT_COMMITTER_EMAIL="+email,
	), nil
}

// identity is the name and email git records for account u: its name, or
// its email when it has none (git refuses an empty name), and a made-up
// address in the reserved .invalid domain when it has no email. Bytes git
// or an environment cannot carry (NUL, line breaks, angle brackets) are
// dropped.
func identity(u *store.User) (name, email string) {
	clean := strings.NewReplacer("\x00", "", "\n", " ", "\r", " ", "<", "", ">", "")
	name = strings.TrimSpace(clean.Replace(u.Name))
	email = strings.TrimSpace(clean.Replace(u.Email))
	if email == "" {
		email = u.ID + "@users.berth.invalid"
	}
	if name == "" {
		name = email
	}
	return name, email
}
