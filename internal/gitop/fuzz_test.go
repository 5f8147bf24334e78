package gitop_test

import (
	"errors"
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/berthhq/berth/internal/gitop"
)

// fixedArgs are the words Argv itself writes after the prefix: the
// operations and their options. Anything else in an option position (before
// "--") must be a ref that cannot be read as an option, or the commit
// message right after "-m".
var fixedArgs = map[string]bool{
	"clone": true, "fetch": true, "pull": true, "checkout": true, "status": true,
	"diff": true, "log": true, "commit": true, "init": true,
	"--no-recurse-submodules": true, "--ff-only": true, "--no-edit": true, "--no-rebase": true,
	"--no-verify-signatures": true, "--porcelain=v1": true, "-b": true, "--no-renames": true,
	"--no-color": true, "--no-ext-diff": true, "--no-textconv": true, "-n": true, "50": true,
	"--no-show-signature": true, "--format=" + gitop.LogFormat: true, "--no-verify": true,
	"--no-gpg-sign": true, "--all": true,
}

// transportHelper matches git's <transport>::<address> syntax (ext::sh …,
// fd::3, file::/etc), which makes git run a helper program.
var transportHelper = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9+.-]*::`)

// pathsSep separates the fuzzer's paths in one string. NUL itself is a
// control character every path check refuses, so no path needs it.
const pathsSep = "\x00"

// FuzzArgv: for any Op, Argv either refuses it with an *Error, or returns
// an argv that starts with the fixed prefix (file transport only when
// asked), in which no value from the request sits where git reads an
// option — before "--" only Argv's own words, a ref that does not start
// with '-' or '+', and the message right after "-m" — and no URL names a
// transport helper or a scheme outside the whitelist.
func FuzzArgv(f *testing.F) {
	evil := "--upload-pack=touch /tmp/pwned;"
	seeds := []gitop.Op{
		{Operation: "clone", URL: "https://github.com/berthhq/berth.git"},
		{Operation: "clone", URL: "git@github.com:berthhq/berth.git", Ref: "v1.2", Paths: []string{"src/berth"}},
		{Operation: "clone", URL: "file:///srv/repo"},
		{Operation: "fetch"},
		{Operation: "fetch", URL: "ssh://git@example.com:2222/r.git", Ref: "feature/x"},
		{Operation: "pull", Ref: "main"},
		{Operation: "checkout", Ref: "HEAD", Paths: []string{"a.txt"}},
		{Operation: "status", Paths: []string{"x", "dir/../y"}},
		{Operation: "diff", Ref: "main", Paths: []string{":(top)x"}},
		{Operation: "log", Ref: "0123abcd", Paths: []string{"a"}},
		{Operation: "commit", Message: "-n is not an option here"},
		{Operation: "commit", Message: "--", Paths: []string{"a", "b/c"}},
		{Operation: "commit", Message: "-m looks like an option\n\nbody"},
		{Operation: "init"},
		{Operation: "init", Ref: "trunk"},
		{Operation: "init", Ref: "-x"},
		{Operation: "fetch", Ref: evil},
		{Operation: "pull", Ref: evil},
		{Operation: "checkout", Ref: evil},
		{Operation: "checkout", Ref: "-x"},
		{Operation: "fetch", Ref: "+main:main"},
		{Operation: "diff", Ref: "a..b"},
		{Operation: "log", Ref: "main@{1}"},
		{Operation: "log", Ref: `a\b`},
		{Operation: "log", Ref: "a\x01"},
		{Operation: "clone", URL: evil},
		{Operation: "fetch", URL: evil},
		{Operation: "clone", URL: "file:///srv/repo", Ref: evil},
		{Operation: "clone", URL: "ext::sh -c touch% /tmp/x"},
		{Operation: "fetch", URL: "ext::sh"},
		{Operation: "fetch", URL: "EXT::sh"},
		{Operation: "fetch", URL: "file::/etc"},
		{Operation: "fetch", URL: "fd::3"},
		{Operation: "fetch", URL: "git@host:ext::sh"},
		{Operation: "fetch", URL: "ext::sh/x"},
		{Operation: "clone", URL: "/srv/repo"},
		{Operation: "clone", URL: "../repo"},
		{Operation: "clone", URL: "ftp://example.com/r"},
		{Operation: "clone", URL: "ssh://-oProxyCommand=touch/r"},
		{Operation: "clone", URL: "git@-oProxyCommand=x:r"},
		{Operation: "clone", URL: "-x@host:r"},
		{Operation: "clone", URL: "https://u:secret@example.com/r"},
		{Operation: "clone", URL: "https://example.com/a\nb"},
		{Operation: "diff", Paths: []string{evil}},
		{Operation: "status", Paths: []string{"ok", "../x"}},
		{Operation: "status", Paths: []string{"a/../../x"}},
		{Operation: "diff", Paths: []string{"/etc/passwd"}},
		{Operation: "commit", Message: "m", Paths: []string{"-rf"}},
		{Operation: "checkout", Paths: []string{".git/config"}},
		{Operation: "checkout", Paths: []string{"a/./.git/hooks"}},
		{Operation: "push", URL: "https://e.com/r"},
	}
	for _, op := range seeds {
		f.Add(op.Operation, op.URL, op.Ref, op.Message, strings.Join(op.Paths, pathsSep), false)
		f.Add(op.Operation, op.URL, op.Ref, op.Message, strings.Join(op.Paths, pathsSep), true)
	}
	f.Fuzz(func(t *testing.T, operation, url, ref, message, paths string, allowFile bool) {
		op := gitop.Op{Operation: operation, URL: url, Ref: ref, Message: message}
		if paths != "" {
			op.Paths = strings.Split(paths, pathsSep)
		}
		var opts []gitop.Option
		if allowFile {
			opts = append(opts, gitop.AllowFileURLs())
		}
		argv, err := gitop.Argv(op, opts...)
		steps, stepsErr := gitop.Steps(op, opts...)
		if (err == nil) != (stepsErr == nil) {
			t.Fatalf("Argv error %v but Steps error %v", err, stepsErr)
		}
		if err != nil {
			var gerr *gitop.Error
			if !errors.As(err, &gerr) || !errors.Is(err, gitop.ErrInvalid) || gerr.Field == "" || gerr.Reason == "" {
				t.Fatalf("Argv(%+q) error %T %v is not a *gitop.Error with a field and a reason", op, err, err)
			}
			return
		}
		checkArgv(t, op, allowFile, argv)
		for _, step := range steps {
			checkArgv(t, op, allowFile, step)
		}
		if !slices.Equal(steps[len(steps)-1], argv) {
			t.Fatalf("Steps(%+q) ends with %q, not Argv's %q", op, steps[len(steps)-1], argv)
		}
	})
}

// checkArgv checks one argv Argv or Steps returned for op.
func checkArgv(t *testing.T, op gitop.Op, allowFile bool, argv []string) {
	t.Helper()
	pre := with()
	if allowFile {
		pre = append(pre, "-c", "protocol.file.allow=always")
	}
	if !slices.Equal(argv[:min(len(pre), len(argv))], pre) || len(argv) == len(pre) {
		t.Fatalf("Argv(%+q) = %q: does not start with the fixed prefix and a command", op, argv)
	}
	rest := argv[len(pre):]
	if rest[0] == "add" && op.Operation == gitop.Commit {
		rest = rest[1:] // Steps stages a commit's paths first: add --all -- paths
	}
	i := 0
	for ; i < len(rest) && rest[i] != "--"; i++ {
		a := rest[i]
		switch {
		case a == "-m" && i+1 < len(rest):
			if rest[i+1] != op.Message {
				t.Fatalf("Argv(%+q) = %q: -m is followed by %q, not the message", op, argv, rest[i+1])
			}
			i++ // the message: any text, git reads it as -m's value
		case a == "--branch" && i+1 < len(rest):
			i++
			checkRefArg(t, op, argv, rest[i])
		case strings.HasPrefix(a, "--initial-branch="):
			checkRefArg(t, op, argv, strings.TrimPrefix(a, "--initial-branch="))
		case fixedArgs[a]:
		default:
			checkRefArg(t, op, argv, a)
		}
	}
	if i == len(rest) {
		if op.Operation == gitop.Init || op.Operation == gitop.Commit && len(op.Paths) == 0 {
			return // the only argvs without "--": no paths, no URL
		}
		t.Fatalf("Argv(%+q) = %q: no \"--\" before the request's values", op, argv)
	}
	for _, a := range rest[i+1:] {
		if strings.HasPrefix(a, "-") {
			t.Fatalf("Argv(%+q) = %q: %q after \"--\" starts with '-'", op, argv, a)
		}
		if a == op.URL && a != "" {
			checkURLArg(t, op, allowFile, argv, a)
			continue
		}
		if a == "origin" || a == op.Ref && op.Ref != "" {
			continue
		}
		// A path: relative, inside the repository, never .git.
		clean := path.Clean(a)
		if path.IsAbs(a) || clean != a || clean == ".." || strings.HasPrefix(clean, "../") || slices.Contains(strings.Split(clean, "/"), ".git") {
			t.Fatalf("Argv(%+q) = %q: %q is not a clean path inside the repository", op, argv, a)
		}
	}
}

// checkRefArg fails unless a, found where git may read an option, is the
// op's ref (or the default branch) and cannot be read as an option.
func checkRefArg(t *testing.T, op gitop.Op, argv []string, a string) {
	t.Helper()
	if a != op.Ref && a != gitop.DefaultBranch {
		t.Fatalf("Argv(%+q) = %q: %q in an option position is neither Argv's own word nor the ref", op, argv, a)
	}
	if a == "" || a[0] == '-' || a[0] == '+' || gitop.CheckRef(a) != nil {
		t.Fatalf("Argv(%+q) = %q: ref %q in an option position could be read as an option", op, argv, a)
	}
}

// checkURLArg fails unless u is a URL git fetches over a whitelisted
// transport, never a transport helper.
func checkURLArg(t *testing.T, op gitop.Op, allowFile bool, argv []string, u string) {
	t.Helper()
	if transportHelper.MatchString(u) {
		t.Fatalf("Argv(%+q) = %q: URL %q names a transport helper", op, argv, u)
	}
	scheme, _, ok := strings.Cut(u, "://")
	if !ok {
		// scp-like user@host:path: git reads it as ssh, unless a "::"
		// comes before any "/".
		if i := strings.Index(u, "::"); i >= 0 && !strings.Contains(u[:i], "/") {
			t.Fatalf("Argv(%+q) = %q: URL %q names a transport helper", op, argv, u)
		}
		return
	}
	switch strings.ToLower(scheme) {
	case "https", "http", "ssh", "git":
	case "file":
		if !allowFile {
			t.Fatalf("Argv(%+q) = %q: file URL without AllowFileURLs", op, argv)
		}
	default:
		t.Fatalf("Argv(%+q) = %q: URL scheme %q is not whitelisted", op, argv, scheme)
	}
}
