package config

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"
)

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
			if arg := s.info[name].arg; arg != "" {
				b.WriteString(" " + arg)
			}
			b.WriteString("\n")
			// The usage is Markdown for the README; a terminal shows it
			// without the backquotes.
			for _, line := range wrap(strings.ReplaceAll(f.Usage, "`", ""), 72) {
				b.WriteString("      " + line + "\n")
			}
			fmt.Fprintf(&b, "      env %s; default %s\n", EnvName(name), shownDefault(f.DefValue))
		}
	}
	// A help text that cannot be written has no one left to report to.
	_, _ = io.WriteString(w, b.String())
}

// shownDefault is a flag's default as --help and the README show it.
func shownDefault(def string) string {
	if def == "" {
		return "none"
	}
	return def
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

// LogValue lists every setting under its flag name, for the start-up log
// line, read through the flag set so that no flag can be left out. It never
// prints a secret: a setting that holds one is typed Secret and logged only
// as whether it is set.
func (c *Config) LogValue() slog.Value {
	// The flag set is bound to a copy, which defining the flags resets to
	// the defaults; copying c in afterwards makes the flags read c's
	// values without writing to c.
	view := new(Config)
	s := newFlagSet(view, new(problems))
	*view = *c
	var attrs []slog.Attr
	for _, name := range s.names() {
		attrs = append(attrs, logAttr(name, s.info[name].get()))
	}
	attrs = append(attrs, slog.Attr{Key: "oidc", Value: oidcLogValue(c.OIDC)})
	return slog.GroupValue(attrs...)
}

func logAttr(name string, v any) slog.Attr {
	switch v := v.(type) {
	case Secret:
		return slog.Bool(name, v != "") // only whether it is set
	case time.Duration:
		return slog.String(name, formatDuration(v))
	case fmt.Stringer:
		return slog.String(name, v.String())
	default:
		return slog.Any(name, v)
	}
}

// WriteFlagTable writes the README's configuration table, in Markdown: one
// row per flag of `berth serve`, in the order of --help, with its variable,
// its default and its usage. A default written as a phrase (it holds a
// space) is shown as it is; a plain value is set as code.
func WriteFlagTable(w io.Writer) error {
	s := newFlagSet(new(Config), new(problems))
	var b strings.Builder
	b.WriteString("| flag | environment | default | meaning |\n|---|---|---|---|\n")
	for _, name := range s.names() {
		f := s.fs.Lookup(name)
		def := shownDefault(f.DefValue)
		if f.DefValue != "" && !strings.Contains(def, " ") {
			def = "`" + def + "`"
		}
		fmt.Fprintf(&b, "| `--%s` | `%s` | %s | %s |\n", name, EnvName(name), cell(def), cell(f.Usage))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// cell escapes what would end a Markdown table cell.
func cell(s string) string {
	return strings.ReplaceAll(s, "|", `\|`)
}
