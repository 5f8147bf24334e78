package cli_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"

	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
)

// TestFollowResumesAfterRestart follows a running task's log while the
// server is stopped and started again on the same data directory and
// address: the CLI reconnects by itself and prints every stored line
// exactly once, in order.
func TestFollowResumesAfterRestart(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	srv.register(t, "grace@example.com")
	u := newUser(t)
	u.login(srv, "grace@example.com")
	u.ok("ws", "create", "restart")
	var created berthv1.CreateTaskResponse
	parse(t, u.ok("task", "run", "restart", "--claude", "[slow] [lines:30] keep talking", "--follow=false", "-o", "json").stdout, &created)
	id := created.GetTask().GetId()

	berth, _ := binaries(t)
	ctx, cancel := context.WithTimeout(t.Context(), within(t))
	defer cancel()
	cmd := exec.CommandContext(ctx, berth, "task", "logs", "--follow", id, "-o", "json")
	cmd.Env = u.env
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var seqs []int64
	var end *berthv1.TaskEnd
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	restarted := false
	for sc.Scan() {
		var ev berthv1.StreamTaskLogsResponse
		if err := protojson.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("event %q: %v", sc.Text(), err)
		}
		if l := ev.GetLog(); l != nil {
			seqs = append(seqs, l.GetSeq())
		}
		if ev.GetEnd() != nil {
			end = ev.GetEnd()
		}
		if len(seqs) == 5 && !restarted { // mid-task: restart the server under the CLI
			restarted = true
			srv.stop()
			srv.start()
		}
	}
	err = cmd.Wait()
	if !restarted || end == nil {
		t.Fatalf("restarted %v, end %v; stderr:\n%s", restarted, end, stderr.String())
	}
	if len(seqs) <= 5 {
		t.Errorf("no line arrived after the restart: %v", seqs)
	}
	if !strings.Contains(stderr.String(), "reconnecting from line") {
		t.Errorf("the CLI never lost its stream:\n%s", stderr.String())
	}
	t.Logf("the task ended %v after %d lines; the CLI said:\n%s", end.GetStatus(), len(seqs), stderr.String())
	for i, s := range seqs {
		if s != int64(i+1) {
			t.Fatalf("seqs are not 1..n without gap or duplicate: %v", seqs)
		}
	}
	var logs berthv1.GetTaskLogsResponse
	parse(t, u.ok("task", "logs", id, "-o", "json").stdout, &logs)
	if n := len(logs.GetEntries()); n != len(seqs) || end.GetLastSeq() != int64(n) {
		t.Errorf("followed %d lines, the store has %d, the end says %d", len(seqs), n, end.GetLastSeq())
	}
	// The exit status is the task's outcome, whichever it was (it may have
	// finished during the graceful shutdown or been interrupted by it).
	want := map[berthv1.TaskStatus]int{berthv1.TaskStatus_TASK_STATUS_SUCCEEDED: 0, berthv1.TaskStatus_TASK_STATUS_FAILED: 3}[end.GetStatus()]
	var exit *exec.ExitError
	code := 0
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	if code != want {
		t.Errorf("exit %d for a %v task, want %d; stderr:\n%s", code, end.GetStatus(), want, stderr.String())
	}
}

// terminalCancel runs task run under script(1), which gives berth a real
// pseudo-terminal: with no --follow it follows, in colour, with a progress
// line; Ctrl-C (^C typed into the terminal) asks cancel-or-detach, "c"
// cancels, and berth exits 4 when the task ends CANCELLED.
func terminalCancel(t *testing.T, u *user) {
	t.Helper()
	term := startTerminal(t, u, `task run demo --claude "[hang] wait to be cancelled"`)
	term.waitFor("\x1b[2m· agent session") // the stand-in started, dimmed; it now hangs
	term.waitFor("\x1b[1m▸ running · ")    // the progress line, bold
	term.write("\x03")                     // ^C
	term.waitFor("Cancel the task [c], detach")
	term.write("c\n")
	code, seen := term.wait()
	if code != 4 || !strings.Contains(seen, "Cancelling; following to the end.") || !strings.Contains(seen, "cancelled") {
		t.Fatalf("cancel from the terminal: exit %d\n%s", code, seen)
	}
}

// terminal is berth running on a pseudo-terminal made by script(1).
type terminal struct {
	t     *testing.T
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   io.Reader
	seen  strings.Builder
}

// startTerminal runs berth with args (shell words) under script(1).
func startTerminal(t *testing.T, u *user, args string) *terminal {
	t.Helper()
	script, err := exec.LookPath("script")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("script(1) from util-linux is needed for the terminal tests")
		}
		t.Skip("script(1) from util-linux is not installed")
	}
	berth, _ := binaries(t)
	ctx, cancel := context.WithTimeout(t.Context(), within(t))
	t.Cleanup(cancel)
	// exec: berth is script's child, so its exit status is script's.
	cmd := exec.CommandContext(ctx, script, "-qfec", "exec "+berth+" "+args, "/dev/null")
	cmd.Env = append(append([]string(nil), u.env...), "TERM=xterm")
	term := &terminal{t: t, cmd: cmd}
	if term.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if term.out, err = cmd.StdoutPipe(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return term
}

// waitFor reads the terminal until it has shown want.
func (term *terminal) waitFor(want string) {
	term.t.Helper()
	buf := make([]byte, 4096)
	for !strings.Contains(term.seen.String(), want) {
		n, err := term.out.Read(buf)
		term.seen.Write(buf[:n])
		if err != nil {
			term.t.Fatalf("the terminal never showed %q (%v):\n%q", want, err, term.seen.String())
		}
	}
}

// write types s.
func (term *terminal) write(s string) {
	term.t.Helper()
	if _, err := io.WriteString(term.stdin, s); err != nil {
		term.t.Fatal(err)
	}
}

// wait reads to the end and returns berth's exit status and all it showed.
func (term *terminal) wait() (int, string) {
	term.t.Helper()
	_, _ = io.Copy(&term.seen, term.out) // to the end; Wait reports what matters
	_ = term.stdin.Close()               // a pipe script may have closed already
	err := term.cmd.Wait()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return exit.ExitCode(), term.seen.String()
	case err != nil:
		term.t.Fatal(err)
	}
	return 0, term.seen.String()
}
