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
package gitop

import (
	"errors"
	"fmt"
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
