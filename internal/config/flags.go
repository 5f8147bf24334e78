package config

import (
	"cmp"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// EnvName returns the environment variable twin of a flag: BERTH_ plus the
// flag name in upper snake case, so "admin-addr" gives "BERTH_ADMIN_ADDR".
func EnvName(flagName string) string {
	return "BERTH_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Flags returns a new FlagSet holding every flag of `berth serve`, bound to a
// throwaway Config. It is for tests and documentation (the README's
// configuration table) that must see every flag; Load builds its own.
func Flags() *flag.FlagSet {
	var p problems
	return newFlagSet(defaults(), &p).fs
}

// flagSet is the FlagSet of `berth serve` and the sections its usage text
// shows, in the order the flags were defined.
type flagSet struct {
	fs       *flag.FlagSet
	sections []section
	// placeholders name each flag's value in the usage text ("host:port").
	placeholders map[string]string
	// problems receives the values that fail to parse, so that one bad flag
	// does not hide the others.
	problems *problems
}

type section struct {
	title string
	names []string
}

// newFlagSet defines every flag, bound to the fields of c, which must hold
// the defaults.
func newFlagSet(c *Config, p *problems) *flagSet {
	s := &flagSet{
		fs:           flag.NewFlagSet("berth serve", flag.ContinueOnError),
		placeholders: map[string]string{},
		problems:     p,
	}
	// LoadWithOutput prints the usage text itself, and returns parse errors
	// rather than printing them, so the caller reports each problem once.
	s.fs.SetOutput(io.Discard)
	s.fs.Usage = func() {}

	s.section("Listeners")
	s.add(&stringValue{&c.Addr}, "addr", "host:port", c.Addr,
		"Main listener: the API over Connect, gRPC and gRPC-Web (HTTP/1.1 and unencrypted HTTP/2), /health and /ready. Port 0 picks a free port.")
	s.add(&adminAddrValue{&c.AdminAddr}, "admin-addr", "host:port", c.AdminAddr,
		`Admin listener serving Prometheus /metrics. Keep it off the public network. Empty or "off" disables it (use "off" in the environment, where an empty variable counts as unset).`)

	s.section("Storage")
	s.add(&stringValue{&c.DataDir}, "data-dir", "path", c.DataDir,
		"Directory for the SQLite database and, by default, the JWT key and the workspace root. Made absolute against the working directory.")
	s.add(&pathListValue{&c.WorkspaceRoots}, "workspace-root", "path", "<data-dir>/workspaces",
		`Directory inside which workspace paths must lie. Repeat the flag for several roots; in the environment separate them with "," or "`+string(os.PathListSeparator)+`". Relative roots are made absolute against the working directory; "/" is refused.`)

	s.section("Logging")
	s.add(&logFormatValue{&c.LogFormat}, "log-format", "json|text", string(c.LogFormat),
		"Log line encoding on stderr: json for collectors, text for people.")
	s.add(&logLevelValue{&c.LogLevel}, "log-level", "debug|info|warn|error", "info",
		"Least severe level that is logged.")

	s.section("Browsers and accounts")
	s.add(&originListValue{&c.AllowedOrigins}, "allowed-origins", "origin,...", "",
		`Exact browser origins (scheme://host[:port], no path) allowed to call the API from another origin, comma-separated; the flag may be repeated. Empty means same-origin only. "*" is refused: cross-origin calls carry credentials, and a wildcard would hand them to any site.`)
	s.add(&boolValue{&c.AllowRegistration}, "allow-registration", "", strconv.FormatBool(c.AllowRegistration),
		"Let anyone create an account with Register. Use --allow-registration=false to close sign-ups.")
	s.add(&int64Value{&c.PasswordHashMemoryMiB}, "password-hash-memory", "MiB", strconv.FormatInt(c.PasswordHashMemoryMiB, 10),
		"Memory, in MiB, that password hashing (argon2id for Register and Login) may take at once. Each hash is counted as 38 MiB (its 19 MiB, plus as much again of garbage until the next collection), and no more hashes run at once than there are CPUs: 160 allows 4. Callers beyond it wait up to 2s, then get UNAVAILABLE (HTTP 503) with Retry-After. At least 38.")
	s.add(&boolValue{&c.SecureCookies}, "secure-cookies", "", strconv.FormatBool(c.SecureCookies),
		"Mark session cookies Secure (HTTPS only). Turn off only for plain-HTTP development on localhost.")
	s.add(&stringValue{&c.PublicURL}, "public-url", "url", "http://<addr>",
		"Absolute http(s) URL at which browsers reach this server, such as https://berth.example.com (a trailing slash is dropped; no query or fragment). OIDC redirect URIs are <public-url>/auth/oidc/<name>/callback. When unset it is http:// plus --addr (localhost for an unspecified host), which suits local development only; set it behind a proxy or TLS, and whenever --addr has port 0 and an OIDC provider is configured.")

	s.section("Tokens")
	s.add(&stringValue{&c.JWT.Issuer}, "jwt-issuer", "string", c.JWT.Issuer,
		"Issuer (iss) written into access tokens and required of them.")
	s.add(&stringValue{&c.JWT.Audience}, "jwt-audience", "string", c.JWT.Audience,
		"Audience (aud) written into access tokens and required of them.")
	s.add(&durationValue{&c.JWT.AccessTokenTTL}, "access-token-ttl", "duration", formatDuration(c.JWT.AccessTokenTTL),
		"Lifetime of an access token, between 1m and 24h. Keep it short: an access token cannot be revoked before it expires.")
	s.add(&durationValue{&c.JWT.RefreshTokenTTL}, "refresh-token-ttl", "duration", formatDuration(c.JWT.RefreshTokenTTL),
		"Lifetime of a refresh token; must be longer than --access-token-ttl. Each use rotates it.")
	s.add(&stringValue{&c.JWT.KeyFile}, "jwt-key-file", "path", "<data-dir>/jwt-ed25519.pem",
		"PEM file holding the Ed25519 key that signs access tokens; generated (mode 0600) on first start when missing. Made absolute against the working directory.")
	s.add(&secretValue{&c.JWT.Key}, "jwt-key", "pem", "",
		"The Ed25519 signing key itself, PEM (PKCS #8), instead of --jwt-key-file: every instance behind one address needs the same key, and a secret store can hand it to each (prefer the variable). Never logged.")

	s.section("HTTP limits")
	s.add(&durationValue{&c.HTTP.ReadHeaderTimeout}, "read-header-timeout", "duration", formatDuration(c.HTTP.ReadHeaderTimeout),
		"Time allowed to read a request's headers; must be positive, or a client could hold a connection by sending them slowly.")
	s.add(&durationValue{&c.HTTP.ReadTimeout}, "read-timeout", "duration", formatDuration(c.HTTP.ReadTimeout),
		"Time allowed to read a whole request, body included. 0 means none.")
	s.add(&durationValue{&c.HTTP.WriteTimeout}, "write-timeout", "duration", formatDuration(c.HTTP.WriteTimeout),
		"Time allowed to write a response. 0 (the default) means none, because server streams such as log tails stay open for hours; unary RPCs get their deadline per call instead.")
	s.add(&durationValue{&c.HTTP.IdleTimeout}, "idle-timeout", "duration", formatDuration(c.HTTP.IdleTimeout),
		"How long a keep-alive connection may wait for its next request. 0 means none.")
	s.add(&bytesValue[int]{&c.HTTP.MaxHeaderBytes}, "max-header-bytes", "bytes", strconv.Itoa(c.HTTP.MaxHeaderBytes),
		"Largest request header block accepted, in bytes (1048576 is 1MiB).")
	s.add(&bytesValue[int64]{&c.HTTP.MaxBodyBytes}, "max-body-bytes", "bytes", strconv.FormatInt(c.HTTP.MaxBodyBytes, 10),
		"Largest request body or stream message accepted, in bytes (4194304 is 4MiB).")
	s.add(&durationValue{&c.ShutdownTimeout}, "shutdown-timeout", "duration", formatDuration(c.ShutdownTimeout),
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

// add defines one flag. placeholder names its value in the usage text
// (empty for booleans) and def is the default as the usage text shows it.
func (s *flagSet) add(v value, name, placeholder, def, usage string) {
	s.fs.Var(&reported{value: v, name: name, problems: s.problems}, name, usage)
	s.fs.Lookup(name).DefValue = def
	s.placeholders[name] = placeholder
	last := &s.sections[len(s.sections)-1]
	last.names = append(last.names, name)
}

// sort orders problems as the usage text orders their flags.
func (s *flagSet) sort(p problems) {
	order := map[string]int{}
	for _, sec := range s.sections {
		for _, name := range sec.names {
			order[name] = len(order)
		}
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

const usageIntro = `Usage: berth serve [flags]

Serves the berth API on --addr and Prometheus metrics on --admin-addr until
SIGINT or SIGTERM, then shuts down gracefully.

Every flag has an environment variable twin, shown under it. A flag on the
command line wins over its variable, which wins over the default; an empty
variable counts as unset. Write --name value or --name=value; booleans as
--name or --name=false.

OIDC providers have no flags: each is a set of variables named after it,
BERTH_OIDC_<NAME>_ISSUER (required; it names the provider <name>, lower
case, in URLs), _CLIENT_ID and _CLIENT_SECRET (required), _SCOPES (default
"openid email profile", space or comma separated, must include openid) and
_DISPLAY_NAME (default the name). The redirect URI to register at the
provider is <public-url>/auth/oidc/<name>/callback.
`

// usage writes the help text: every flag under its section, with its
// variable and default.
func (s *flagSet) usage(w io.Writer) {
	var b strings.Builder
	b.WriteString(usageIntro)
	for _, sec := range s.sections {
		fmt.Fprintf(&b, "\n%s:\n", sec.title)
		for _, name := range sec.names {
			f := s.fs.Lookup(name)
			b.WriteString("  --" + name)
			if p := s.placeholders[name]; p != "" {
				b.WriteString(" " + p)
			}
			b.WriteString("\n")
			for _, line := range wrap(f.Usage, 72) {
				b.WriteString("      " + line + "\n")
			}
			def := f.DefValue
			if def == "" {
				def = "none"
			}
			fmt.Fprintf(&b, "      env %s; default %s\n", EnvName(name), def)
		}
	}
	// A help text that cannot be written has no one left to report to.
	_, _ = io.WriteString(w, b.String())
}

// wrap breaks text into lines of at most width columns at spaces.
func wrap(text string, width int) []string {
	var lines []string
	line := ""
	for _, word := range strings.Fields(text) {
		switch {
		case line == "":
			line = word
		case len(line)+1+len(word) > width:
			lines = append(lines, line)
			line = word
		default:
			line += " " + word
		}
	}
	if line != "" {
		lines = append(lines, line)
	}
	return lines
}

// formatDuration writes d without trailing zero units: 15m, not 15m0s.
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// value is what each flag's value implements: flag.Value, plus parsing of
// the environment variable, which for lists differs from the flag's.
type value interface {
	flag.Value
	setFromEnv(string) error
}

// reported wraps a flag's value so that a value that fails to parse becomes
// a FlagError in the load's problems instead of stopping the parse: every
// bad flag and variable is reported in one pass.
type reported struct {
	value
	name     string
	problems *problems
}

func (r *reported) Set(s string) error {
	if err := r.value.Set(s); err != nil {
		r.problems.add(r.name, s, "%v", err)
	}
	return nil
}

func (r *reported) setFromEnv(s string) {
	if err := r.value.setFromEnv(s); err != nil {
		r.problems.add(r.name, s, "%v", err)
	}
}

// IsBoolFlag lets a boolean flag be written without a value (--name).
func (r *reported) IsBoolFlag() bool {
	b, ok := r.value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

type stringValue struct{ p *string }

func (v *stringValue) String() string            { return *v.p }
func (v *stringValue) Set(s string) error        { *v.p = s; return nil }
func (v *stringValue) setFromEnv(s string) error { return v.Set(s) }

// adminAddrValue is a host:port where "off" means disabled, since an
// environment variable cannot be set to empty here.
type adminAddrValue struct{ p *string }

func (v *adminAddrValue) String() string { return *v.p }

func (v *adminAddrValue) Set(s string) error {
	if strings.EqualFold(strings.TrimSpace(s), "off") {
		s = ""
	}
	*v.p = s
	return nil
}

func (v *adminAddrValue) setFromEnv(s string) error { return v.Set(s) }

type boolValue struct{ p *bool }

func (v *boolValue) String() string   { return strconv.FormatBool(*v.p) }
func (v *boolValue) IsBoolFlag() bool { return true }

func (v *boolValue) Set(s string) error {
	b, err := strconv.ParseBool(strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("want true or false")
	}
	*v.p = b
	return nil
}

func (v *boolValue) setFromEnv(s string) error { return v.Set(s) }

type durationValue struct{ p *time.Duration }

func (v *durationValue) String() string { return formatDuration(*v.p) }

func (v *durationValue) Set(s string) error {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("want a duration such as 90s, 15m or 1h30m")
	}
	*v.p = d
	return nil
}

func (v *durationValue) setFromEnv(s string) error { return v.Set(s) }

// bytesValue is a size as a whole number of bytes.
type bytesValue[T int | int64] struct{ p *T }

func (v *bytesValue[T]) String() string { return strconv.FormatInt(int64(*v.p), 10) }

func (v *bytesValue[T]) Set(s string) error {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || int64(T(n)) != n {
		return fmt.Errorf("want a whole number of bytes such as 1048576")
	}
	*v.p = T(n)
	return nil
}

func (v *bytesValue[T]) setFromEnv(s string) error { return v.Set(s) }

type logFormatValue struct{ p *LogFormat }

func (v *logFormatValue) String() string { return string(*v.p) }

func (v *logFormatValue) Set(s string) error {
	switch f := LogFormat(strings.ToLower(strings.TrimSpace(s))); f {
	case LogFormatJSON, LogFormatText:
		*v.p = f
		return nil
	}
	return fmt.Errorf("want json or text")
}

func (v *logFormatValue) setFromEnv(s string) error { return v.Set(s) }

type logLevelValue struct{ p *slog.Level }

func (v *logLevelValue) String() string { return strings.ToLower(v.p.String()) }

func (v *logLevelValue) Set(s string) error {
	levels := map[string]slog.Level{
		"debug": slog.LevelDebug,
		"info":  slog.LevelInfo,
		"warn":  slog.LevelWarn,
		"error": slog.LevelError,
	}
	l, ok := levels[strings.ToLower(strings.TrimSpace(s))]
	if !ok {
		return fmt.Errorf("want one of debug, info, warn, error")
	}
	*v.p = l
	return nil
}

func (v *logLevelValue) setFromEnv(s string) error { return v.Set(s) }

// pathListValue is a repeatable path flag. Each flag gives one path; the
// variable gives a list separated by commas or the OS path list separator.
type pathListValue struct{ p *[]string }

func (v *pathListValue) String() string { return strings.Join(*v.p, ",") }

func (v *pathListValue) Set(s string) error {
	*v.p = append(*v.p, s)
	return nil
}

func (v *pathListValue) setFromEnv(s string) error {
	for _, part := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == os.PathListSeparator }) {
		if part = strings.TrimSpace(part); part != "" {
			*v.p = append(*v.p, part)
		}
	}
	return nil
}

// originListValue is a comma-separated, repeatable list of origins.
type originListValue struct{ p *[]string }

func (v *originListValue) String() string { return strings.Join(*v.p, ",") }

func (v *originListValue) Set(s string) error {
	for part := range strings.SplitSeq(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			*v.p = append(*v.p, part)
		}
	}
	return nil
}

func (v *originListValue) setFromEnv(s string) error { return v.Set(s) }
