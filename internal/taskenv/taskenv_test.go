package taskenv_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/berthhq/berth/internal/taskenv"
)

// attacks are variables that were used to run commands on the host through
// a git task, or to steer the claude CLI next to the operator's key.
var attacks = map[string]string{
	"GIT_SSH_COMMAND":              "touch /tmp/pwned",
	"GIT_CONFIG_COUNT":             "1",
	"GIT_CONFIG_KEY_0":             "url.ext::sh -c touch% /tmp/pwned #.insteadOf",
	"GIT_CONFIG_VALUE_0":           "https://",
	"GIT_ALLOW_PROTOCOL":           "ext",
	"git_ssh_command":              "touch /tmp/pwned",
	"LD_PRELOAD":                   "/workspace/evil.so",
	"ld_library_path":              "/workspace",
	"DYLD_INSERT_LIBRARIES":        "/workspace/evil.dylib",
	"NODE_OPTIONS":                 "--require /workspace/evil.js",
	"NODE_TLS_REJECT_UNAUTHORIZED": "0",
	"ANTHROPIC_BASE_URL":           "http://evil.example",
	"ANTHROPIC_API_KEY":            "sk-mine",
	"Anthropic_Api_Key":            "sk-mine",
	"CLAUDE_CONFIG_DIR":            "/workspace/.claude",
	"SSH_AUTH_SOCK":                "/tmp/agent",
	"PATH":                         "/workspace/bin",
	"path":                         "/workspace/bin",
	"HOME":                         "/workspace",
	"http_proxy":                   "http://evil.example",
	"HTTPS_PROXY":                  "http://evil.example",
	"all_proxy":                    "socks5://evil.example",
	"BERTH_TASK_TAG":               "x",
	"berth_anything":               "x",
	"BASH_ENV":                     "/workspace/evil.sh",
	"ENV":                          "/workspace/evil.sh",
	"IFS":                          "/",
	"PYTHONSTARTUP":                "/workspace/evil.py",
	"GLIBC_TUNABLES":               "glibc.tune=1",
	"XDG_CONFIG_HOME":              "/workspace",
}

func mustRule(t testing.TB, deny, allow []string) *taskenv.Rule {
	t.Helper()
	r, err := taskenv.New(deny, allow)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestDefaultRuleRefusesAttacks(t *testing.T) {
	t.Parallel()
	r := mustRule(t, nil, nil)
	for k, v := range attacks {
		err := r.Check(k, v)
		var e *taskenv.Error
		if !errors.As(err, &e) || e.Key != k || e.Reason == "" {
			t.Errorf("%s=%s: got %v, want a refusal naming the key", k, v, err)
		}
	}
	if got := r.CheckAll(attacks); len(got) != len(attacks) {
		t.Errorf("CheckAll refused %d of %d", len(got), len(attacks))
	}
}

func TestDefaultRuleAcceptsPlainVariables(t *testing.T) {
	t.Parallel()
	r := mustRule(t, nil, nil)
	for k, v := range map[string]string{"MY_VAR": "1", "DEBUG": "true", "_x9": "", "CI": "1", "LANG": "C.UTF-8", "GITHUB_REF": "main", "NODEJS": "x"} {
		if err := r.Check(k, v); err != nil {
			t.Errorf("%s=%s refused: %v", k, v, err)
		}
	}
	if got := r.CheckAll(map[string]string{"A": "1", "B": "2"}); got != nil {
		t.Errorf("CheckAll = %v", got)
	}
}

func TestInvalidNamesAndValues(t *testing.T) {
	t.Parallel()
	r := mustRule(t, nil, []string{"*"}) // even allowing everything
	for _, kv := range [][2]string{
		{"", "x"}, {"1ABC", "x"}, {"A-B", "x"}, {"A=B", "x"}, {"A B", "x"}, {"Ä", "x"},
		{strings.Repeat("A", taskenv.MaxKeyLen+1), "x"}, {"OK", "a\x00b"},
	} {
		if err := r.Check(kv[0], kv[1]); err == nil {
			t.Errorf("%q=%q accepted", kv[0], kv[1])
		}
	}
	if err := r.Check(strings.Repeat("A", taskenv.MaxKeyLen), "x"); err != nil {
		t.Errorf("a name of the maximum length: %v", err)
	}
}

func TestOperatorWidensAndNarrows(t *testing.T) {
	t.Parallel()
	r := mustRule(t, []string{"*_token", "SECRET"}, []string{"PYTHONUNBUFFERED", "http_proxy", "GITHUB_TOKEN", "BERTH_*", "anthropic_api_key"})
	for k, want := range map[string]bool{
		"PYTHONUNBUFFERED":  true,  // allowed
		"PYTHONPATH":        false, // still the default
		"HTTP_PROXY":        true,  // allowed, whatever the case
		"https_proxy":       false,
		"MY_TOKEN":          false, // the operator's denial
		"GITHUB_TOKEN":      false, // the operator's denial beats the operator's allow
		"secret":            false,
		"BERTH_X":           false, // never allowed
		"ANTHROPIC_API_KEY": false, // never allowed
		"MY_VAR":            true,
	} {
		if err := r.Check(k, "v"); (err == nil) != want {
			t.Errorf("%s: err %v, want accepted=%v", k, err, want)
		}
	}
	if _, err := taskenv.New([]string{"[A-"}, nil); err == nil {
		t.Error("a malformed pattern was accepted")
	}
	if _, err := taskenv.New(nil, []string{"A/B"}); err == nil {
		t.Error("a pattern with / was accepted")
	}
}

// deniedPrefixes and deniedNames are what the default rule must always
// refuse, whatever the case of the name.
var (
	deniedPrefixes = []string{"GIT_", "LD_", "DYLD_", "NODE_", "SSH_", "ANTHROPIC_", "CLAUDE_", "BERTH_", "BASH_", "PYTHON"}
	deniedSuffixes = []string{"_PROXY"}
	deniedNames    = []string{"PATH", "HOME", "ENV", "IFS", "BASH_ENV", "SHELL"}
)

// FuzzEnvRule: whatever the default rule accepts is a valid variable name
// with no NUL in its value, and never one of the denied prefixes, suffixes
// or names, in any case. The seeds are the attacks above.
func FuzzEnvRule(f *testing.F) {
	for k, v := range attacks {
		f.Add(k, v)
	}
	f.Add("MY_VAR", "1")
	f.Add("Git_Dir", "/")
	f.Add("x_Proxy", "")
	f.Add("OK", "a\x00")
	r := mustRule(f, nil, nil)
	f.Fuzz(func(t *testing.T, key, value string) {
		if r.Check(key, value) != nil {
			return
		}
		if key == "" || len(key) > taskenv.MaxKeyLen || strings.IndexByte(value, 0) >= 0 {
			t.Fatalf("accepted %q=%q", key, value)
		}
		for i, c := range key {
			ok := c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || i > 0 && '0' <= c && c <= '9'
			if !ok {
				t.Fatalf("accepted the invalid name %q", key)
			}
		}
		up := strings.ToUpper(key)
		for _, p := range deniedPrefixes {
			if strings.HasPrefix(up, p) {
				t.Fatalf("accepted %q, which starts with %s", key, p)
			}
		}
		for _, s := range deniedSuffixes {
			if strings.HasSuffix(up, s) {
				t.Fatalf("accepted %q, which ends with %s", key, s)
			}
		}
		for _, n := range deniedNames {
			if up == n {
				t.Fatalf("accepted %q", key)
			}
		}
	})
}
