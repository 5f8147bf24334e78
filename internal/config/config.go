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
// config is a leaf package: it imports nothing from berth, and it does not
// touch the file system beyond making paths absolute; creating the data
// directory or the JWT key is the job of the code that uses them.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
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
	c := defaults()
	var problems problems
	s := newFlagSet(c, &problems)
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

// defaults returns the configuration before flags and variables apply.
// Defaults that depend on the data directory are filled in by resolve.
func defaults() *Config {
	return &Config{
		Addr:                  "127.0.0.1:8080",
		AdminAddr:             "127.0.0.1:9090",
		DataDir:               "./data",
		LogFormat:             LogFormatJSON,
		LogLevel:              slog.LevelInfo,
		AllowRegistration:     true,
		PasswordHashMemoryMiB: 160,
		SecureCookies:         true,
		JWT: JWT{
			Issuer:          "berth",
			Audience:        "berth-api",
			AccessTokenTTL:  15 * time.Minute,
			RefreshTokenTTL: 30 * 24 * time.Hour,
		},
		HTTP: HTTP{
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       60 * time.Second,
			WriteTimeout:      0,
			IdleTimeout:       120 * time.Second,
			MaxHeaderBytes:    1 << 20,
			MaxBodyBytes:      4 << 20,
		},
		ShutdownTimeout: 30 * time.Second,
		Runtime:         RuntimeAuto,
		Workspace:       defaultWorkspace(),
		Tasks:           defaultTasks(),
		Streams:         defaultStreams(),
		Database:        defaultDatabase(),
		Valkey:          defaultValkey(),
		RateLimits:      defaultRateLimits(),
		Quotas:          defaultQuotas(),
	}
}

// LogValue lists every setting under its flag name, for the start-up log
// line. It must never print a secret: a setting that holds one is typed
// Secret (which logs as "[redacted]") or logged only as whether it is set.
// A test fails when a flag is missing here, so each new flag gets this
// decision made on purpose.
func (c *Config) LogValue() slog.Value {
	return slog.GroupValue(append([]slog.Attr{
		slog.String("addr", c.Addr),
		slog.String("admin-addr", c.AdminAddr),
		slog.String("data-dir", c.DataDir),
		slog.Any("workspace-root", c.WorkspaceRoots),
		slog.String("log-format", string(c.LogFormat)),
		slog.String("log-level", c.LogLevel.String()),
		slog.Any("allowed-origins", c.AllowedOrigins),
		slog.Bool("allow-registration", c.AllowRegistration),
		slog.Int64("password-hash-memory", c.PasswordHashMemoryMiB),
		slog.Bool("secure-cookies", c.SecureCookies),
		slog.String("public-url", c.PublicURL),
		slog.String("jwt-issuer", c.JWT.Issuer),
		slog.String("jwt-audience", c.JWT.Audience),
		slog.String("access-token-ttl", formatDuration(c.JWT.AccessTokenTTL)),
		slog.String("refresh-token-ttl", formatDuration(c.JWT.RefreshTokenTTL)),
		slog.String("jwt-key-file", c.JWT.KeyFile),
		slog.Bool("jwt-key", c.JWT.Key != ""), // only whether it is set
		slog.String("read-header-timeout", formatDuration(c.HTTP.ReadHeaderTimeout)),
		slog.String("read-timeout", formatDuration(c.HTTP.ReadTimeout)),
		slog.String("write-timeout", formatDuration(c.HTTP.WriteTimeout)),
		slog.String("idle-timeout", formatDuration(c.HTTP.IdleTimeout)),
		slog.Int("max-header-bytes", c.HTTP.MaxHeaderBytes),
		slog.Int64("max-body-bytes", c.HTTP.MaxBodyBytes),
		slog.String("shutdown-timeout", formatDuration(c.ShutdownTimeout)),
		slog.Attr{Key: "oidc", Value: oidcLogValue(c.OIDC)},
		slog.String("runtime", c.Runtime),
		slog.String("docker-host", c.DockerHost),
		slog.String("workspace-image", c.Workspace.Image),
		slog.String("workspace-network", c.Workspace.Network),
		slog.String("workspace-user", c.Workspace.User),
		slog.Int64("workspace-memory", c.Workspace.MemoryMB),
		slog.Float64("workspace-cpus", c.Workspace.CPUs),
		slog.Int64("workspace-pids", c.Workspace.Pids),
		slog.Int64("workspace-max-memory", c.Workspace.MaxMemoryMB),
		slog.Float64("workspace-max-cpus", c.Workspace.MaxCPUs),
		slog.Int64("workspace-max-pids", c.Workspace.MaxPids),
		slog.Any("workspace-cap-add", c.Workspace.CapAdd),
		slog.Any("workspace-image-allow", c.Workspace.ImageAllow),
		slog.String("workspace-idle-timeout", formatDuration(c.Workspace.IdleTimeout)),
		slog.Int64("max-running-tasks", c.Tasks.MaxRunning),
		slog.Int64("max-running-per-workspace", c.Tasks.MaxRunningPerWorkspace),
		slog.String("task-timeout", formatDuration(c.Tasks.Timeout)),
		slog.String("claude-path", c.Tasks.ClaudePath),
		slog.String("claude-idle-timeout", formatDuration(c.Tasks.ClaudeIdleTimeout)),
		slog.Int64("claude-max-turns", c.Tasks.ClaudeMaxTurns),
		slog.Bool("anthropic-api-key", c.Tasks.AnthropicAPIKey != ""), // only whether it is set
		slog.String("log-retention", formatDuration(c.Tasks.LogRetention)),
		slog.Float64("budget-usd", c.Tasks.BudgetUSD),
		slog.String("budget-period", formatDuration(c.Tasks.BudgetPeriod)),
		slog.Any("task-env-deny", c.Tasks.EnvDeny),
		slog.Any("task-env-allow", c.Tasks.EnvAllow),
		slog.String("stream-heartbeat", formatDuration(c.Streams.Heartbeat)),
		slog.String("stream-stall-timeout", formatDuration(c.Streams.StallTimeout)),
		slog.String("ws-ping-interval", formatDuration(c.Streams.WSPingInterval)),
	}, append(c.scaleLogAttrs(), c.quotaLogAttrs()...)...)...)
}

// FlagError is one problem with one setting. Load reports all of them at
// once, joined; errors.As finds the first.
type FlagError struct {
	// Flag is the flag's name without dashes, such as "admin-addr". It is
	// empty for a setting that has no flag, only a variable (Env).
	Flag string
	// Env names the variable of a setting that has no flag, such as
	// BERTH_OIDC_GOOGLE_ISSUER; it is empty when Flag is set.
	Env string
	// Value is the rejected value as given (one element of a list). It is
	// empty for a setting whose value is a secret.
	Value string
	// Problem says what is expected and, where it is not obvious, why.
	Problem string
}

// Error names the flag and its variable, quotes the value and says what is
// wrong, e.g. `--addr (env BERTH_ADDR) = "localhost": want host:port …`, or
// `env BERTH_OIDC_X_ISSUER = "x": …` for a setting without a flag.
func (e *FlagError) Error() string {
	if e.Flag == "" {
		return fmt.Sprintf("env %s = %q: %s", e.Env, e.Value, e.Problem)
	}
	return fmt.Sprintf("--%s (env %s) = %q: %s", e.Flag, EnvName(e.Flag), e.Value, e.Problem)
}

// problems collects every FlagError of one Load. As an error it prints one
// problem per line.
type problems []*FlagError

func (p *problems) add(flagName, value, format string, args ...any) {
	*p = append(*p, &FlagError{Flag: flagName, Value: value, Problem: fmt.Sprintf(format, args...)})
}

// addEnv records a problem with a variable that has no flag.
func (p *problems) addEnv(env, value, format string, args ...any) {
	*p = append(*p, &FlagError{Env: env, Value: value, Problem: fmt.Sprintf(format, args...)})
}

func (p problems) Error() string {
	var b strings.Builder
	b.WriteString("berth serve: invalid configuration (berth serve --help lists every flag):")
	for _, err := range p {
		b.WriteString("\n  - ")
		b.WriteString(err.Error())
	}
	return b.String()
}

func (p problems) Unwrap() []error {
	errs := make([]error, len(p))
	for i, fe := range p {
		errs[i] = fe
	}
	return errs
}
