// Package taskenv decides which environment variables a task's
// config.environment may set.
//
// A task's variables reach the processes berth runs for it: the claude CLI,
// which holds the operator's API key, and — before this rule — git, which
// on the process runtime runs on the host. A variable that changes how
// such a program behaves (GIT_SSH_COMMAND, LD_PRELOAD, NODE_OPTIONS,
// ANTHROPIC_BASE_URL, a proxy…) hands a workspace member the program, and
// whatever it holds. So the rule is a deny list of such variables, which
// the operator can widen (more patterns refused) or narrow (patterns
// allowed despite the defaults), and every name must be a plain variable
// name and every value free of NUL bytes.
//
// taskenv is a leaf package: the task service applies the rule when a task
// is created, and the runner again when it runs, so that a task stored
// under an older rule, or before a flag changed, cannot slip through.
package taskenv

import (
	"fmt"
	"path"
	"slices"
	"strings"
)

// MaxKeyLen bounds a variable name, as the API's validation does.
const MaxKeyLen = 128

// DefaultDeny lists the patterns refused unless the operator allows them.
// Patterns are shell globs (path.Match) matched against the whole name,
// case-insensitively: environ lookups are case-sensitive on Linux, but
// several programs read both spellings (curl and most HTTP clients read
// http_proxy and HTTP_PROXY), and refusing both costs nothing.
//
// Each group says what it protects:
var DefaultDeny = []string{
	// git: GIT_SSH_COMMAND, GIT_CONFIG_COUNT/KEY_n/VALUE_n (any config,
	// such as url rewrites to ext::), GIT_ALLOW_PROTOCOL, GIT_EXEC_PATH…
	// each runs a command of the caller's choosing.
	"GIT_*",
	// The dynamic linker (LD_PRELOAD, LD_LIBRARY_PATH, LD_AUDIT) and its
	// macOS twin load code into every program; GLIBC_TUNABLES and
	// GCONV_PATH reach into glibc the same way (CVE-2023-4911, iconv
	// modules loaded from GCONV_PATH).
	"LD_*", "DYLD_*", "GLIBC_TUNABLES", "GCONV_PATH", "LOCPATH", "NLSPATH", "MALLOC_*",
	// node, which the claude CLI is: NODE_OPTIONS=--require … runs code
	// next to the API key; NODE_TLS_REJECT_UNAUTHORIZED=0 and
	// NODE_EXTRA_CA_CERTS let a proxy read its traffic. npm_config_* sets
	// any npm option, script-shell included.
	"NODE_*", "NPM_CONFIG_*",
	// The claude CLI's own settings: ANTHROPIC_BASE_URL sends the
	// operator's key to another host; CLAUDE_* changes the CLI's
	// configuration directory and behaviour.
	"ANTHROPIC_*", "CLAUDE_*",
	// ssh (SSH_AUTH_SOCK, SSH_ASKPASS), which git uses for ssh:// URLs.
	"SSH_*",
	// Where programs are found and where they read their configuration
	// from: a task cannot point them at files it planted.
	"PATH", "HOME", "XDG_*", "SHELL", "TMPDIR",
	// Proxies (http_proxy, HTTPS_PROXY, ALL_PROXY, NO_PROXY) and the
	// certificate authorities TLS trusts: together they let a man in the
	// middle read what the CLI sends, API key included.
	"*_PROXY", "SSL_CERT_*", "*_CA_BUNDLE", "OPENSSL_*",
	// Shells: BASH_ENV and ENV name a file every non-interactive or sh
	// shell runs first; SHELLOPTS/BASHOPTS turn on options such as xtrace
	// (and PS4 is then evaluated); IFS and CDPATH change how scripts
	// split words and resolve cd; PROMPT_COMMAND and ZDOTDIR run code.
	"BASH_*", "BASHOPTS", "SHELLOPTS", "ENV", "IFS", "CDPATH", "PS4", "PROMPT_COMMAND", "ZDOTDIR",
	// Programs run through a pager or an editor: LESSOPEN runs a command
	// for every file less opens.
	"LESSOPEN", "LESSCLOSE", "PAGER", "EDITOR", "VISUAL",
	// Interpreters an agent's tools and hooks start: PYTHONSTARTUP,
	// PYTHONPATH, PERL5OPT, RUBYOPT, JAVA_TOOL_OPTIONS inject code into
	// every such process. A harmless one (PYTHONUNBUFFERED) can be allowed
	// with --task-env-allow.
	"PYTHON*", "PERL5*", "PERLLIB", "RUBYOPT", "RUBYLIB", "JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS", "JDK_JAVA_OPTIONS",
}

// fixedDeny lists what no operator setting allows: berth's own variables
// (the runtime's markers, the server's configuration) and the key berth
// gives the CLI, which a task must never replace or read back.
var fixedDeny = []string{"BERTH_*", "ANTHROPIC_API_KEY"}

// Error is a refused variable.
type Error struct {
	// Key is the variable's name as the task gave it.
	Key string
	// Reason says why it is refused, in words a person can act on.
	Reason string
}

// Error returns the key and the reason.
func (e *Error) Error() string { return fmt.Sprintf("environment variable %q: %s", e.Key, e.Reason) }

// Rule is a deny list with exceptions. The zero Rule refuses nothing but
// invalid names and values; use New.
type Rule struct {
	deny  []string // upper case
	allow []string // upper case
	extra []string // upper case: the operator's own denials, which allow does not lift
}

// New returns the default rule, widened by deny (more patterns refused)
// and narrowed by allow (patterns allowed although a default refuses
// them). A name the operator denies is refused even when allowed, and
// BERTH_* and ANTHROPIC_API_KEY always are. A malformed pattern is an
// error.
func New(deny, allow []string) (*Rule, error) {
	r := &Rule{deny: upper(DefaultDeny)}
	for _, list := range []struct {
		in  []string
		out *[]string
	}{{deny, &r.extra}, {allow, &r.allow}} {
		for _, p := range list.in {
			if err := ValidPattern(p); err != nil {
				return nil, err
			}
			*list.out = append(*list.out, strings.ToUpper(p))
		}
	}
	return r, nil
}

// ValidPattern reports whether p is a pattern New accepts: a non-empty
// glob (path.Match syntax) without "/".
func ValidPattern(p string) error {
	if p == "" || strings.Contains(p, "/") {
		return fmt.Errorf("pattern %q: want a glob over variable names, such as FOO_* or *_TOKEN", p)
	}
	if _, err := path.Match(strings.ToUpper(p), ""); err != nil {
		return fmt.Errorf("pattern %q: %w", p, err)
	}
	return nil
}

// Check returns an *Error for the variable key=value when the rule refuses
// it, and nil otherwise.
func (r *Rule) Check(key, value string) error {
	switch {
	case key == "":
		return &Error{Key: key, Reason: "a variable needs a name"}
	case len(key) > MaxKeyLen:
		return &Error{Key: key[:MaxKeyLen], Reason: fmt.Sprintf("a variable name is at most %d characters", MaxKeyLen)}
	case !validName(key):
		return &Error{Key: key, Reason: "a variable name is letters, digits and _, and does not start with a digit"}
	case strings.IndexByte(value, 0) >= 0:
		return &Error{Key: key, Reason: "a value cannot contain a NUL byte"}
	}
	name := strings.ToUpper(key)
	if p, ok := matchAny(fixedDeny, name); ok {
		return &Error{Key: key, Reason: fmt.Sprintf("berth sets %s variables itself (matches %s); a task cannot", p, p)}
	}
	if p, ok := matchAny(r.extra, name); ok {
		return &Error{Key: key, Reason: fmt.Sprintf("this server refuses variables matching %s (--task-env-deny)", p)}
	}
	if p, ok := matchAny(r.deny, name); ok {
		if _, allowed := matchAny(r.allow, name); !allowed {
			return &Error{Key: key, Reason: fmt.Sprintf(
				"variables matching %s change how git, the claude CLI, the dynamic linker, a shell or an interpreter behave, so a task cannot set them; remove it (an operator can allow it with --task-env-allow)", p)}
		}
	}
	return nil
}

// CheckAll checks every variable of env, in name order, and returns the
// refusals (nil when there are none).
func (r *Rule) CheckAll(env map[string]string) []*Error {
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var out []*Error
	for _, k := range keys {
		if err := r.Check(k, env[k]); err != nil {
			out = append(out, err.(*Error))
		}
	}
	return out
}

// validName reports whether s is [A-Za-z_][A-Za-z0-9_]*.
func validName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_', 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case '0' <= c && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return s != ""
}

// matchAny returns the first of patterns (upper case) that matches name
// (upper case).
func matchAny(patterns []string, name string) (string, bool) {
	for _, p := range patterns {
		if ok, _ := path.Match(p, name); ok {
			return p, true
		}
	}
	return "", false
}

func upper(in []string) []string {
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = strings.ToUpper(s)
	}
	return out
}
