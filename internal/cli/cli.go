// Package cli is the client side of the berth binary: login, workspace,
// task, key, admin and stats commands that call a berth server through the
// generated Connect clients, with live task logs that survive a dropped
// connection. The server's own commands (serve, migrate, healthcheck,
// version) keep their parsing in cmd/berth; this package only lists them.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"connectrpc.com/connect/v2"
	"golang.org/x/term"
)

// Exit statuses of the client commands. A followed task's own outcome has
// its own status, so scripts can tell "the task failed" from "berth could
// not ask".
const (
	ExitOK          = 0   // the command, or the followed task, succeeded
	ExitError       = 1   // the command failed: server error, not found, refused…
	ExitUsage       = 2   // bad flags or arguments
	ExitTaskFailed  = 3   // the followed task ended FAILED
	ExitCancelled   = 4   // the followed task ended CANCELLED
	ExitTimedOut    = 5   // the followed task ended TIMED_OUT
	ExitInterrupted = 130 // Ctrl-C: detached from the task, which keeps running
)

// ServerCommand is one of the server's own commands (serve, migrate…),
// listed in berth --help and run by cmd/berth with its own flag parsing.
type ServerCommand struct {
	Name, Short string
	Run         func(args []string) int
}

// IO is where a command reads and writes; the real process passes
// os.Stdin, os.Stdout and os.Stderr, tests pass their own.
type IO struct {
	In       io.Reader
	Out, Err io.Writer
}

// usageError marks an error as the caller's: exit status 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// exitError ends the command with a given status; message, when set, is
// printed first.
type exitError struct {
	code    int
	message string
}

func (e exitError) Error() string { return e.message }

// app is one run of the CLI: its environment, streams and global flags.
type app struct {
	env     map[string]string
	io      IO
	now     func() time.Time
	http    *http.Client
	server  string // --server
	output  string // -o
	signals func() (<-chan os.Signal, func())

	clients *clients // built on first use
}

// Run runs the client command in args (without the program name) and
// returns the process exit status. environ is as from os.Environ.
func Run(ctx context.Context, args, environ []string, streams IO, server []ServerCommand) int {
	a := &app{
		env:     envMap(environ),
		io:      streams,
		now:     time.Now,
		http:    &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()},
		signals: notifyInterrupt,
	}
	defer a.http.CloseIdleConnections()
	root := a.root(server)
	root.SetArgs(args)
	root.SetIn(streams.In)
	root.SetOut(streams.Out)
	root.SetErr(streams.Err)
	err := root.ExecuteContext(ctx)
	return a.exitCode(err)
}

func (a *app) exitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	var exit exitError
	if errors.As(err, &exit) {
		if exit.message != "" {
			fmt.Fprintln(a.io.Err, "berth:", exit.message)
		}
		return exit.code
	}
	fmt.Fprintln(a.io.Err, "berth:", describe(err))
	var usage usageError
	var ce *connect.Error
	if errors.As(err, &usage) || !errors.As(err, &ce) && isCobraUsage(err) {
		return ExitUsage // a server's answer is never a usage error, whatever its words
	}
	return ExitError
}

// describe words an error for a person: a Connect error's code and message
// without the library's prefixes.
func describe(err error) string {
	var ce *connect.Error
	if errors.As(err, &ce) {
		msg := ce.Message()
		switch ce.Code() {
		case connect.CodeUnauthenticated:
			return "not authenticated: " + msg + " (run `berth login`, or set BERTH_TOKEN)"
		case connect.CodeUnavailable:
			return "server unavailable: " + msg
		}
		return strings.ReplaceAll(ce.Code().String(), "_", " ") + ": " + msg
	}
	return err.Error()
}

// isCobraUsage recognises cobra's own argument and flag errors, which it
// returns as plain errors.
func isCobraUsage(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand", "accepts ", "requires ", "invalid argument", "flag needs an argument", "required flag", "if any flags in the group"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}

func envMap(environ []string) map[string]string {
	m := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v // the last one wins, as in the shell
		}
	}
	return m
}

// isTerminal says whether w is a terminal (only an *os.File can be).
func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd())) // #nosec G115 -- a file descriptor fits in an int
}

// width is the terminal width of w, 0 when w is not a terminal.
func width(w io.Writer) int {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) { // #nosec G115 -- a file descriptor fits in an int
		return 0
	}
	cols, _, err := term.GetSize(int(f.Fd())) // #nosec G115 -- a file descriptor fits in an int
	if err != nil {
		return 0
	}
	return cols
}

// credentials is the store in the user's config directory.
func (a *app) credentials() (credentialStore, error) {
	dir, err := configDir(a.env)
	if err != nil {
		return credentialStore{}, err
	}
	return credentialStore{path: dir + string(os.PathSeparator) + "credentials.json"}, nil
}

// serverURL is the server to talk to: --server, else BERTH_SERVER, else
// the one last logged in to, else berth serve's default address.
func (a *app) serverURL() (string, error) {
	raw := a.server
	if raw == "" {
		raw = a.env["BERTH_SERVER"]
	}
	if raw == "" {
		store, err := a.credentials()
		if err != nil {
			return "", err
		}
		f, err := store.load()
		if err != nil {
			return "", err
		}
		raw = f.Current
	}
	if raw == "" {
		raw = defaultServer
	}
	return normalizeServer(raw)
}

// connect returns the clients for the chosen server with the caller's
// credentials; requireAuth fails early when there are none.
func (a *app) connect(requireAuth bool) (*clients, error) {
	if a.clients != nil {
		return a.clients, nil
	}
	server, err := a.serverURL()
	if err != nil {
		return nil, err
	}
	store, err := a.credentials()
	if err != nil {
		return nil, err
	}
	plain := newClients(server, a.http, nil)
	src := &tokenSource{static: strings.TrimSpace(a.env["BERTH_TOKEN"]), server: server, store: store, auth: plain.auth, now: a.now}
	if src.static == "" {
		if src.creds, err = store.get(server); err != nil {
			return nil, err
		}
		if src.creds == nil && requireAuth {
			return nil, fmt.Errorf("%w (server %s)", errNotLoggedIn, server)
		}
	}
	a.clients = newClients(server, a.http, src)
	return a.clients, nil
}
