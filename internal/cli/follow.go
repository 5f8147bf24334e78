package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"

	"connectrpc.com/connect/v2"

	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
)

// Reconnection after a dropped log stream: wait minBackoff, doubling to
// maxBackoff, and give up after reconnectFor without a working stream.
const (
	minBackoff   = 250 * time.Millisecond
	maxBackoff   = 5 * time.Second
	reconnectFor = 10 * time.Minute
)

// follower streams one task's log from a seq on, resuming after a dropped
// connection from the seq after the last line it printed: no gap, no
// duplicate, whatever happens to the connection or the server.
type follower struct {
	c      *clients
	taskID string
	next   int64 // the first seq not printed yet
	onLog  func(*berthv1.LogEntry)
	onMsg  func(*berthv1.StreamTaskLogsResponse) // every event, for -o json
	onUpd  func(berthv1.TaskStatus, *berthv1.TaskProgress)
	notice func(string) // reconnection messages, for stderr
}

// run follows until the task ends and returns its final status.
func (f *follower) run(ctx context.Context) (berthv1.TaskStatus, error) {
	backoff := minBackoff
	var failingSince time.Time
	refreshed := false
	for {
		end, progressed, err := f.once(ctx)
		if end != nil {
			return end.GetStatus(), nil
		}
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		switch connect.CodeOf(err) {
		case connect.CodeNotFound, connect.CodePermissionDenied, connect.CodeInvalidArgument, connect.CodeResourceExhausted:
			return 0, err
		case connect.CodeUnauthenticated:
			// A stream is not replayed by the transport: renew the token
			// once, then give up if the server still refuses it.
			if refreshed || !f.c.tokens.canRefresh() {
				return 0, err
			}
			refreshed = true
			if _, rerr := f.c.tokens.token(ctx, true, ""); rerr != nil {
				return 0, rerr
			}
			continue
		}
		if progressed {
			backoff, failingSince, refreshed = minBackoff, time.Time{}, false
		}
		if failingSince.IsZero() {
			failingSince = time.Now()
		} else if time.Since(failingSince) > reconnectFor {
			return 0, fmt.Errorf("log stream lost for %s, giving up: %w", reconnectFor, err)
		}
		why := "stream ended"
		if err != nil {
			why = describe(err)
		}
		f.notice(fmt.Sprintf("log stream interrupted (%s); reconnecting from line %d in %s", why, f.next, backoff))
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, maxBackoff)
	}
}

// once opens the stream from f.next and reads it until it ends. progressed
// says whether anything arrived, which resets the backoff.
func (f *follower) once(ctx context.Context) (end *berthv1.TaskEnd, progressed bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := f.c.task.StreamTaskLogs(ctx, &berthv1.StreamTaskLogsRequest{TaskId: f.taskID, FromSeq: f.next})
	if err != nil {
		return nil, false, err
	}
	defer stream.Close() // #nosec G104 -- closing a finished or abandoned stream reports nothing useful
	for {
		msg, err := stream.Receive()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil, progressed, nil // ended without TaskEnd: the server went away
			}
			return nil, progressed, err
		}
		progressed = true
		switch ev := msg.GetEvent().(type) {
		case *berthv1.StreamTaskLogsResponse_Log:
			seq := ev.Log.GetSeq()
			if seq < f.next {
				continue // already printed before a reconnect
			}
			f.next = seq + 1
			if f.onMsg != nil {
				f.onMsg(msg)
			} else {
				f.onLog(ev.Log)
			}
		case *berthv1.StreamTaskLogsResponse_Status:
			f.emit(msg, ev.Status, nil)
		case *berthv1.StreamTaskLogsResponse_Progress:
			f.emit(msg, 0, ev.Progress)
		case *berthv1.StreamTaskLogsResponse_End:
			if f.onMsg != nil {
				f.onMsg(msg)
			}
			return ev.End, true, nil
		}
	}
}

func (f *follower) emit(msg *berthv1.StreamTaskLogsResponse, s berthv1.TaskStatus, p *berthv1.TaskProgress) {
	if f.onMsg != nil {
		f.onMsg(msg)
		return
	}
	f.onUpd(s, p)
}

// notifyInterrupt delivers Ctrl-C (SIGINT) on a channel until stop is called.
func notifyInterrupt() (<-chan os.Signal, func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt)
	return ch, func() { signal.Stop(ch) }
}

// followTask follows a task's log from seq from, printed for people (or as
// JSON lines with -o json/yaml), then prints the summary and returns the
// exit status. Ctrl-C on a terminal asks whether to cancel the task or
// detach; elsewhere it detaches at once with status 130.
func (a *app) followTask(ctx context.Context, c *clients, taskID string, from int64) error {
	terminal := isTerminal(a.io.Out)
	r := &renderer{w: a.io.Out, terminal: terminal && a.output == formatTable, now: a.now}
	f := &follower{
		c: c, taskID: taskID, next: max(from, 1),
		onLog:  r.line,
		onUpd:  r.update,
		notice: func(s string) { r.clear(); fmt.Fprintln(a.io.Err, "berth:", s); r.draw() },
	}
	if a.output != formatTable {
		f.onMsg = func(m *berthv1.StreamTaskLogsResponse) {
			if err := writeJSON(a.io.Out, m, false); err != nil {
				fmt.Fprintln(a.io.Err, "berth:", err)
			}
		}
	}
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		status berthv1.TaskStatus
		err    error
	}
	done := make(chan result, 1)
	go func() {
		s, err := f.run(fctx)
		done <- result{s, err}
	}()
	sig, stop := a.signals()
	defer stop()
	interactive := terminal && isTerminal(a.io.In)
	var in *bufio.Reader
	for {
		select {
		case res := <-done:
			r.clear()
			if res.err != nil {
				return res.err
			}
			return a.finish(ctx, c, taskID, res.status, terminal)
		case <-sig:
			if !interactive {
				cancel()
				<-done
				r.clear()
				return exitError{code: ExitInterrupted, message: fmt.Sprintf("detached; task %s keeps running (berth task logs --follow %s)", taskID, taskID)}
			}
			if in == nil {
				in = bufio.NewReader(a.io.In)
			}
			r.clear()
			fmt.Fprint(a.io.Err, "\nCancel the task [c], detach and leave it running [d], or keep following [Enter]? ")
			answer, _ := in.ReadString('\n')
			switch strings.ToLower(strings.TrimSpace(answer)) {
			case "c", "cancel":
				if _, err := c.task.CancelTask(ctx, &berthv1.CancelTaskRequest{Id: taskID}); err != nil {
					fmt.Fprintln(a.io.Err, "berth: cancel:", describe(err))
				} else {
					fmt.Fprintln(a.io.Err, "Cancelling; following to the end.")
				}
			case "d", "detach":
				cancel()
				<-done
				return exitError{code: ExitInterrupted, message: fmt.Sprintf("detached; task %s keeps running (berth task logs --follow %s)", taskID, taskID)}
			}
			r.draw()
		}
	}
}

// finish prints the summary of a finished task and turns its status into
// the exit status.
func (a *app) finish(ctx context.Context, c *clients, taskID string, status berthv1.TaskStatus, terminal bool) error {
	res, err := c.task.GetTask(ctx, &berthv1.GetTaskRequest{Id: taskID})
	if err != nil {
		return err
	}
	task := res.GetTask()
	if task.GetStatus() == berthv1.TaskStatus_TASK_STATUS_UNSPECIFIED {
		task.Status = status
	}
	fmt.Fprintln(a.io.Err, summary(task, isTerminal(a.io.Err) && terminal))
	if code := exitStatus(task.GetStatus()); code != ExitOK {
		return exitError{code: code}
	}
	return nil
}
