package task

import (
	"context"
	"io"

	"github.com/berthhq/berth/internal/store"
	"github.com/berthhq/berth/internal/tasklog"
)

// executor runs one type of task (claude_chat, git_operation,
// docker_build) in its workspace, which dispatch has started and whose
// working directory it has checked. It writes the task's output to j.logs
// and returns how the run ended; the run's context carries the time limit,
// cancel and shutdown, and execute turns its cause into the task's status.
type executor interface {
	run(ctx context.Context, j job) outcome
}

// job is one run of a task, as an executor sees it.
type job struct {
	task *store.TaskRecord
	cfg  Config
	ws   *store.Workspace // running
	dir  string           // the working directory, inside the container
	logs *tasklog.Writer
}

// executors returns the executor of each task type, for r.
func (r *Runner) newExecutors() map[store.TaskType]executor {
	return map[store.TaskType]executor{
		store.TaskClaudeChat:   claudeExecutor{r},
		store.TaskGitOperation: gitExecutor{r},
		store.TaskDockerBuild:  buildExecutor{r},
	}
}

// setProgress records a running task's progress and announces it. A
// failed write is logged and the change not announced: watchers are never
// shown progress the store does not hold. The run goes on; the next
// progress, or the end, brings the record up to date.
func (r *Runner) setProgress(ctx context.Context, t *store.TaskRecord, p *Progress) {
	if err := r.store.SetTaskProgress(context.WithoutCancel(ctx), t.ID, p, nil, nil); err != nil {
		r.logger.Warn("recording a task's progress failed", "task", t.ID, "error", err.Error())
		return
	}
	t.Progress = p
	r.published(t)
}

func closeAll(ws ...io.Writer) {
	for _, w := range ws {
		if c, ok := w.(io.Closer); ok {
			_ = c.Close() // a log line writer: it flushes its partial line, and cannot fail
		}
	}
}
