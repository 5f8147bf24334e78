package gitop_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/berthhq/berth/internal/gitop"
)

// pre is the fixed start of every argv.
var pre = []string{
	"git", "--no-pager", "--literal-pathspecs",
	"-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false", "-c", "safe.directory=*",
	"-c", "protocol.allow=never", "-c", "protocol.https.allow=always", "-c", "protocol.http.allow=always",
	"-c", "protocol.ssh.allow=always", "-c", "protocol.git.allow=always",
}

func with(args ...string) []string { return append(slices.Clone(pre), args...) }

func TestArgv(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		op   gitop.Op
		want []string
	}{
		{"clone", gitop.Op{Operation: "clone", URL: "https://github.com/berthhq/berth.git"},
			with("clone", "--no-recurse-submodules", "--", "https://github.com/berthhq/berth.git", ".")},
		{"clone branch into dir", gitop.Op{Operation: "clone", URL: "git@github.com:berthhq/berth.git", Ref: "v1.2", Paths: []string{"src/./berth/"}},
			with("clone", "--no-recurse-submodules", "--branch", "v1.2", "--", "git@github.com:berthhq/berth.git", "src/berth")},
		{"fetch origin", gitop.Op{Operation: "fetch"}, with("fetch", "--no-recurse-submodules", "--", "origin")},
		{"fetch url ref", gitop.Op{Operation: "fetch", URL: "ssh://git@example.com:2222/r.git", Ref: "feature/x"},
			with("fetch", "--no-recurse-submodules", "--", "ssh://git@example.com:2222/r.git", "feature/x")},
		{"pull", gitop.Op{Operation: "pull"},
			with("pull", "--ff-only", "--no-edit", "--no-rebase", "--no-verify-signatures", "--no-recurse-submodules", "--", "origin")},
		{"pull ref", gitop.Op{Operation: "pull", Ref: "main"},
			with("pull", "--ff-only", "--no-edit", "--no-rebase", "--no-verify-signatures", "--no-recurse-submodules", "--", "origin", "main")},
		{"checkout ref", gitop.Op{Operation: "checkout", Ref: "feature/x"}, with("checkout", "--no-recurse-submodules", "feature/x", "--")},
		{"checkout paths", gitop.Op{Operation: "checkout", Paths: []string{"a.txt", "dir/b"}},
			with("checkout", "--no-recurse-submodules", "--", "a.txt", "dir/b")},
		{"checkout ref paths", gitop.Op{Operation: "checkout", Ref: "HEAD", Paths: []string{"a.txt"}},
			with("checkout", "--no-recurse-submodules", "HEAD", "--", "a.txt")},
		{"status", gitop.Op{Operation: "status"}, with("status", "--porcelain=v1", "-b", "--no-renames", "--")},
		{"status paths", gitop.Op{Operation: "status", Paths: []string{"x"}}, with("status", "--porcelain=v1", "-b", "--no-renames", "--", "x")},
		{"diff", gitop.Op{Operation: "diff"}, with("diff", "--no-color", "--no-ext-diff", "--no-textconv", "--")},
		{"diff ref paths", gitop.Op{Operation: "diff", Ref: "main", Paths: []string{":(top)x"}},
			with("diff", "--no-color", "--no-ext-diff", "--no-textconv", "main", "--", ":(top)x")},
		{"log", gitop.Op{Operation: "log"}, with("log", "-n", "50", "--no-color", "--no-show-signature", "--format="+gitop.LogFormat, "--")},
		{"log ref path", gitop.Op{Operation: "log", Ref: "0123abcd", Paths: []string{"a"}},
			with("log", "-n", "50", "--no-color", "--no-show-signature", "--format="+gitop.LogFormat, "0123abcd", "--", "a")},
		{"commit all", gitop.Op{Operation: "commit", Message: "-n is not an option here"},
			with("commit", "--no-verify", "--no-gpg-sign", "--all", "-m", "-n is not an option here")},
		{"commit paths", gitop.Op{Operation: "commit", Message: "msg\n\nbody", Paths: []string{"a", "b/c"}},
			with("commit", "--no-verify", "--no-gpg-sign", "-m", "msg\n\nbody", "--", "a", "b/c")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := gitop.Argv(tt.op)
			if err != nil {
				t.Fatalf("Argv: %v", err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Argv(%+v)\n got %q\nwant %q", tt.op, got, tt.want)
			}
		})
	}
}

func TestSteps(t *testing.T) {
	t.Parallel()
	steps, err := gitop.Steps(gitop.Op{Operation: "commit", Message: "m"})
	if err != nil {
		t.Fatal(err)
	}
	if len(steps) != 2 || !slices.Equal(steps[0], with("add", "--all", "--", ".")) ||
		!slices.Equal(steps[1], with("commit", "--no-verify", "--no-gpg-sign", "--all", "-m", "m")) {
		t.Errorf("steps %q", steps)
	}
	steps, err = gitop.Steps(gitop.Op{Operation: "commit", Message: "m", Paths: []string{"x/"}})
	if err != nil || !slices.Equal(steps[0], with("add", "--all", "--", "x")) {
		t.Errorf("steps %q, %v", steps, err)
	}
	steps, err = gitop.Steps(gitop.Op{Operation: "status"})
	if err != nil || len(steps) != 1 {
		t.Errorf("steps %q, %v", steps, err)
	}
	if _, err := gitop.Steps(gitop.Op{Operation: "commit"}); !errors.Is(err, gitop.ErrInvalid) {
		t.Errorf("commit without message: %v", err)
	}
}

func TestFileURLs(t *testing.T) {
	t.Parallel()
	op := gitop.Op{Operation: "clone", URL: "file:///srv/repo"}
	if _, err := gitop.Argv(op); !errors.Is(err, gitop.ErrInvalid) {
		t.Errorf("file URL accepted by default: %v", err)
	}
	argv, err := gitop.Argv(op, gitop.AllowFileURLs())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(argv, "protocol.file.allow=always") || argv[len(argv)-2] != "file:///srv/repo" {
		t.Errorf("argv %q", argv)
	}
	if _, err := gitop.Argv(gitop.Op{Operation: "clone", URL: "file://relative"}, gitop.AllowFileURLs()); err == nil {
		t.Error("file URL without an absolute path accepted")
	}
}

func TestRefused(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		op    gitop.Op
		field string
	}{
		{"ref upload-pack", gitop.Op{Operation: "fetch", Ref: "--upload-pack=touch /tmp/x"}, "ref"},
		{"ref dash", gitop.Op{Operation: "checkout", Ref: "-x"}, "ref"},
		{"ref plus", gitop.Op{Operation: "fetch", Ref: "+main:main"}, "ref"},
		{"ref colon", gitop.Op{Operation: "fetch", Ref: "main:refs/heads/x"}, "ref"},
		{"ref dotdot", gitop.Op{Operation: "diff", Ref: "a..b"}, "ref"},
		{"ref tilde", gitop.Op{Operation: "diff", Ref: "HEAD~1"}, "ref"},
		{"ref space", gitop.Op{Operation: "log", Ref: "a b"}, "ref"},
		{"ref lock", gitop.Op{Operation: "log", Ref: "a/b.lock"}, "ref"},
		{"ref dot component", gitop.Op{Operation: "log", Ref: "a/.b"}, "ref"},
		{"ref at", gitop.Op{Operation: "log", Ref: "@"}, "ref"},
		{"ref reflog", gitop.Op{Operation: "log", Ref: "main@{1}"}, "ref"},
		{"ref slash", gitop.Op{Operation: "log", Ref: "/main"}, "ref"},
		{"ref double slash", gitop.Op{Operation: "log", Ref: "a//b"}, "ref"},
		{"ref trailing dot", gitop.Op{Operation: "log", Ref: "main."}, "ref"},
		{"ref glob", gitop.Op{Operation: "log", Ref: "ma*n"}, "ref"},
		{"ref backslash", gitop.Op{Operation: "log", Ref: `a\b`}, "ref"},
		{"ref control", gitop.Op{Operation: "log", Ref: "a\x01"}, "ref"},
		{"url upload-pack", gitop.Op{Operation: "clone", URL: "--upload-pack=touch /tmp/x"}, "url"},
		{"url ext", gitop.Op{Operation: "clone", URL: "ext::sh -c touch% /tmp/x"}, "url"},
		{"url ext no space", gitop.Op{Operation: "fetch", URL: "ext::sh"}, "url"},
		{"url file transport", gitop.Op{Operation: "fetch", URL: "file::/etc"}, "url"},
		{"url fd transport", gitop.Op{Operation: "fetch", URL: "fd::3"}, "url"},
		{"url local path", gitop.Op{Operation: "clone", URL: "/srv/repo"}, "url"},
		{"url relative path", gitop.Op{Operation: "clone", URL: "../repo"}, "url"},
		{"url file", gitop.Op{Operation: "clone", URL: "file:///etc"}, "url"},
		{"url ftp", gitop.Op{Operation: "clone", URL: "ftp://example.com/r"}, "url"},
		{"url ssh dash host", gitop.Op{Operation: "clone", URL: "ssh://-oProxyCommand=touch/r"}, "url"},
		{"url scp dash host", gitop.Op{Operation: "clone", URL: "git@-oProxyCommand=x:r"}, "url"},
		{"url scp dash user", gitop.Op{Operation: "clone", URL: "-x@host:r"}, "url"},
		{"url whitespace", gitop.Op{Operation: "clone", URL: "https://example.com/a b"}, "url"},
		{"url newline", gitop.Op{Operation: "clone", URL: "https://example.com/a\nb"}, "url"},
		{"url password", gitop.Op{Operation: "clone", URL: "https://u:secret@example.com/r"}, "url"},
		{"url no host", gitop.Op{Operation: "clone", URL: "https:///r"}, "url"},
		{"url scp no user", gitop.Op{Operation: "clone", URL: "host:r"}, "url"},
		{"path dotdot", gitop.Op{Operation: "status", Paths: []string{"ok", "../x"}}, "paths[1]"},
		{"path dotdot inside", gitop.Op{Operation: "status", Paths: []string{"a/../../x"}}, "paths[0]"},
		{"path absolute", gitop.Op{Operation: "diff", Paths: []string{"/etc/passwd"}}, "paths[0]"},
		{"path option", gitop.Op{Operation: "commit", Message: "m", Paths: []string{"-rf"}}, "paths[0]"},
		{"path empty", gitop.Op{Operation: "status", Paths: []string{""}}, "paths[0]"},
		{"path git dir", gitop.Op{Operation: "checkout", Paths: []string{".git/config"}}, "paths[0]"},
		{"path control", gitop.Op{Operation: "status", Paths: []string{"a\x00b"}}, "paths[0]"},
		{"message empty", gitop.Op{Operation: "commit", Message: " \n"}, "message"},
		{"message missing", gitop.Op{Operation: "commit"}, "message"},
		{"unknown operation", gitop.Op{Operation: "push"}, "operation"},
		{"proto-style name", gitop.Op{Operation: "GIT_OPERATION_CLONE"}, "operation"},
		{"clone without url", gitop.Op{Operation: "clone"}, "url"},
		{"clone two dirs", gitop.Op{Operation: "clone", URL: "https://e.com/r", Paths: []string{"a", "b"}}, "paths"},
		{"checkout nothing", gitop.Op{Operation: "checkout"}, "ref"},
		{"status with url", gitop.Op{Operation: "status", URL: "https://e.com/r"}, "url"},
		{"status with ref", gitop.Op{Operation: "status", Ref: "main"}, "ref"},
		{"log with message", gitop.Op{Operation: "log", Message: "m"}, "message"},
		{"fetch with paths", gitop.Op{Operation: "fetch", Paths: []string{"a"}}, "paths"},
		{"commit with ref", gitop.Op{Operation: "commit", Message: "m", Ref: "main"}, "ref"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			argv, err := gitop.Argv(tt.op)
			if err == nil {
				t.Fatalf("Argv(%+v) = %q, want an error", tt.op, argv)
			}
			var gerr *gitop.Error
			if !errors.As(err, &gerr) || !errors.Is(err, gitop.ErrInvalid) {
				t.Fatalf("error %T %v is not a *gitop.Error wrapping ErrInvalid", err, err)
			}
			if gerr.Field != tt.field || gerr.Reason == "" {
				t.Errorf("field %q reason %q, want field %q", gerr.Field, gerr.Reason, tt.field)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("error repeats a secret: %v", err)
			}
		})
	}
}

func TestCheckRefAccepts(t *testing.T) {
	t.Parallel()
	for _, ref := range []string{"main", "feature/x-1", "v1.2.3", "refs/heads/main", "HEAD", "0123456789abcdef0123456789abcdef01234567", "ünïcode", "a@b", "a+b"} {
		if err := gitop.CheckRef(ref); err != nil {
			t.Errorf("CheckRef(%q) = %v", ref, err)
		}
	}
}

func TestHeadArgv(t *testing.T) {
	t.Parallel()
	if got := gitop.HeadArgv(); !slices.Equal(got, []string{"git", "rev-parse", "--verify", "HEAD"}) {
		t.Errorf("HeadArgv = %q", got)
	}
}

func TestInitArgv(t *testing.T) {
	argv, err := gitop.Argv(gitop.Op{Operation: "init"})
	if err != nil || argv[len(argv)-2] != "init" || argv[len(argv)-1] != "--initial-branch=main" {
		t.Fatalf("init argv = %v, %v", argv, err)
	}
	argv, err = gitop.Argv(gitop.Op{Operation: "init", Ref: "trunk"})
	if err != nil || argv[len(argv)-1] != "--initial-branch=trunk" {
		t.Fatalf("init with a ref = %v, %v", argv, err)
	}
	for _, bad := range []gitop.Op{
		{Operation: "init", Ref: "-x"},
		{Operation: "init", Paths: []string{"sub"}},
		{Operation: "init", URL: "https://example.com/r.git"},
		{Operation: "init", Message: "m"},
	} {
		if _, err := gitop.Argv(bad); err == nil {
			t.Errorf("Argv(%+v) accepted", bad)
		}
	}
}
