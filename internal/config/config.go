// Package config turns the flags of `berth serve` and their BERTH_*
// environment twins into a validated Config.
//
// Every flag has an environment variable named BERTH_ plus the flag name in
// upper snake case (--admin-addr ↔ BERTH_ADMIN_ADDR). A flag on the command
// line wins over its variable, which wins over the default. Load checks
// everything at once and reports every problem together, each naming the flag,
// its variable, what is expected and the rejected value, so an operator can
// fix a deployment in one pass.
//
// Each flag is described once, in its definition (name, default, usage);
// --help, the start-up log line and the README's configuration table
// (go run ./internal/config/cmd/flagtable) are all made from the flag set.
//
// config does not touch the file system beyond making paths absolute;
// creating the data directory or the JWT key is the job of the code that
// uses them.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"
)

// Config is the validated configuration of `berth serve`. Paths in it are
// absolute and cleaned; lists hold no empty or duplicate entries.
type Config struct {
	// Addr is the host:port of the main listener: the API over Connect, gRPC
	// and gRPC-Web, /health and /ready. Port 0 picks a free port.
	Addr string
	// AdminAddr is the host:port of the admin listener serving /metrics, kept
	// apart from Addr so metrics are not exposed where the API is. Empty when
	// the admin listener is disabled.
	AdminAddr string

	// DataDir is the directory holding the SQLite database and, by default,
	// the JWT signing key and the workspace root.
	DataDir string
	// WorkspaceRoots are the directories inside which workspace paths must
	// lie. Never empty.
	WorkspaceRoots []string

	// LogFormat is how log lines are written to stderr.
	LogFormat LogFormat
	// LogLevel is the least severe level that is logged.
	LogLevel slog.Level

	// AllowedOrigins are the exact browser origins (scheme://host[:port],
	// lower case, default port omitted) allowed to call the API across
	// origins with credentials. Empty means same-origin only. Never "*".
	AllowedOrigins []string
	// AllowRegistration says whether Register accepts new accounts.
	AllowRegistration bool
	// PasswordHashMemoryMiB is the memory, in MiB, that password hashing
	// (argon2id) may take at once; it sets how many hashes run
	// concurrently, each counted as 38 MiB (see auth.HashSlots).
	PasswordHashMemoryMiB int64
	// SecureCookies marks session cookies Secure (sent over HTTPS only).
	// Turn it off only for plain-HTTP development on localhost.
	SecureCookies bool
	// PublicURL is the absolute http(s) URL at which browsers reach this
	// server, without a trailing slash, query or fragment; OIDC redirect
	// URIs are built from it. It defaults to http:// plus --addr, and is
	// empty when that cannot be derived (--addr has port 0).
	PublicURL string
	// OIDC lists the OpenID Connect providers people can sign in with,
	// sorted by name. Only LoadEnv fills it: providers are configured in
	// the environment alone (see OIDCProvider).
	OIDC []OIDCProvider

	// JWT configures the access tokens berth issues and accepts.
	JWT JWT
	// HTTP holds the limits of the main listener's http.Server.
	HTTP HTTP
	// ShutdownTimeout bounds the graceful shutdown after SIGINT or SIGTERM:
	// in-flight calls get this long to finish before connections are closed.
	ShutdownTimeout time.Duration

	// Runtime chooses the container runtime: RuntimeDocker, RuntimeProcess,
	// or RuntimeAuto (Docker when an engine answers, else the process
	// runtime with a warning).
	Runtime string
	// DockerHost is the engine address for the docker runtime; empty means
	// DOCKER_HOST or the default socket.
	DockerHost string
	// Workspace holds the container defaults and limits for workspaces.
	Workspace Workspace
	// Tasks configures the task runner.
	Tasks Tasks
	// Streams configures the live streams.
	Streams Streams
	// Database chooses the record store (SQLite unless a Postgres URL).
	Database Database
	// Valkey configures the optional shared Valkey server.
	Valkey Valkey
	// RateLimits are the rate-limit classes and the trusted proxies.
	RateLimits RateLimits
	// Quotas bound what one user may hold at once, and the connections.
	Quotas Quotas
}

// JWT configures the access tokens berth signs (Ed25519) and verifies.
type JWT struct {
	// Issuer is the iss claim written and required.
	Issuer string
	// Audience is the aud claim written and required.
	Audience string
	// AccessTokenTTL is how long an access token is valid (1m..24h). Short,
	// because an access token cannot be revoked before it expires.
	AccessTokenTTL time.Duration
	// RefreshTokenTTL is how long a refresh token is valid; always longer
	// than AccessTokenTTL.
	RefreshTokenTTL time.Duration
	// KeyFile is the absolute path of the PEM Ed25519 signing key. The
	// server generates it (mode 0600) on first start when it is missing.
	KeyFile string
	// Key is the PEM signing key itself; when set, KeyFile is not used.
	Key Secret
}

// HTTP holds the limits of the main listener. Timeouts of 0 mean none.
type HTTP struct {
	// ReadHeaderTimeout bounds reading the request headers; always positive,
	// so a client cannot hold a connection by sending headers slowly.
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a whole request, body included.
	ReadTimeout time.Duration
	// WriteTimeout bounds writing a response. It defaults to 0 (none)
	// because server streams (log tails, workspace watches) stay open for
	// hours; unary RPCs get their deadline per call instead.
	WriteTimeout time.Duration
	// IdleTimeout is how long a keep-alive connection may wait for its next
	// request.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds the size of the request headers.
	MaxHeaderBytes int
	// MaxBodyBytes bounds the size of a request body and of one message.
	MaxBodyBytes int64
}

// LogFormat is the encoding of log lines.
type LogFormat string

// The log formats berth writes.
const (
	// LogFormatJSON writes one JSON object per line, for log collectors.
	LogFormatJSON LogFormat = "json"
	// LogFormatText writes key=value lines, for people at a terminal.
	LogFormatText LogFormat = "text"
)

// Load parses the arguments that follow `berth serve` (not including
// "serve") and the BERTH_* variables read through getenv, which may be nil.
// An empty variable counts as unset. Usage text for --help goes to stderr;
// see LoadWithOutput.
//
// A getenv can only answer for names asked for, and OIDC providers are
// found by listing the environment, so Load configures no OIDC provider;
// berth serve uses LoadEnv.
func Load(args []string, getenv func(string) string) (*Config, error) {
	return LoadWithOutput(args, getenv, os.Stderr)
}

// LoadEnv is LoadWithOutput reading the whole environment, given as
// environ in the form of os.Environ ("NAME=value"; for a name given twice
// the last wins). Besides every flag's variable it finds the OIDC providers:
// one per BERTH_OIDC_<NAME>_ISSUER (see OIDCProvider).
func LoadEnv(args, environ []string, w io.Writer) (*Config, error) {
	return load(args, getenvFrom(environ), environ, w)
}

// LoadWithOutput is Load with the usage text written to w. Like Load, it
// configures no OIDC provider; LoadEnv does.
//
// On --help or -h it writes the usage text to w and returns flag.ErrHelp,
// which the caller should treat as success. Otherwise nothing is written: a
// bad configuration is returned as an error listing every problem, each a
// *FlagError that errors.As finds.
func LoadWithOutput(args []string, getenv func(string) string, w io.Writer) (*Config, error) {
	return load(args, getenv, nil, w)
}

// load is LoadWithOutput that also reads the OIDC providers from environ.
func load(args []string, getenv func(string) string, environ []string, w io.Writer) (*Config, error) {
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	c := new(Config)
	var problems problems
	s := newFlagSet(c, &problems) // sets every default
	if err := s.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			s.usage(w)
			return nil, flag.ErrHelp
		}
		return nil, fmt.Errorf("berth serve: %w (berth serve --help lists every flag)", err)
	}
	if s.fs.NArg() > 0 {
		return nil, fmt.Errorf("berth serve: unexpected argument %q: serve takes only flags (berth serve --help lists them)", s.fs.Arg(0))
	}
	s.applyEnv(getenv)
	// A value that could not be parsed leaves its default in place; checking
	// the rest anyway reports every problem in one pass.
	c.resolve(&problems)
	c.resolveOIDC(environ, &problems)
	if len(problems) > 0 {
		s.sort(problems)
		return nil, problems
	}
	return c, nil
}
