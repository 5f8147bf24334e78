package cli

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/timestamppb"

	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with testdata/name, or rewrites it under -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs:\n--- got\n%s--- want\n%s", name, got, want)
	}
}

// TestWorkspacesTable renders a fixed list as a pipe sees it (full width)
// and as 60- and 40-column terminals see it: cells are cut with "…" down to
// their floors (a 40-column terminal is below them and overflows), never
// wrapped, and the id column is cut last.
func TestWorkspacesTable(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	a := &app{now: func() time.Time { return now }}
	tbl := a.workspacesTable([]*berthv1.Workspace{
		{Id: "0b6c2a4e-7a51-4f57-9a3e-2d5f1c0e9b11", Name: "demo", Status: berthv1.WorkspaceStatus_WORKSPACE_STATUS_RUNNING,
			Stats: &berthv1.WorkspaceStats{TotalTasks: 12, RunningTasks: 1}, CreatedAt: timestamppb.New(now.Add(-3 * time.Minute)),
			Path: "/srv/berth/workspaces/7f1e/0b6c2a4e-7a51-4f57-9a3e-2d5f1c0e9b11"},
		{Id: "5d0e8f7a-1b2c-4d3e-8f9a-0b1c2d3e4f5a", Name: "a workspace with a long name", Status: berthv1.WorkspaceStatus_WORKSPACE_STATUS_STOPPED,
			Stats: &berthv1.WorkspaceStats{}, CreatedAt: timestamppb.New(now.Add(-50 * time.Hour)), Path: "/srv/x"},
	})
	for _, cols := range []int{0, 60, 40} {
		var b bytes.Buffer
		if err := writeTable(&b, tbl, cols); err != nil {
			t.Fatal(err)
		}
		if cols > 0 {
			for _, line := range strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n") {
				if n := len([]rune(line)); n > cols && cols >= 60 {
					t.Errorf("%d runes in a %d-column terminal: %q", n, cols, line)
				}
			}
		}
		golden(t, "workspaces_"+map[int]string{0: "pipe", 60: "60", 40: "40"}[cols]+".golden", b.String())
	}
}

// TestEveryCommandHasHelp walks the command tree: every command has a
// short description and an example, as its --help promises.
func TestEveryCommandHasHelp(t *testing.T) {
	t.Parallel()
	a := &app{}
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Short == "" || c.Example == "" && c.Name() != "help" && c.Parent() != nil && c.Parent().Name() != "completion" {
			t.Errorf("%q lacks a short description or an example", c.CommandPath())
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(a.root([]ServerCommand{{Name: "serve", Short: "Run the server"}}))
}

// TestExitStatus pins the documented exit statuses of a followed task.
func TestExitStatus(t *testing.T) {
	t.Parallel()
	for s, want := range map[berthv1.TaskStatus]int{
		berthv1.TaskStatus_TASK_STATUS_SUCCEEDED: 0, berthv1.TaskStatus_TASK_STATUS_FAILED: 3,
		berthv1.TaskStatus_TASK_STATUS_CANCELLED: 4, berthv1.TaskStatus_TASK_STATUS_TIMED_OUT: 5,
	} {
		if got := exitStatus(s); got != want {
			t.Errorf("%v: exit %d, want %d", s, got, want)
		}
	}
}

// TestNormalizeServer keeps one key per server and refuses what is not a
// plain http(s) base URL.
func TestNormalizeServer(t *testing.T) {
	t.Parallel()
	if got, err := normalizeServer("http://127.0.0.1:8080/"); err != nil || got != "http://127.0.0.1:8080" {
		t.Errorf("trailing slash: %q %v", got, err)
	}
	for _, bad := range []string{"127.0.0.1:8080", "ftp://x", "http://", "http://u:p@host", "http://host/?q=1"} {
		if _, err := normalizeServer(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestExitCode: cobra's own complaints and usageError exit 2, whatever a
// server says exits 1, even in words cobra uses.
func TestExitCode(t *testing.T) {
	t.Parallel()
	var stderr bytes.Buffer
	a := &app{io: IO{Err: &stderr}}
	for err, want := range map[error]int{
		usageError{errors.New("-o xml")}:                                                      2,
		errors.New(`unknown command "frobnicate" for "berth"`):                                2,
		connect.NewError(connect.CodeFailedPrecondition, "this requires a running workspace"): 1,
		connect.NewError(connect.CodeInvalidArgument, "invalid argument: name"):               1,
		exitError{code: 4}: 4,
	} {
		if got := a.exitCode(err); got != want {
			t.Errorf("%v: exit %d, want %d", err, got, want)
		}
	}
}
