package config

import (
	"cmp"
	"flag"
	"io"
	"os"
	"slices"
	"strings"
	"time"
)

// EnvName returns the environment variable twin of a flag: BERTH_ plus the
// flag name in upper snake case, so "admin-addr" gives "BERTH_ADMIN_ADDR".
func EnvName(flagName string) string {
	return "BERTH_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Flags returns a new FlagSet holding every flag of `berth serve`, bound to a
// throwaway Config. It is for tests and documentation that must see every
// flag; Load builds its own.
func Flags() *flag.FlagSet {
	return newFlagSet(new(Config), new(problems)).fs
}

// flagSet is the FlagSet of `berth serve` and the sections its usage text
// shows, in the order the flags were defined.
type flagSet struct {
	fs       *flag.FlagSet
	sections []section
	// info holds, per flag name, what berth adds to the standard flag.
	info map[string]*flagInfo
	// problems receives the values that fail to parse, so that one bad flag
	// does not hide the others.
	problems *problems
}

type section struct {
	title string
	names []string
}

// flagInfo is what berth adds to a standard flag.
type flagInfo struct {
	// arg names the flag's value in the usage text ("host:port"); empty
	// for booleans.
	arg string
	// get reads the flag's current value, for the start-up log line.
	get func() any
}

// newFlagSet defines every flag of `berth serve`, bound to the fields of c,
// and sets those fields to their defaults: each flag's name, default and
// usage are written once, in its definition here or in the addXFlags
// function of its concern. The usage strings are Markdown (`code`), as the
// README's configuration table shows them; --help drops the backquotes.
func newFlagSet(c *Config, p *problems) *flagSet {
	s := &flagSet{
		fs:       flag.NewFlagSet("berth serve", flag.ContinueOnError),
		info:     map[string]*flagInfo{},
		problems: p,
	}
	// LoadWithOutput prints the usage text itself, and returns parse errors
	// rather than printing them, so the caller reports each problem once.
	s.fs.SetOutput(io.Discard)
	s.fs.Usage = func() {}

	s.section("Listeners")
	s.str(&c.Addr, "addr", "host:port", "127.0.0.1:8080",
		"Main listener: the API over Connect, gRPC and gRPC-Web (HTTP/1.1 and unencrypted HTTP/2), `/health` and `/ready`. Port 0 picks a free port.")
	s.fn("admin-addr", "host:port", "127.0.0.1:9090",
		"Admin listener serving Prometheus `/metrics` and Go's profiles under `/debug/pprof/` (heap, goroutines, CPU, traces: `go tool pprof http://127.0.0.1:9090/debug/pprof/heap`). Keep it off the public network. Empty or `off` disables it (use `off` in the environment, where an empty variable counts as unset).",
		func(v string) error {
			if strings.EqualFold(strings.TrimSpace(v), "off") {
				v = ""
			}
			c.AdminAddr = v
			return nil
		},
		func() any { return c.AdminAddr })

	s.section("Storage")
	s.str(&c.DataDir, "data-dir", "path", "./data",
		"Directory for the SQLite database and, by default, the JWT key and the workspace root. Made absolute against the working directory.")
	s.paths(&c.WorkspaceRoots, "workspace-root", "path",
		"Directory inside which workspace paths must lie. Repeat the flag for several roots; in the environment separate them with commas (or the path list separator, `"+string(os.PathListSeparator)+"`). Relative roots are made absolute against the working directory; `/` is refused.",
	).DefValue = "<data-dir>/workspaces"

	s.section("Logging")
	s.fn("log-format", "json|text", string(LogFormatJSON),
		"Log line encoding on stderr: `json` for collectors, `text` for people.",
		func(v string) error { return c.LogFormat.set(v) },
		func() any { return string(c.LogFormat) })
	s.fn("log-level", "debug|info|warn|error", "info",
		"Least severe level that is logged: `debug`, `info`, `warn` or `error`.",
		func(v string) error { return setLogLevel(&c.LogLevel, v) },
		func() any { return c.LogLevel.String() })

	s.section("Browsers and accounts")
	s.list(&c.AllowedOrigins, "allowed-origins", "origin,...",
		"Exact browser origins (`scheme://host[:port]`, no path) allowed to call the API from another origin, comma-separated; the flag may be repeated. Empty means same-origin only. `*` is refused: cross-origin calls carry credentials, and a wildcard would hand them to any site.")
	s.boolean(&c.AllowRegistration, "allow-registration", true,
		"Let anyone create an account with Register. With `--allow-registration=false`, only the very first account (the admin) can still be registered.")
	s.count(&c.PasswordHashMemoryMiB, "password-hash-memory", "MiB", 160,
		"Memory, in MiB, that password hashing (argon2id, for Register and Login) may take at once. Each hash is counted as 38 MiB (its 19 MiB, plus as much again of garbage until the next collection), and no more hashes run at once than there are CPUs: 160 allows 4. Callers beyond it wait up to 2 s, then get `UNAVAILABLE` (HTTP 503) with `Retry-After`. At least 38.")
	s.boolean(&c.SecureCookies, "secure-cookies", true,
		"Mark session cookies Secure (HTTPS only). Turn off only for plain-HTTP development on localhost.")
	s.str(&c.PublicURL, "public-url", "url", "",
		"Absolute http(s) URL at which browsers reach this server, such as `https://berth.example.com` (a trailing slash is dropped; no query or fragment). OIDC redirect URIs are `<public-url>/auth/oidc/<name>/callback`. When unset it is `http://` plus `--addr` (`localhost` for an unspecified host), which suits local development only; set it behind a proxy or TLS, and whenever `--addr` has port 0 and an OIDC provider is configured.",
	).DefValue = "http://<addr>"

	s.section("Tokens")
	s.str(&c.JWT.Issuer, "jwt-issuer", "string", "berth",
		"Issuer (`iss`) written into access tokens and required of them.")
	s.str(&c.JWT.Audience, "jwt-audience", "string", "berth-api",
		"Audience (`aud`) written into access tokens and required of them.")
	s.duration(&c.JWT.AccessTokenTTL, "access-token-ttl", 15*time.Minute,
		"Lifetime of an access token, between 1m and 24h. Keep it short: an access token cannot be revoked before it expires.")
	s.duration(&c.JWT.RefreshTokenTTL, "refresh-token-ttl", 30*24*time.Hour,
		"Lifetime of a refresh token; must be longer than `--access-token-ttl`. Each use rotates it.")
	s.str(&c.JWT.KeyFile, "jwt-key-file", "path", "",
		"PEM (PKCS #8) file holding the Ed25519 key that signs access tokens; generated with mode 0600 on first start when missing; a key file readable by others is refused. Made absolute against the working directory.",
	).DefValue = "<data-dir>/jwt-ed25519.pem"
	s.secret(&c.JWT.Key, "jwt-key", "pem",
		"The signing key itself (PEM, PKCS #8 Ed25519) instead of `--jwt-key-file`: every instance behind one address needs the same key, so hand it to each from a secret store (prefer the variable). Never logged.")

	s.section("HTTP limits")
	s.duration(&c.HTTP.ReadHeaderTimeout, "read-header-timeout", 10*time.Second,
		"Time allowed to read a request's headers; must be positive, or a client could hold a connection by sending them slowly.")
	s.duration(&c.HTTP.ReadTimeout, "read-timeout", 60*time.Second,
		"Time allowed to read a whole request, body included. 0 means none.")
	s.duration(&c.HTTP.WriteTimeout, "write-timeout", 0,
		"Time allowed to write a response. 0 (the default) means none, because server streams such as log tails stay open for hours; unary RPCs get their deadline per call instead.")
	s.duration(&c.HTTP.IdleTimeout, "idle-timeout", 120*time.Second,
		"How long a keep-alive connection may wait for its next request. 0 means none.")
	bytesFlag(s, &c.HTTP.MaxHeaderBytes, "max-header-bytes", 1<<20,
		"Largest request header block accepted, in bytes (1048576 is 1 MiB).")
	bytesFlag(s, &c.HTTP.MaxBodyBytes, "max-body-bytes", 4<<20,
		"Largest request body or stream message accepted (after decompression), in bytes (4194304 is 4 MiB); larger bodies get 413.")
	s.duration(&c.ShutdownTimeout, "shutdown-timeout", 30*time.Second,
		"After SIGINT or SIGTERM, time in-flight calls get to finish before connections are closed.")

	s.addWorkspaceFlags(c)
	s.addTaskFlags(c)
	s.addStreamFlags(c)
	s.addScaleFlags(c)
	s.addQuotaFlags(c)
	return s
}

func (s *flagSet) section(title string) {
	s.sections = append(s.sections, section{title: title})
}

// names returns every flag name in definition order.
func (s *flagSet) names() []string {
	var names []string
	for _, sec := range s.sections {
		names = append(names, sec.names...)
	}
	return names
}

// sort orders problems as the usage text orders their flags.
func (s *flagSet) sort(p problems) {
	order := map[string]int{}
	for i, name := range s.names() {
		order[name] = i
	}
	// Settings without a flag (OIDC providers) come after every flag.
	rank := func(e *FlagError) int {
		if i, ok := order[e.Flag]; ok {
			return i
		}
		return len(order)
	}
	slices.SortStableFunc(p, func(a, b *FlagError) int {
		return cmp.Compare(rank(a), rank(b))
	})
}

// applyEnv sets each flag that is not on the command line from its
// variable, when that is not empty.
func (s *flagSet) applyEnv(getenv func(string) string) {
	onCommandLine := map[string]bool{}
	s.fs.Visit(func(f *flag.Flag) { onCommandLine[f.Name] = true })
	s.fs.VisitAll(func(f *flag.Flag) {
		if onCommandLine[f.Name] {
			return
		}
		if env := getenv(EnvName(f.Name)); env != "" {
			f.Value.(*reported).setFromEnv(env)
		}
	})
}
