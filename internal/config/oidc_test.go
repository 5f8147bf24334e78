package config_test

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"testing"

	"github.com/berthhq/berth/internal/config"
)

// loadEnv calls LoadEnv with environ and fails the test on an error.
func loadEnv(t *testing.T, args []string, environ ...string) *config.Config {
	t.Helper()
	c, err := config.LoadEnv(args, environ, new(bytes.Buffer))
	if err != nil {
		t.Fatalf("LoadEnv(%q, %q): %v", args, environ, err)
	}
	return c
}

func TestOIDCProviders(t *testing.T) {
	t.Parallel()
	c := loadEnv(t, []string{"--public-url", "https://berth.example.com/"},
		"PATH=/usr/bin",
		"BERTH_OIDC_GOOGLE_ISSUER=https://accounts.google.com",
		"BERTH_OIDC_GOOGLE_CLIENT_ID=berth.apps.googleusercontent.com",
		"BERTH_OIDC_GOOGLE_CLIENT_SECRET=g-secret",
		"BERTH_OIDC_GOOGLE_DISPLAY_NAME=Google",
		"BERTH_OIDC_Corp_Sso_ISSUER= https://sso.corp.example/realms/main ",
		"BERTH_OIDC_Corp_Sso_CLIENT_ID=berth",
		"BERTH_OIDC_Corp_Sso_CLIENT_SECRET=c-secret",
		"BERTH_OIDC_Corp_Sso_SCOPES=openid, groups,email openid",
		"BERTH_OIDC_UNUSED_ISSUER=", // empty counts as unset
	)
	want := []config.OIDCProvider{
		{
			Name:         "corp_sso",
			DisplayName:  "corp_sso",
			Issuer:       "https://sso.corp.example/realms/main",
			ClientID:     "berth",
			ClientSecret: "c-secret",
			Scopes:       []string{"openid", "groups", "email"},
		},
		{
			Name:         "google",
			DisplayName:  "Google",
			Issuer:       "https://accounts.google.com",
			ClientID:     "berth.apps.googleusercontent.com",
			ClientSecret: "g-secret",
			Scopes:       []string{"openid", "email", "profile"},
		},
	}
	if !reflect.DeepEqual(c.OIDC, want) {
		t.Errorf("OIDC =\n %+v\nwant\n %+v", c.OIDC, want)
	}
	if c.PublicURL != "https://berth.example.com" {
		t.Errorf("PublicURL = %q, want the trailing slash trimmed", c.PublicURL)
	}
	if got, want := c.OIDC[1].RedirectURI(c.PublicURL), "https://berth.example.com/auth/oidc/google/callback"; got != want {
		t.Errorf("RedirectURI = %q, want %q", got, want)
	}
}

func TestLoadEnvReadsFlagVariables(t *testing.T) {
	t.Parallel()
	c := loadEnv(t, []string{"--log-level", "warn"},
		"BERTH_ADDR=127.0.0.1:7000", "BERTH_LOG_LEVEL=error", "BERTH_ADDR=127.0.0.1:7001")
	if c.Addr != "127.0.0.1:7001" {
		t.Errorf("Addr = %q, want the last BERTH_ADDR entry", c.Addr)
	}
	if c.LogLevel != slog.LevelWarn {
		t.Errorf("LogLevel = %v, want the flag's WARN", c.LogLevel)
	}
	if c.PublicURL != "http://127.0.0.1:7001" {
		t.Errorf("PublicURL = %q, want it derived from --addr", c.PublicURL)
	}
	if c.OIDC != nil {
		t.Errorf("OIDC = %+v, want none", c.OIDC)
	}
}

func TestLoadWithoutEnvironHasNoOIDC(t *testing.T) {
	t.Parallel()
	// A getenv cannot list variables, so Load finds no provider even where
	// getenv would answer for one.
	c := load(t, nil, map[string]string{
		"BERTH_OIDC_X_ISSUER":        "https://x.example.com",
		"BERTH_OIDC_X_CLIENT_ID":     "berth",
		"BERTH_OIDC_X_CLIENT_SECRET": "s",
	})
	if c.OIDC != nil {
		t.Errorf("OIDC = %+v, want none from Load", c.OIDC)
	}
}

func TestPublicURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		want string
	}{
		{nil, "http://127.0.0.1:8080"},
		{[]string{"--addr", ":9000"}, "http://localhost:9000"},
		{[]string{"--addr", "0.0.0.0:9000"}, "http://localhost:9000"},
		{[]string{"--addr", "[::]:9000"}, "http://localhost:9000"},
		{[]string{"--addr", "[::1]:9000"}, "http://[::1]:9000"},
		{[]string{"--addr", "berth.internal:9000"}, "http://berth.internal:9000"},
		{[]string{"--addr", "127.0.0.1:0"}, ""},
		{[]string{"--public-url", "https://berth.example.com//"}, "https://berth.example.com"},
		{[]string{"--public-url", "https://example.com/berth/"}, "https://example.com/berth"},
		{[]string{"--public-url", "http://localhost:5173"}, "http://localhost:5173"},
	}
	for _, tt := range tests {
		if got := loadEnv(t, tt.args).PublicURL; got != tt.want {
			t.Errorf("%q: PublicURL = %q, want %q", tt.args, got, tt.want)
		}
	}
	// The variable twin works like every other.
	if got := loadEnv(t, nil, "BERTH_PUBLIC_URL=https://b.example.com/").PublicURL; got != "https://b.example.com" {
		t.Errorf("from BERTH_PUBLIC_URL: PublicURL = %q", got)
	}
}

// provider returns the variables of a valid provider named name.
func provider(name string) []string {
	return []string{
		"BERTH_OIDC_" + name + "_ISSUER=https://" + strings.ToLower(name) + ".example.com",
		"BERTH_OIDC_" + name + "_CLIENT_ID=berth",
		"BERTH_OIDC_" + name + "_CLIENT_SECRET=hunter2",
	}
}

func TestOIDCInvalid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		args    []string
		environ []string
		env     string // the variable the error names ("" for a flag)
		flag    string // or the flag
		value   string // the value it quotes
		problem string // part of what it says is wrong
	}{
		{"issuer not a URL", nil, []string{"BERTH_OIDC_A_ISSUER=accounts.example.com", "BERTH_OIDC_A_CLIENT_ID=c", "BERTH_OIDC_A_CLIENT_SECRET=s"},
			"BERTH_OIDC_A_ISSUER", "", "accounts.example.com", "http or https"},
		{"issuer without host", nil, []string{"BERTH_OIDC_A_ISSUER=https:///x", "BERTH_OIDC_A_CLIENT_ID=c", "BERTH_OIDC_A_CLIENT_SECRET=s"},
			"BERTH_OIDC_A_ISSUER", "", "https:///x", "host is missing"},
		{"issuer with query", nil, []string{"BERTH_OIDC_A_ISSUER=https://a.example.com?x=1", "BERTH_OIDC_A_CLIENT_ID=c", "BERTH_OIDC_A_CLIENT_SECRET=s"},
			"BERTH_OIDC_A_ISSUER", "", "https://a.example.com?x=1", "no query or fragment"},
		{"no client id", nil, []string{"BERTH_OIDC_A_ISSUER=https://a.example.com", "BERTH_OIDC_A_CLIENT_SECRET=s"},
			"BERTH_OIDC_A_CLIENT_ID", "", "", "required"},
		{"blank client id", nil, []string{"BERTH_OIDC_A_ISSUER=https://a.example.com", "BERTH_OIDC_A_CLIENT_ID= ", "BERTH_OIDC_A_CLIENT_SECRET=s"},
			"BERTH_OIDC_A_CLIENT_ID", "", "", "required"},
		{"no secret", nil, []string{"BERTH_OIDC_A_ISSUER=https://a.example.com", "BERTH_OIDC_A_CLIENT_ID=c"},
			"BERTH_OIDC_A_CLIENT_SECRET", "", "", "required"},
		{"scopes without openid", nil, append(provider("A"), "BERTH_OIDC_A_SCOPES=email profile"),
			"BERTH_OIDC_A_SCOPES", "", "email profile", `includes "openid"`},
		{"name with a dot", nil, provider("A.B"),
			"BERTH_OIDC_A.B_ISSUER", "", "https://a.b.example.com", "only letters, digits"},
		{"empty name", nil, provider(""),
			"BERTH_OIDC__ISSUER", "", "https://.example.com", "names no OIDC provider"},
		{"same name twice", nil, append(provider("Okta"), provider("OKTA")...),
			"BERTH_OIDC_Okta_ISSUER", "", "https://okta.example.com", "not case-sensitive"},
		{"variable without issuer", nil, []string{"BERTH_OIDC_GITLAB_CLIENT_ID=berth"},
			"BERTH_OIDC_GITLAB_CLIENT_ID", "", "berth", "no BERTH_OIDC_GITLAB_ISSUER"},
		{"secret without issuer is not quoted", nil, []string{"BERTH_OIDC_GITLAB_CLIENT_SECRET=hunter2"},
			"BERTH_OIDC_GITLAB_CLIENT_SECRET", "", "", "no BERTH_OIDC_GITLAB_ISSUER"},
		{"unknown variable", nil, append(provider("A"), "BERTH_OIDC_A_CLIENTSECRET=hunter2"),
			"BERTH_OIDC_A_CLIENTSECRET", "", "", "not a known setting"},
		{"public url scheme", []string{"--public-url", "ftp://berth.example.com"}, nil,
			"", "public-url", "ftp://berth.example.com", "http or https"},
		{"public url relative", []string{"--public-url", "/berth"}, nil,
			"", "public-url", "/berth", "http or https"},
		{"public url with query", []string{"--public-url", "https://b.example.com/?x=1"}, nil,
			"", "public-url", "https://b.example.com/?x=1", "no query or fragment"},
		{"public url with fragment", []string{"--public-url", "https://b.example.com#top"}, nil,
			"", "public-url", "https://b.example.com#top", "no query or fragment"},
		{"public url with user", []string{"--public-url", "https://me:pw@b.example.com"}, nil,
			"", "public-url", "https://me:pw@b.example.com", "user name"},
		{"public url not derivable", []string{"--addr", "127.0.0.1:0"}, provider("A"),
			"", "public-url", "", "cannot be derived"},
		{"plain http public url with secure cookies", []string{"--public-url", "http://berth.example.com"}, provider("A"),
			"", "public-url", "http://berth.example.com", "drop the sign-in cookies"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := config.LoadEnv(tt.args, tt.environ, new(bytes.Buffer))
			if err == nil {
				t.Fatalf("LoadEnv = %+v, want an error", c)
			}
			fe, ok := errors.AsType[*config.FlagError](err)
			if !ok {
				t.Fatalf("error %q holds no *config.FlagError", err)
			}
			if fe.Env != tt.env || fe.Flag != tt.flag || fe.Value != tt.value || !strings.Contains(fe.Problem, tt.problem) {
				t.Errorf("FlagError = {Env: %q, Flag: %q, Value: %q, Problem: %q}, want {%q, %q, %q, …%q…}",
					fe.Env, fe.Flag, fe.Value, fe.Problem, tt.env, tt.flag, tt.value, tt.problem)
			}
			name := tt.env
			if name == "" {
				name = config.EnvName(tt.flag)
			}
			for _, want := range []string{name, fmt.Sprintf("%q", tt.value)} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %s", err, want)
				}
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error prints a client secret: %v", err)
			}
			if n := len(flagErrors(err)); n != 1 {
				t.Errorf("error reports %d problems, want 1:\n%v", n, err)
			}
		})
	}
}

func TestOIDCProblemsReportedTogether(t *testing.T) {
	t.Parallel()
	_, err := config.LoadEnv([]string{"--addr", "nope"}, []string{
		"BERTH_OIDC_A_ISSUER=not a url",
		"BERTH_OIDC_A_SCOPES=email",
		"BERTH_OIDC_B_ISSUER=https://b.example.com",
		"BERTH_OIDC_B_CLIENT_ID=berth",
		"BERTH_OIDC_B_CLIENT_SECRET=s",
		"BERTH_LOG_FORMAT=yaml",
	}, new(bytes.Buffer))
	if err == nil {
		t.Fatal("LoadEnv succeeded, want an error")
	}
	var got []string
	for _, fe := range flagErrors(err) {
		got = append(got, fe.Flag+fe.Env)
	}
	// Flags first, in help order, then the variables without a flag. The
	// public URL cannot be derived from the bad --addr, but that is
	// reported once, as --addr.
	want := []string{"addr", "log-format", "BERTH_OIDC_A_ISSUER", "BERTH_OIDC_A_CLIENT_ID", "BERTH_OIDC_A_CLIENT_SECRET", "BERTH_OIDC_A_SCOPES"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("problems reported for %q, want %q in that order; error:\n%v", got, want, err)
	}
}

func TestOIDCSecretNeverPrinted(t *testing.T) {
	t.Parallel()
	c := loadEnv(t, nil, provider("A")...)
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("start", "config", c)
	for _, out := range []string{logged.String(), fmt.Sprintf("%v %+v %#v", c, c, c), fmt.Sprintf("%+v", c.OIDC)} {
		if strings.Contains(out, "hunter2") {
			t.Errorf("client secret printed: %s", out)
		}
	}
	for _, want := range []string{`"oidc":{"a":{`, `"issuer":"https://a.example.com"`, `"client-id":"berth"`, `"scopes":["openid","email","profile"]`} {
		if !strings.Contains(logged.String(), want) {
			t.Errorf("start-up log line lacks %s:\n%s", want, logged.String())
		}
	}
	if c.OIDC[0].ClientSecret.Reveal() != "hunter2" {
		t.Errorf("ClientSecret.Reveal() = %q", c.OIDC[0].ClientSecret.Reveal())
	}
}

func TestHelpExplainsOIDC(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if _, err := config.LoadEnv([]string{"--help"}, nil, &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("err = %v, want flag.ErrHelp", err)
	}
	help := out.String()
	for _, want := range []string{"BERTH_OIDC_<NAME>_ISSUER", "_CLIENT_SECRET", "/auth/oidc/<name>/callback"} {
		if !strings.Contains(help, want) {
			t.Errorf("help lacks %q", want)
		}
	}
	if entry := entryOf(help, "--public-url"); !strings.Contains(entry, "default http://<addr>") {
		t.Errorf("help entry for --public-url:\n%s", entry)
	}
	for i, line := range strings.Split(help, "\n") {
		if len(line) > 80 {
			t.Errorf("help line %d is %d columns wide: %q", i+1, len(line), line)
		}
	}
}
