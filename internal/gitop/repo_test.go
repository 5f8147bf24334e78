package gitop_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berthhq/berth/internal/gitop"
)

// gitEnv keeps the tests hermetic: no user or system configuration, a
// fixed identity (berth's executor sets one the same way).
func gitEnv() []string {
	return append(gitop.Env(),
		"PATH="+os.Getenv("PATH"), "HOME=/nonexistent",
		"GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_AUTHOR_NAME=berth", "GIT_AUTHOR_EMAIL=berth@example.com",
		"GIT_COMMITTER_NAME=berth", "GIT_COMMITTER_EMAIL=berth@example.com",
	)
}

// run executes argv (never through a shell) in dir and returns stdout.
func run(t *testing.T, dir string, argv []string) string {
	t.Helper()
	out, err := try(dir, argv)
	if err != nil {
		t.Fatalf("%q in %s: %v\n%s", argv, dir, err, out)
	}
	return out
}

func try(dir string, argv []string) (string, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = gitEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String() + stderr.String(), err
	}
	return stdout.String(), nil
}

func mustArgv(t *testing.T, op gitop.Op) []string {
	t.Helper()
	argv, err := gitop.Argv(op, gitop.AllowFileURLs())
	if err != nil {
		t.Fatalf("Argv(%+v): %v", op, err)
	}
	return argv
}

func head(t *testing.T, dir string) string {
	t.Helper()
	return strings.TrimSpace(run(t, dir, gitop.HeadArgv()))
}

func write(t *testing.T, name, content string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func needGit(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatal("git is not installed (Debian: git, installed by .ci/run)")
	}
}

// newOrigin makes a repository with one commit on main.
func newOrigin(t *testing.T) string {
	t.Helper()
	origin := t.TempDir()
	run(t, origin, []string{"git", "init", "-q", "-b", "main"})
	write(t, filepath.Join(origin, "a.txt"), "one\n")
	run(t, origin, []string{"git", "add", "a.txt"})
	run(t, origin, []string{"git", "commit", "-q", "-m", "first"})
	return origin
}

func TestRealRepository(t *testing.T) {
	t.Parallel()
	needGit(t)
	origin := newOrigin(t)
	url := "file://" + origin

	// clone into "." — the workspace directory.
	work := t.TempDir()
	run(t, work, mustArgv(t, gitop.Op{Operation: "clone", URL: url}))
	if b, err := os.ReadFile(filepath.Join(work, "a.txt")); err != nil || string(b) != "one\n" {
		t.Fatalf("clone: a.txt = %q, %v", b, err)
	}
	if head(t, work) != head(t, origin) {
		t.Fatal("clone: HEAD differs from origin")
	}

	// clone of a branch into a subdirectory
	run(t, origin, []string{"git", "branch", "feature/x"})
	sub := t.TempDir()
	run(t, sub, mustArgv(t, gitop.Op{Operation: "clone", URL: url, Ref: "feature/x", Paths: []string{"dir"}}))
	if got := strings.TrimSpace(run(t, filepath.Join(sub, "dir"), []string{"git", "branch", "--show-current"})); got != "feature/x" {
		t.Errorf("clone --branch: on %q", got)
	}

	// pull: a new commit on origin arrives, fast-forward.
	write(t, filepath.Join(origin, "b.txt"), "two\n")
	run(t, origin, []string{"git", "add", "b.txt"})
	run(t, origin, []string{"git", "commit", "-q", "-m", "second"})
	run(t, work, mustArgv(t, gitop.Op{Operation: "pull"}))
	if head(t, work) != head(t, origin) {
		t.Fatal("pull: HEAD is not origin's")
	}

	// status and diff of a modified file
	write(t, filepath.Join(work, "a.txt"), "one\nnew line\n")
	status := run(t, work, mustArgv(t, gitop.Op{Operation: "status"}))
	if !strings.Contains(status, "## main...origin/main") || !strings.Contains(status, " M a.txt") {
		t.Errorf("status:\n%s", status)
	}
	diff := run(t, work, mustArgv(t, gitop.Op{Operation: "diff", Paths: []string{"a.txt"}}))
	if !strings.Contains(diff, "+new line") {
		t.Errorf("diff:\n%s", diff)
	}
	if d := run(t, work, mustArgv(t, gitop.Op{Operation: "diff", Paths: []string{"b.txt"}})); d != "" {
		t.Errorf("diff of an unchanged path: %q", d)
	}

	// commit (with a new, untracked file) moves HEAD and leaves a clean tree.
	write(t, filepath.Join(work, "new.txt"), "fresh\n")
	before := head(t, work)
	steps, err := gitop.Steps(gitop.Op{Operation: "commit", Message: "-m looks like an option\n\nbody"}, gitop.AllowFileURLs())
	if err != nil {
		t.Fatal(err)
	}
	for _, argv := range steps {
		run(t, work, argv)
	}
	after := head(t, work)
	if after == before {
		t.Fatal("commit: HEAD did not move")
	}
	if s := run(t, work, mustArgv(t, gitop.Op{Operation: "status"})); strings.Count(s, "\n") != 1 {
		t.Errorf("status after commit:\n%s", s)
	}
	files := run(t, work, []string{"git", "show", "--name-only", "--format=", "HEAD"})
	if !strings.Contains(files, "a.txt") || !strings.Contains(files, "new.txt") {
		t.Errorf("commit holds %q", files)
	}

	// commit of one path only
	write(t, filepath.Join(work, "a.txt"), "changed again\n")
	write(t, filepath.Join(work, "b.txt"), "changed too\n")
	run(t, work, mustArgv(t, gitop.Op{Operation: "commit", Message: "only a", Paths: []string{"a.txt"}}))
	if s := run(t, work, mustArgv(t, gitop.Op{Operation: "status"})); !strings.Contains(s, " M b.txt") || strings.Contains(s, "a.txt") {
		t.Errorf("status after a path commit:\n%s", s)
	}
	run(t, work, mustArgv(t, gitop.Op{Operation: "checkout", Paths: []string{"b.txt"}})) // discard
	if b, _ := os.ReadFile(filepath.Join(work, "b.txt")); string(b) != "two\n" {
		t.Errorf("checkout of a path: b.txt = %q", b)
	}

	// log: newest first, fixed format, bounded
	log := run(t, work, mustArgv(t, gitop.Op{Operation: "log"}))
	lines := strings.Split(strings.TrimSpace(log), "\n")
	if len(lines) != 4 {
		t.Fatalf("log has %d lines:\n%s", len(lines), log)
	}
	fields := strings.Split(lines[0], "\t")
	if len(fields) != 4 || fields[0] != head(t, work) || fields[1] != "berth" || fields[3] != "only a" {
		t.Errorf("log line %q", lines[0])
	}
	if fields := strings.Split(lines[1], "\t"); fields[0] != after || fields[3] != "-m looks like an option" {
		t.Errorf("log line %q", lines[1])
	}

	// fetch a new branch from origin, then check it out (git creates the
	// local branch tracking origin's).
	run(t, origin, []string{"git", "checkout", "-q", "-b", "topic"})
	write(t, filepath.Join(origin, "topic.txt"), "topic\n")
	run(t, origin, []string{"git", "add", "topic.txt"})
	run(t, origin, []string{"git", "commit", "-q", "-m", "topic"})
	run(t, work, mustArgv(t, gitop.Op{Operation: "fetch"}))
	run(t, work, mustArgv(t, gitop.Op{Operation: "checkout", Ref: "topic"}))
	if head(t, work) != head(t, origin) {
		t.Error("checkout topic: HEAD is not origin's topic")
	}
	if got := strings.TrimSpace(run(t, work, []string{"git", "branch", "--show-current"})); got != "topic" {
		t.Errorf("on branch %q", got)
	}
	// fetch with a ref names it in FETCH_HEAD.
	run(t, work, mustArgv(t, gitop.Op{Operation: "fetch", URL: url, Ref: "main"}))
	if fh, _ := os.ReadFile(filepath.Join(work, ".git", "FETCH_HEAD")); !strings.Contains(string(fh), "branch 'main'") {
		t.Errorf("FETCH_HEAD = %q", fh)
	}
}

// TestHooksDoNotRun shows that hooks in the repository — a cloned one's or
// an agent's — do not run on berth's operations.
func TestHooksDoNotRun(t *testing.T) {
	t.Parallel()
	needGit(t)
	work := t.TempDir()
	run(t, work, mustArgv(t, gitop.Op{Operation: "clone", URL: "file://" + newOrigin(t)}))
	marker := filepath.Join(t.TempDir(), "hook-ran")
	hook := "#!/bin/sh\ntouch " + marker + "\n"
	for _, name := range []string{"pre-commit", "commit-msg", "post-commit", "post-checkout", "post-merge"} {
		if err := os.WriteFile(filepath.Join(work, ".git", "hooks", name), []byte(hook), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// Sanity: a plain git commit does run them. A hook just written may be
	// "busy" for a moment: a process forked meanwhile by a parallel test
	// can hold its write descriptor until it execs (golang/go#22315).
	write(t, filepath.Join(work, "a.txt"), "x\n")
	for attempt := 0; ; attempt++ {
		out, err := try(work, []string{"git", "commit", "-q", "-a", "-m", "plain"})
		if err == nil {
			break
		}
		if !strings.Contains(out, "Text file busy") || attempt == 50 {
			t.Fatalf("plain git commit: %v\n%s", err, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("the hook did not run for plain git, so this test proves nothing: %v", err)
	}
	if err := os.Remove(marker); err != nil {
		t.Fatal(err)
	}

	write(t, filepath.Join(work, "a.txt"), "y\n")
	run(t, work, mustArgv(t, gitop.Op{Operation: "commit", Message: "berth"}))
	run(t, work, []string{"git", "branch", "other"})
	run(t, work, mustArgv(t, gitop.Op{Operation: "checkout", Ref: "other"}))
	run(t, work, mustArgv(t, gitop.Op{Operation: "pull", Ref: "main"}))
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Errorf("a hook ran on berth's operations (stat: %v)", err)
	}
}

// TestUploadPackInjection shows with the real git that an --upload-pack
// value would run a command, and that berth never lets it: Argv refuses
// it, and even without the check a value after "--" is not an option.
func TestUploadPackInjection(t *testing.T) {
	t.Parallel()
	needGit(t)
	origin := newOrigin(t)
	work := t.TempDir()
	run(t, work, mustArgv(t, gitop.Op{Operation: "clone", URL: "file://" + origin}))
	marker := filepath.Join(t.TempDir(), "pwned")
	evil := "--upload-pack=touch " + marker + ";"

	// Sanity: as an option, git really runs it.
	_, _ = try(work, []string{"git", "fetch", evil, "file://" + origin})
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("git did not run --upload-pack, so this test proves nothing: %v", err)
	}
	if err := os.Remove(marker); err != nil {
		t.Fatal(err)
	}

	for _, op := range []gitop.Op{
		{Operation: "fetch", Ref: evil},
		{Operation: "pull", Ref: evil},
		{Operation: "checkout", Ref: evil},
		{Operation: "clone", URL: evil},
		{Operation: "fetch", URL: evil},
		{Operation: "clone", URL: "file://" + origin, Ref: evil},
		{Operation: "diff", Paths: []string{evil}},
	} {
		if argv, err := gitop.Argv(op, gitop.AllowFileURLs()); err == nil {
			t.Errorf("Argv(%+v) = %q, want refused", op, argv)
		}
	}

	// Defence in depth: put the value where a ref goes in a valid argv,
	// bypassing the check; after "--" git takes it as a refspec, not an
	// option, fails, and runs nothing.
	argv := mustArgv(t, gitop.Op{Operation: "fetch", Ref: "main"})
	argv[len(argv)-1] = evil
	if out, err := try(work, argv); err == nil {
		t.Errorf("git fetch accepted %q: %s", evil, out)
	}
	argv = mustArgv(t, gitop.Op{Operation: "fetch", URL: "file://" + origin})
	argv[len(argv)-1] = evil
	_, _ = try(work, argv)
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Errorf("the injected command ran (stat: %v)", err)
	}
}

// TestCheckRefMatchesGit compares CheckRef with git check-ref-format
// --allow-onelevel; berth is stricter only on a leading '-' or '+'.
func TestCheckRefMatchesGit(t *testing.T) {
	t.Parallel()
	needGit(t)
	for _, ref := range []string{
		"main", "feature/x", "a..b", "a/.b", ".a", "a.lock", "a/b.lock/c", "a b", "a~b", "a^b", "a:b", "a?b",
		"a*b", "a[b", `a\b`, "/a", "a/", "a//b", "a.", "@", "a@{b", "a@b", "ünï", "+a", "a+", "HEAD", "x\x7f",
	} {
		ours := gitop.CheckRef(ref) == nil
		_, err := try(t.TempDir(), []string{"git", "check-ref-format", "--allow-onelevel", ref})
		theirs := err == nil
		if ref == "+a" {
			theirs = false // berth refuses a forced refspec
		}
		if ours != theirs {
			t.Errorf("%q: CheckRef ok=%v, git ok=%v", ref, ours, theirs)
		}
	}
}
