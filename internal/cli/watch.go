package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/spf13/cobra"

	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
)

func (a *app) workspaceWatchCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "watch WORKSPACE",
		Short: "Print a workspace's events live: its status, its tasks' creation, status and progress",
		Long: `Print a workspace's events as they happen, one line each (-o json: one JSON
object per event), until Ctrl-C (exit 130). A dropped connection is
reopened by itself; events while it was down are not replayed (berth task
list shows where things stand).`,
		Example:           `  berth ws watch demo -o json | jq -r 'select(.event.kind=="task.status") | .event.task_status'`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.workspaceCompletion,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, id, err := a.workspaceArg(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- a.watch(ctx, c, id) }()
			sig, stop := a.signals()
			defer stop()
			select {
			case err := <-done:
				return err
			case <-sig:
				cancel()
				<-done
				return exitError{code: ExitInterrupted}
			}
		},
	}
}

// watch prints the workspace's events until ctx ends, reconnecting with
// backoff when the stream drops.
func (a *app) watch(ctx context.Context, c *clients, id string) error {
	backoff := minBackoff
	refreshed := false
	for {
		progressed, err := a.watchOnce(ctx, c, id)
		if ctx.Err() != nil {
			return nil
		}
		switch connect.CodeOf(err) {
		case connect.CodeNotFound, connect.CodePermissionDenied, connect.CodeInvalidArgument, connect.CodeResourceExhausted:
			return err
		case connect.CodeUnauthenticated:
			if refreshed || !c.tokens.canRefresh() {
				return err
			}
			refreshed = true
			if _, rerr := c.tokens.token(ctx, true, ""); rerr != nil {
				return rerr
			}
			continue
		}
		if progressed {
			backoff, refreshed = minBackoff, false
		}
		why := "stream ended"
		if err != nil {
			why = describe(err)
		}
		fmt.Fprintf(a.io.Err, "berth: watch interrupted (%s); reconnecting in %s\n", why, backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, maxBackoff)
	}
}

func (a *app) watchOnce(ctx context.Context, c *clients, id string) (progressed bool, err error) {
	stream, err := c.workspace.WatchWorkspace(ctx, &berthv1.WatchWorkspaceRequest{WorkspaceId: id})
	if err != nil {
		return false, err
	}
	defer stream.Close() // #nosec G104 -- closing a finished or abandoned stream reports nothing useful
	for {
		msg, err := stream.Receive()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return progressed, nil
			}
			return progressed, err
		}
		progressed = true
		if a.output != formatTable {
			if err := writeJSON(a.io.Out, msg, false); err != nil {
				return progressed, err
			}
			continue
		}
		fmt.Fprintln(a.io.Out, eventLine(msg.GetEvent()))
	}
}

// eventLine words one workspace event for people.
func eventLine(ev *berthv1.WorkspaceEvent) string {
	parts := []string{ev.GetTime().AsTime().Local().Format("15:04:05"), ev.GetKind()}
	switch {
	case ev.GetWorkspace() != nil:
		parts = append(parts, enumName(ev.GetWorkspace().GetStatus().String(), "WORKSPACE_STATUS_"), ev.GetWorkspace().GetStatusReason())
	case ev.GetTask() != nil:
		parts = append(parts, ev.GetTask().GetId(), enumName(ev.GetTask().GetType().String(), "TASK_TYPE_"), enumName(ev.GetTask().GetStatus().String(), "TASK_STATUS_"))
	case ev.GetTaskProgress() != nil:
		p := ev.GetTaskProgress()
		parts = append(parts, ev.GetTaskId(), fmt.Sprintf("%d%%", p.GetPercentage()), p.GetMessage())
	default:
		parts = append(parts, ev.GetTaskId(), enumName(ev.GetTaskStatus().String(), "TASK_STATUS_"))
	}
	return strings.TrimSpace(strings.Join(parts, "  "))
}
