package cli

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
)

// taskFlags are the flags of task run and task continue.
type taskFlags struct {
	claude, git           string
	build                 bool
	model, systemPrompt   string
	maxTurns              int32
	budget                float64
	allowedTools          []string
	contextDir, tag, file string
	ref, url, message     string
	priority, workingDir  string
	timeout               time.Duration
	env                   []string
	follow                bool
}

func (a *app) taskCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "task",
		Short: "Run, follow, list and cancel tasks",
		Example: `  berth task run demo --claude "Add a README"
  berth task list --workspace demo
  berth task logs --follow <task id>`,
	}
	cmd.AddCommand(a.taskRunCmd(), a.taskListCmd(), a.taskGetCmd(), a.taskLogsCmd(), a.taskCancelCmd(), a.taskContinueCmd())
	return cmd
}

func (a *app) addCommonTaskFlags(cmd *cobra.Command, f *taskFlags) {
	cmd.Flags().StringVar(&f.model, "model", "", "claude model")
	cmd.Flags().Int32Var(&f.maxTurns, "max-turns", 0, "most agent turns, 1..50 (default: the server's)")
	cmd.Flags().Float64Var(&f.budget, "budget", 0, "most the run may cost, in US dollars")
	cmd.Flags().StringVar(&f.systemPrompt, "system-prompt", "", "system prompt for the agent")
	cmd.Flags().StringSliceVar(&f.allowedTools, "allowed-tools", nil, "tools the agent may use, comma-separated (Bash,Read,…)")
	cmd.Flags().StringVar(&f.priority, "priority", "", "low, medium or high")
	cmd.Flags().DurationVar(&f.timeout, "timeout", 0, "time limit, at most 1h (default: the server's)")
	cmd.Flags().StringVar(&f.workingDir, "working-dir", "", "directory inside the workspace to run in")
	cmd.Flags().StringArrayVar(&f.env, "env", nil, "NAME=VALUE for the task's environment (repeatable)")
	cmd.Flags().BoolVarP(&f.follow, "follow", "f", false, "stream the log until the task ends and exit with its status (default on a terminal)")
}

// config builds the task config from the flags.
func (f *taskFlags) config() (*berthv1.TaskConfig, error) {
	cfg := &berthv1.TaskConfig{
		SystemPrompt: f.systemPrompt, MaxTurns: f.maxTurns, AllowedTools: f.allowedTools,
		WorkingDir: f.workingDir, Model: f.model, MaxBudgetUsd: f.budget,
	}
	if f.timeout < 0 || f.timeout > time.Hour || f.timeout%time.Second != 0 {
		return nil, usageError{fmt.Errorf("--timeout %s: want whole seconds up to 1h", f.timeout)}
	}
	cfg.Timeout = int32(f.timeout / time.Second) // #nosec G115 -- at most 3600
	for _, kv := range f.env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, usageError{fmt.Errorf("--env %q: want NAME=VALUE", kv)}
		}
		if cfg.Environment == nil {
			cfg.Environment = map[string]string{}
		}
		cfg.Environment[k] = v
	}
	return cfg, nil
}

func (f *taskFlags) priorityValue() (berthv1.TaskPriority, error) {
	if f.priority == "" {
		return 0, nil
	}
	v, ok := berthv1.TaskPriority_value["TASK_PRIORITY_"+strings.ToUpper(f.priority)]
	if !ok || v == 0 {
		return 0, usageError{fmt.Errorf("--priority %q: want low, medium or high", f.priority)}
	}
	return berthv1.TaskPriority(v), nil
}

// gitOperation builds a git task from --git OP and the arguments after the
// workspace: clone takes a URL, checkout a ref, the others paths.
func (f *taskFlags) gitOperation(args []string) (*berthv1.GitOperation, error) {
	v, ok := berthv1.GitOperationType_value["GIT_OPERATION_TYPE_"+strings.ToUpper(f.git)]
	if !ok || v == 0 {
		return nil, usageError{fmt.Errorf("--git %q: want clone, fetch, pull, checkout, status, diff, log, commit or init", f.git)}
	}
	op := &berthv1.GitOperation{Operation: berthv1.GitOperationType(v), Ref: f.ref, Url: f.url, Message: f.message}
	switch op.Operation {
	case berthv1.GitOperationType_GIT_OPERATION_TYPE_CLONE:
		if len(args) > 0 && op.Url == "" {
			op.Url, args = args[0], args[1:]
		}
	case berthv1.GitOperationType_GIT_OPERATION_TYPE_CHECKOUT:
		if len(args) > 0 && op.Ref == "" {
			op.Ref, args = args[0], args[1:]
		}
	}
	op.Paths = args
	return op, nil
}

func (a *app) taskRunCmd() *cobra.Command {
	var f taskFlags
	cmd := &cobra.Command{
		Use:   "run WORKSPACE (--claude PROMPT | --git OP [ARGS…] | --build)",
		Short: "Run a claude, git or docker-build task in a workspace",
		Long: `Queue a task in a workspace. With --follow (the default when standard output
is a terminal) the log is streamed live until the task ends, reconnecting by
itself if the connection drops, and berth exits with the task's outcome:

  0    succeeded
  1    berth could not run or follow it (bad request, server error…)
  2    bad flags or arguments
  3    the task failed
  4    the task was cancelled
  5    the task timed out
  130  Ctrl-C: detached, the task keeps running

Ctrl-C on a terminal asks whether to cancel the task or detach from it.
Without --follow the new task is printed and berth exits 0.

--git takes the operation and, after the workspace, its arguments: the URL
for clone, the ref for checkout, paths for the others.`,
		Example: `  berth task run demo --claude "Write a summary of the project" --max-turns 10
  berth task run demo --git status
  berth task run demo --git commit --message "Add summary" SUMMARY.md
  berth task run demo --build --context . --tag v1
  id=$(berth task run demo --claude "Fix the tests" --follow=false -o json | jq -r .task.id)`,
		Args:              cobra.MinimumNArgs(1),
		ValidArgsFunction: a.workspaceCompletion,
		RunE: func(cmd *cobra.Command, args []string) error {
			chosen := 0
			for _, set := range []bool{cmd.Flags().Changed("claude"), f.git != "", f.build} {
				if set {
					chosen++
				}
			}
			if chosen != 1 {
				return usageError{fmt.Errorf("name exactly one of --claude PROMPT, --git OP or --build")}
			}
			if cmd.Flags().Changed("claude") && len(args) > 1 || f.build && len(args) > 1 {
				return usageError{fmt.Errorf("unexpected arguments after the workspace: %q", args[1:])}
			}
			cfg, err := f.config()
			if err != nil {
				return err
			}
			prio, err := f.priorityValue()
			if err != nil {
				return err
			}
			req := &berthv1.CreateTaskRequest{Config: cfg, Priority: prio}
			switch {
			case f.git != "":
				req.Type = berthv1.TaskType_TASK_TYPE_GIT_OPERATION
				if req.Git, err = f.gitOperation(args[1:]); err != nil {
					return err
				}
			case f.build:
				req.Type = berthv1.TaskType_TASK_TYPE_DOCKER_BUILD
				req.DockerBuild = &berthv1.DockerBuild{ContextDir: f.contextDir, Dockerfile: f.file, Tag: f.tag}
			default:
				req.Type = berthv1.TaskType_TASK_TYPE_CLAUDE_CHAT
				req.Prompt = f.claude
			}
			c, id, err := a.workspaceArg(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			req.WorkspaceId = id
			return a.startTask(cmd, c, req, f.follow)
		},
	}
	cmd.Flags().StringVar(&f.claude, "claude", "", "run the claude agent with this prompt")
	cmd.Flags().StringVar(&f.git, "git", "", "run a git operation: clone, fetch, pull, checkout, status, diff, log, commit or init")
	cmd.Flags().BoolVar(&f.build, "build", false, "build a container image from the workspace")
	cmd.Flags().StringVar(&f.contextDir, "context", "", "--build: context directory inside the workspace")
	cmd.Flags().StringVar(&f.file, "dockerfile", "", "--build: Dockerfile inside the context")
	cmd.Flags().StringVar(&f.tag, "tag", "", "--build: image tag")
	cmd.Flags().StringVar(&f.ref, "ref", "", "--git: branch, tag or commit")
	cmd.Flags().StringVar(&f.url, "url", "", "--git clone: repository URL")
	cmd.Flags().StringVarP(&f.message, "message", "m", "", "--git commit: commit message")
	_ = cmd.RegisterFlagCompletionFunc("git", cobra.FixedCompletions([]string{"clone", "fetch", "pull", "checkout", "status", "diff", "log", "commit", "init"}, cobra.ShellCompDirectiveNoFileComp)) // only fails for an unknown flag
	a.addCommonTaskFlags(cmd, &f)
	return cmd
}

// startTask creates the task and follows it when asked (or by default on
// a terminal); otherwise it prints the new task.
func (a *app) startTask(cmd *cobra.Command, c *clients, req *berthv1.CreateTaskRequest, follow bool) error {
	res, err := c.task.CreateTask(cmd.Context(), req)
	if err != nil {
		return err
	}
	if !cmd.Flags().Changed("follow") {
		follow = isTerminal(a.io.Out)
	}
	if !follow {
		return a.print(res, func() *table { return a.tasksTable([]*berthv1.Task{res.GetTask()}) })
	}
	fmt.Fprintf(a.io.Err, "Task %s queued.\n", res.GetTask().GetId())
	return a.followTask(cmd.Context(), c, res.GetTask().GetId(), 1)
}

func (a *app) taskContinueCmd() *cobra.Command {
	var f taskFlags
	cmd := &cobra.Command{
		Use:     "continue TASK PROMPT",
		Short:   "Continue a finished claude task's session with a new prompt",
		Example: `  berth task continue <task id> "Now add tests" --follow`,
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := f.config()
			if err != nil {
				return err
			}
			prio, err := f.priorityValue()
			if err != nil {
				return err
			}
			c, err := a.connect(true)
			if err != nil {
				return err
			}
			prev, err := c.task.GetTask(cmd.Context(), &berthv1.GetTaskRequest{Id: args[0]})
			if err != nil {
				return err
			}
			return a.startTask(cmd, c, &berthv1.CreateTaskRequest{
				WorkspaceId: prev.GetTask().GetWorkspaceId(), Type: berthv1.TaskType_TASK_TYPE_CLAUDE_CHAT,
				Prompt: args[1], Config: cfg, Priority: prio, ContinueTaskId: args[0],
			}, f.follow)
		},
	}
	a.addCommonTaskFlags(cmd, &f)
	return cmd
}

func (a *app) tasksTable(tasks []*berthv1.Task) *table {
	t := &table{header: []string{"ID", "TYPE", "STATUS", "PROGRESS", "CREATED", "WHAT"}}
	now := a.now()
	for _, k := range tasks {
		what := k.GetPrompt()
		switch k.GetType() {
		case berthv1.TaskType_TASK_TYPE_GIT_OPERATION:
			what = strings.TrimSpace("git " + enumName(k.GetGit().GetOperation().String(), "GIT_OPERATION_TYPE_") + " " + k.GetGit().GetRef() + " " + strings.Join(k.GetGit().GetPaths(), " "))
		case berthv1.TaskType_TASK_TYPE_DOCKER_BUILD:
			what = strings.TrimSpace("build " + k.GetDockerBuild().GetContextDir() + " " + k.GetDockerBuild().GetTag())
		}
		progress := "-"
		if p := k.GetProgress(); p != nil && (p.GetPercentage() > 0 || p.GetTotal() > 0) {
			progress = strconv.Itoa(int(p.GetPercentage())) + "%"
		}
		t.add(k.GetId(), enumName(k.GetType().String(), "TASK_TYPE_"), enumName(k.GetStatus().String(), "TASK_STATUS_"), progress, ago(k.GetCreatedAt(), now), what)
	}
	return t
}

func (a *app) taskListCmd() *cobra.Command {
	var workspace, status, typ string
	var page, pageSize int32
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List tasks, newest first",
		Example: `  berth task list --workspace demo --status running`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req := &berthv1.ListTasksRequest{Page: page, PageSize: pageSize}
			if status != "" {
				v, ok := berthv1.TaskStatus_value["TASK_STATUS_"+strings.ToUpper(strings.ReplaceAll(status, "-", "_"))]
				if !ok || v == 0 {
					return usageError{fmt.Errorf("--status %q: want queued, running, succeeded, failed, cancelled or timed_out", status)}
				}
				req.Status = berthv1.TaskStatus(v)
			}
			if typ != "" {
				v, ok := berthv1.TaskType_value["TASK_TYPE_"+strings.ToUpper(strings.ReplaceAll(typ, "-", "_"))]
				if !ok || v == 0 {
					return usageError{fmt.Errorf("--type %q: want claude_chat, git_operation or docker_build", typ)}
				}
				req.Type = berthv1.TaskType(v)
			}
			c, err := a.connect(true)
			if err != nil {
				return err
			}
			if workspace != "" {
				if req.WorkspaceId, err = resolveWorkspace(cmd.Context(), c, workspace); err != nil {
					return err
				}
			}
			res, err := c.task.ListTasks(cmd.Context(), req)
			if err != nil {
				return err
			}
			return a.print(res, func() *table { return a.tasksTable(res.GetTasks()) })
		},
	}
	cmd.Flags().StringVar(&workspace, "workspace", "", "only this workspace's tasks (name or id)")
	cmd.Flags().StringVar(&status, "status", "", "queued, running, succeeded, failed, cancelled or timed_out")
	cmd.Flags().StringVar(&typ, "type", "", "claude_chat, git_operation or docker_build")
	cmd.Flags().Int32Var(&page, "page", 0, "page number, from 1")
	cmd.Flags().Int32Var(&pageSize, "page-size", 0, "tasks per page, at most 100")
	return cmd
}

func (a *app) taskGetCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "get TASK",
		Short:   "Show one task",
		Example: `  berth task get <task id> -o json | jq .task.result`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.connect(true)
			if err != nil {
				return err
			}
			res, err := c.task.GetTask(cmd.Context(), &berthv1.GetTaskRequest{Id: args[0]})
			if err != nil {
				return err
			}
			return a.print(res, func() *table {
				k := res.GetTask()
				t := &table{header: []string{"FIELD", "VALUE"}}
				t.add("id", k.GetId())
				t.add("workspace", k.GetWorkspaceId())
				t.add("type", enumName(k.GetType().String(), "TASK_TYPE_"))
				t.add("status", enumName(k.GetStatus().String(), "TASK_STATUS_"))
				if k.GetPrompt() != "" {
					t.add("prompt", k.GetPrompt())
				}
				t.add("created", ago(k.GetCreatedAt(), a.now()))
				if k.GetResult().GetSummary() != "" {
					t.add("result", k.GetResult().GetSummary())
				}
				if cost, ok := k.GetResult().GetDetails().GetFields()["total_cost_usd"]; ok {
					t.add("cost", fmt.Sprintf("$%.4f", cost.GetNumberValue()))
				}
				if e := k.GetError(); e != nil {
					t.add("error", e.GetCode()+": "+e.GetMessage())
				}
				return t
			})
		},
	}
}

func (a *app) taskLogsCmd() *cobra.Command {
	var follow bool
	var since int64
	cmd := &cobra.Command{
		Use:   "logs TASK",
		Short: "Print a task's log, or follow it live",
		Long: `Print a task's stored log. --since N starts after line N. With --follow the
log is streamed until the task ends, resuming by itself after a dropped
connection or a server restart with no line lost or repeated, and berth
exits with the task's outcome (see berth task run --help for the codes).
-o json prints the GetTaskLogs response (one document) or, with --follow,
one JSON object per stream event.`,
		Example: `  berth task logs <task id>
  berth task logs --follow --since 120 <task id>`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if since < 0 {
				return usageError{fmt.Errorf("--since %d: want a line number, 0 or more", since)}
			}
			c, err := a.connect(true)
			if err != nil {
				return err
			}
			if follow {
				return a.followTask(cmd.Context(), c, args[0], since+1)
			}
			return a.printLogs(cmd.Context(), c, args[0], since)
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "stream the log until the task ends")
	cmd.Flags().Int64Var(&since, "since", 0, "start after this line number (seq)")
	return cmd
}

// printLogs pages through the stored log after seq since.
func (a *app) printLogs(ctx context.Context, c *clients, taskID string, since int64) error {
	all := &berthv1.GetTaskLogsResponse{}
	after := since
	r := &renderer{w: a.io.Out, terminal: isTerminal(a.io.Out), now: a.now}
	for {
		res, err := c.task.GetTaskLogs(ctx, &berthv1.GetTaskLogsRequest{TaskId: taskID, AfterSeq: after, Limit: 1000})
		if err != nil {
			return err
		}
		if a.output == formatTable {
			for _, e := range res.GetEntries() {
				r.line(e)
			}
		} else {
			all.Entries = append(all.Entries, res.GetEntries()...)
		}
		all.NextAfterSeq = res.GetNextAfterSeq()
		if !res.GetHasMore() || res.GetNextAfterSeq() <= after {
			break
		}
		after = res.GetNextAfterSeq()
	}
	if a.output == formatTable {
		return nil
	}
	return a.print(all, nil)
}

func (a *app) taskCancelCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "cancel TASK",
		Short:   "Cancel a queued or running task",
		Example: `  berth task cancel <task id>`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.connect(true)
			if err != nil {
				return err
			}
			res, err := c.task.CancelTask(cmd.Context(), &berthv1.CancelTaskRequest{Id: args[0]})
			if err != nil {
				return err
			}
			return a.print(res, func() *table { return a.tasksTable([]*berthv1.Task{res.GetTask()}) })
		},
	}
}
