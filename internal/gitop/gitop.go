// Package gitop builds the argv of berth's whitelisted git operations
// (clone, fetch, pull, checkout, status, diff, log, commit, init) from typed,
// validated arguments, so that no value from a request can become a git
// option or reach a shell.
//
// It runs nothing: the task runner executes the argv in the workspace and
// streams its output. Every argument is checked (refs by git's
// check-ref-format rules, URLs by scheme, paths as clean relative paths),
// values are passed after "--" wherever git allows it, and every command
// runs with a fixed set of -c overrides so a repository's own
// configuration cannot run programs on berth's behalf (hooks, fsmonitor,
// transports). An invalid argument is an *Error naming the field.
//
// gitop is a leaf: it imports only the standard library.
package gitop

import (
	"errors"
	"fmt"
	"net/url"
	"path"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Operations berth allows. Op.Operation must be one of them.
const (
	Clone    = "clone"
	Fetch    = "fetch"
	Pull     = "pull"
	Checkout = "checkout"
	Status   = "status"
	Diff     = "diff"
	Log      = "log"
	Commit   = "commit"
	Init     = "init"
)

// operations names every operation, for refusals.
const operations = "clone, fetch, pull, checkout, status, diff, log, commit, init"

// DefaultBranch is the initial branch of a repository made by init without
// a Ref: fixed, so it never depends on a git configuration.
const DefaultBranch = "main"

// LogLimit bounds how many commits a log operation lists.
const LogLimit = 50

// LogFormat is the fixed format of a log operation's lines: hash, author
// name, author date (strict ISO 8601) and subject, separated by tabs.
const LogFormat = "%H%x09%an%x09%aI%x09%s"

// Op is one git operation with its typed arguments. Which fields an
// operation takes:
//
//	clone     URL (required), Ref (branch or tag to check out), Paths (at most one: the target directory, default ".")
//	fetch     URL (default the "origin" remote), Ref
//	pull      URL (default "origin"), Ref; fast-forward only
//	checkout  Ref and/or Paths (at least one)
//	status    Paths
//	diff      Ref (compare the working tree with it), Paths
//	log       Ref (start there instead of HEAD), Paths
//	commit    Message (required), Paths (commit only these; default all tracked changes)
//	init      Ref (the initial branch, default DefaultBranch); in the working directory
//
// A field an operation does not take must be empty.
type Op struct {
	Operation string
	URL       string
	Ref       string
	Message   string
	Paths     []string
}

// ErrInvalid is what every *Error matches with errors.Is.
var ErrInvalid = errors.New("invalid git operation")

// Error reports an argument that was refused, by field, so the API can
// answer with a field violation. Field is "operation", "url", "ref",
// "message" or "paths[i]".
type Error struct {
	Field  string
	Reason string
}

func (e *Error) Error() string { return "git " + e.Field + ": " + e.Reason }

// Unwrap makes errors.Is(err, ErrInvalid) true.
func (e *Error) Unwrap() error { return ErrInvalid }

// Option changes what Argv accepts.
type Option func(*options)

type options struct{ allowFile bool }

// AllowFileURLs accepts file:// URLs (local repositories). They are off by
// default: in production a local path would read outside the workspace.
// Tests use them to clone a repository created on the host.
func AllowFileURLs() Option { return func(o *options) { o.allowFile = true } }

// HeadArgv is the argv that prints the commit HEAD points at, for the
// task's result. --verify makes it fail instead of echoing "HEAD" in a
// repository without commits.
func HeadArgv() []string { return []string{"git", "rev-parse", "--verify", "HEAD"} }

// Env is the environment berth's git commands should run with: never
// prompt for credentials (stdin is closed; a prompt would hang until the
// timeout), never page, and let status skip optional locks.
func Env() []string {
	return []string{"GIT_TERMINAL_PROMPT=0", "GIT_PAGER=cat", "GIT_OPTIONAL_LOCKS=0"}
}

// prefix is the start of every argv. Hooks are disabled with
// core.hooksPath=/dev/null: a cloned repository's hooks (and any an agent
// wrote) must not run on berth's operations. core.fsmonitor=false stops a
// repository's configured monitor program from running on status/diff.
// Transports are whitelisted with protocol.allow, which also covers
// submodules and remotes already configured in the repository.
// --literal-pathspecs makes a path only ever a path (no globs, no ":(…)"
// magic). safe.directory=* lets git work in a workspace directory that
// the command's user does not own (a berth that is not root cannot give
// the directories it makes away): git's ownership check guards against
// running another user's repository configuration, which the overrides
// here already neutralise, and a workspace is its owner's anyway.
func prefix(o options) []string {
	argv := []string{
		"git",
		"--no-pager",
		"--literal-pathspecs",
		"-c", "core.hooksPath=/dev/null",
		"-c", "core.fsmonitor=false",
		"-c", "safe.directory=*",
		"-c", "protocol.allow=never",
		"-c", "protocol.https.allow=always",
		"-c", "protocol.http.allow=always",
		"-c", "protocol.ssh.allow=always",
		"-c", "protocol.git.allow=always",
	}
	if o.allowFile {
		argv = append(argv, "-c", "protocol.file.allow=always")
	}
	return argv
}

// Argv validates op and returns its full argv, starting with "git". The
// argv is meant for exec, never for a shell. An invalid op returns an
// *Error.
func Argv(op Op, opts ...Option) ([]string, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if err := allowedFields(op); err != nil {
		return nil, err
	}
	paths, err := checkPaths(op.Paths)
	if err != nil {
		return nil, err
	}
	if op.Ref != "" {
		if err := CheckRef(op.Ref); err != nil {
			return nil, err
		}
	}
	if op.URL != "" {
		if err := checkURL(op.URL, o); err != nil {
			return nil, err
		}
	}
	argv := prefix(o)
	switch op.Operation {
	case Clone:
		if op.URL == "" {
			return nil, &Error{Field: "url", Reason: "clone needs a repository URL"}
		}
		if len(paths) > 1 {
			return nil, &Error{Field: "paths", Reason: "clone takes at most one path: the target directory"}
		}
		dir := "."
		if len(paths) == 1 {
			dir = paths[0]
		}
		argv = append(argv, "clone", "--no-recurse-submodules")
		if op.Ref != "" {
			argv = append(argv, "--branch", op.Ref)
		}
		return append(argv, "--", op.URL, dir), nil
	case Fetch, Pull:
		remote := op.URL
		if remote == "" {
			remote = "origin"
		}
		argv = append(argv, op.Operation)
		if op.Operation == Pull {
			argv = append(argv, "--ff-only", "--no-edit", "--no-rebase", "--no-verify-signatures")
		}
		argv = append(argv, "--no-recurse-submodules", "--", remote)
		if op.Ref != "" {
			argv = append(argv, op.Ref)
		}
		return argv, nil
	case Checkout:
		if op.Ref == "" && len(paths) == 0 {
			return nil, &Error{Field: "ref", Reason: "checkout needs a ref or paths"}
		}
		argv = append(argv, "checkout", "--no-recurse-submodules")
		if op.Ref != "" {
			argv = append(argv, op.Ref)
		}
		return append(append(argv, "--"), paths...), nil
	case Status:
		argv = append(argv, "status", "--porcelain=v1", "-b", "--no-renames", "--")
		return append(argv, paths...), nil
	case Diff:
		argv = append(argv, "diff", "--no-color", "--no-ext-diff", "--no-textconv")
		if op.Ref != "" {
			argv = append(argv, op.Ref)
		}
		return append(append(argv, "--"), paths...), nil
	case Log:
		argv = append(argv, "log", "-n", fmt.Sprint(LogLimit), "--no-color", "--no-show-signature", "--format="+LogFormat)
		if op.Ref != "" {
			argv = append(argv, op.Ref)
		}
		return append(append(argv, "--"), paths...), nil
	case Commit:
		if err := checkMessage(op.Message); err != nil {
			return nil, err
		}
		argv = append(argv, "commit", "--no-verify", "--no-gpg-sign")
		if len(paths) == 0 {
			return append(argv, "--all", "-m", op.Message), nil
		}
		return append(append(argv, "-m", op.Message, "--"), paths...), nil
	case Init:
		branch := op.Ref
		if branch == "" {
			branch = DefaultBranch
		}
		return append(argv, "init", "--initial-branch="+branch), nil
	}
	return nil, &Error{Field: "operation", Reason: fmt.Sprintf("%q is not one of %s", op.Operation, operations)}
}

// Steps returns the argvs to run in order for op. It equals Argv except for
// commit, which first stages the changes ("git add --all" of the paths, or
// of the whole tree) so new files are committed too; git commit alone
// only sees files git already tracks.
func Steps(op Op, opts ...Option) ([][]string, error) {
	argv, err := Argv(op, opts...)
	if err != nil {
		return nil, err
	}
	if op.Operation != Commit {
		return [][]string{argv}, nil
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	paths, _ := checkPaths(op.Paths)
	if len(paths) == 0 {
		paths = []string{"."}
	}
	add := append(append(prefix(o), "add", "--all", "--"), paths...)
	return [][]string{add, argv}, nil
}

// allowedFields refuses fields the operation does not use, so a request
// never silently means less than it says.
func allowedFields(op Op) error {
	type takes struct{ url, ref, message, paths bool }
	var t takes
	switch op.Operation {
	case Clone:
		t = takes{url: true, ref: true, paths: true}
	case Fetch, Pull:
		t = takes{url: true, ref: true}
	case Checkout:
		t = takes{ref: true, paths: true}
	case Status:
		t = takes{paths: true}
	case Diff, Log:
		t = takes{ref: true, paths: true}
	case Commit:
		t = takes{message: true, paths: true}
	case Init:
		t = takes{ref: true}
	default:
		return &Error{Field: "operation", Reason: fmt.Sprintf("%q is not one of %s", op.Operation, operations)}
	}
	unused := func(field string) error {
		return &Error{Field: field, Reason: "not used by " + op.Operation}
	}
	switch {
	case op.URL != "" && !t.url:
		return unused("url")
	case op.Ref != "" && !t.ref:
		return unused("ref")
	case op.Message != "" && !t.message:
		return unused("message")
	case len(op.Paths) > 0 && !t.paths:
		return unused("paths")
	}
	return nil
}

// CheckRef reports whether ref is a name berth passes to git: git's
// check-ref-format rules with --allow-onelevel, and never a leading "-"
// (an option) or "+" (a forced refspec).
func CheckRef(ref string) error {
	bad := func(reason string) error { return &Error{Field: "ref", Reason: reason} }
	switch {
	case ref == "":
		return bad("must not be empty")
	case len(ref) > 255:
		return bad("longer than 255 bytes")
	case !utf8.ValidString(ref):
		return bad("not valid UTF-8")
	case ref[0] == '-':
		return bad("starts with '-'")
	case ref[0] == '+':
		return bad("starts with '+'")
	case ref == "@":
		return bad("is '@'")
	case strings.HasPrefix(ref, "/") || strings.HasSuffix(ref, "/"):
		return bad("starts or ends with '/'")
	case strings.HasSuffix(ref, "."):
		return bad("ends with '.'")
	case strings.Contains(ref, ".."):
		return bad("contains '..'")
	case strings.Contains(ref, "@{"):
		return bad("contains '@{'")
	case strings.Contains(ref, "//"):
		return bad("contains '//'")
	}
	for _, r := range ref {
		if r < 0x20 || r == 0x7f || unicode.IsSpace(r) || strings.ContainsRune("~^:?*[\\", r) {
			return bad(fmt.Sprintf("contains %q", r))
		}
	}
	for _, c := range strings.Split(ref, "/") {
		if strings.HasPrefix(c, ".") {
			return bad("a component starts with '.'")
		}
		if strings.HasSuffix(c, ".lock") {
			return bad("a component ends with '.lock'")
		}
	}
	return nil
}

// checkURL accepts https, http, ssh and git URLs, scp-like user@host:path,
// and file URLs when allowed. Everything else — transport helpers such as
// ext::, local paths, option-like values — is refused.
func checkURL(raw string, o options) error {
	bad := func(reason string) error { return &Error{Field: "url", Reason: reason} }
	switch {
	case len(raw) > 2048:
		return bad("longer than 2048 bytes")
	case !utf8.ValidString(raw):
		return bad("not valid UTF-8")
	case strings.HasPrefix(raw, "-"):
		return bad("starts with '-'")
	}
	for _, r := range raw {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return bad("contains whitespace or a control character")
		}
	}
	scheme, rest, hasScheme := strings.Cut(raw, "://")
	if !hasScheme {
		return checkSCP(raw)
	}
	switch strings.ToLower(scheme) {
	case "https", "http", "ssh", "git":
	case "file":
		if !o.allowFile {
			return bad("file URLs are not allowed")
		}
		if !strings.HasPrefix(rest, "/") {
			return bad("a file URL needs an absolute path: file:///path")
		}
		return nil
	default:
		return bad(fmt.Sprintf("scheme %q is not one of https, http, ssh, git", scheme))
	}
	u, err := url.Parse(raw)
	if err != nil {
		return bad("not a URL") // err repeats the URL, which may hold a secret
	}
	host := u.Hostname()
	switch {
	case host == "":
		return bad("no host")
	case strings.HasPrefix(host, "-"):
		return bad("host starts with '-'")
	case u.User != nil && strings.HasPrefix(u.User.Username(), "-"):
		return bad("user starts with '-'")
	}
	if _, hasPassword := u.User.Password(); hasPassword {
		return bad("contains a password; credentials must not be part of a URL that is logged")
	}
	return nil
}

// checkSCP accepts the scp-like form user@host:path that git treats as
// ssh. A "::" before the first "/" would make git pick a transport helper
// (ext::sh -c …) and is refused, like any local path.
func checkSCP(raw string) error {
	bad := func(reason string) error { return &Error{Field: "url", Reason: reason} }
	if i := strings.Index(raw, "::"); i >= 0 && !strings.Contains(raw[:i], "/") {
		return bad("transport helpers (<transport>::<address>) are not allowed")
	}
	userHost, repoPath, ok := strings.Cut(raw, ":")
	user, host, hasUser := strings.Cut(userHost, "@")
	switch {
	case !ok || !hasUser || strings.Contains(userHost, "/"):
		return bad("not an https, http, ssh or git URL, nor user@host:path")
	case user == "" || host == "" || repoPath == "":
		return bad("user@host:path needs a user, a host and a path")
	case strings.HasPrefix(user, "-") || strings.HasPrefix(host, "-"):
		return bad("user or host starts with '-'")
	}
	for _, r := range user + host {
		if !(r == '.' || r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return bad(fmt.Sprintf("user or host contains %q", r))
		}
	}
	return nil
}

// checkPaths cleans each path and refuses anything that is not a relative
// path inside the repository.
func checkPaths(paths []string) ([]string, error) {
	if len(paths) > 1000 {
		return nil, &Error{Field: "paths", Reason: "more than 1000 paths"}
	}
	out := make([]string, 0, len(paths))
	for i, p := range paths {
		bad := func(reason string) error { return &Error{Field: fmt.Sprintf("paths[%d]", i), Reason: reason} }
		switch {
		case p == "":
			return nil, bad("must not be empty")
		case len(p) > 4096:
			return nil, bad("longer than 4096 bytes")
		case !utf8.ValidString(p):
			return nil, bad("not valid UTF-8")
		case strings.HasPrefix(p, "-"):
			return nil, bad("starts with '-'")
		case path.IsAbs(p):
			return nil, bad("absolute; paths are relative to the repository")
		}
		for _, r := range p {
			if unicode.IsControl(r) {
				return nil, bad("contains a control character")
			}
		}
		clean := path.Clean(p)
		if clean == ".." || strings.HasPrefix(clean, "../") {
			return nil, bad("leaves the repository ('..')")
		}
		for _, c := range strings.Split(clean, "/") {
			if c == ".git" {
				return nil, bad("names the .git directory")
			}
		}
		out = append(out, clean)
	}
	return out, nil
}

// checkMessage refuses an empty commit message.
func checkMessage(msg string) error {
	bad := func(reason string) error { return &Error{Field: "message", Reason: reason} }
	switch {
	case strings.TrimSpace(msg) == "":
		return bad("a commit needs a message that is not blank")
	case len(msg) > 64<<10:
		return bad("longer than 64 KiB")
	case !utf8.ValidString(msg):
		return bad("not valid UTF-8")
	case strings.ContainsRune(msg, 0):
		return bad("contains a NUL byte")
	}
	return nil
}
