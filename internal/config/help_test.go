package config_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/berthhq/berth/internal/config"
)

func TestHelpListsEveryFlag(t *testing.T) {
	t.Parallel()
	for _, arg := range []string{"--help", "-h"} {
		var out bytes.Buffer
		c, err := config.LoadWithOutput([]string{arg}, nil, &out)
		if !errors.Is(err, flag.ErrHelp) {
			t.Fatalf("Load(%s) = %v, %v; want flag.ErrHelp", arg, c, err)
		}
		help := out.String()
		n := 0
		config.Flags().VisitAll(func(f *flag.Flag) {
			n++
			// Each flag's entry: its name line, its usage, then its variable
			// and default.
			entry := entryOf(help, "--"+f.Name)
			if entry == "" {
				t.Errorf("%s: help does not list --%s:\n%s", arg, f.Name, help)
				return
			}
			def := f.DefValue
			if def == "" {
				def = "none"
			}
			if want := "env " + config.EnvName(f.Name) + "; default " + def; !strings.Contains(entry, want) {
				t.Errorf("%s: help entry for --%s lacks %q:\n%s", arg, f.Name, want, entry)
			}
		})
		if n < 21 {
			t.Errorf("Flags() has %d flags, want at least 21", n)
		}
	}
}

// entryOf returns the lines of help that describe the flag named by
// heading: the line that starts with it and the indented lines under it.
func entryOf(help, heading string) string {
	lines := strings.Split(help, "\n")
	for i, line := range lines {
		if line != "  "+heading && !strings.HasPrefix(line, "  "+heading+" ") {
			continue
		}
		end := i + 1
		for end < len(lines) && strings.HasPrefix(lines[end], "      ") {
			end++
		}
		return strings.Join(lines[i:end], "\n")
	}
	return ""
}

func TestHelpDefaults(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if _, err := config.LoadWithOutput([]string{"-help"}, nil, &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("err = %v, want flag.ErrHelp", err)
	}
	for flagName, def := range map[string]string{
		"addr":              "127.0.0.1:8080",
		"workspace-root":    "<data-dir>/workspaces",
		"jwt-key-file":      "<data-dir>/jwt-ed25519.pem",
		"refresh-token-ttl": "720h",
		"access-token-ttl":  "15m",
		"write-timeout":     "0s",
		"allowed-origins":   "none",
		"max-body-bytes":    "4194304",
	} {
		if want := "default " + def + "\n"; !strings.Contains(entryOf(out.String(), "--"+flagName)+"\n", want) {
			t.Errorf("help for --%s does not show %q", flagName, want)
		}
	}
}

func TestLogValueListsEveryFlag(t *testing.T) {
	t.Parallel()
	c := load(t, nil, nil)
	keys := map[string]bool{}
	for _, a := range c.LogValue().Group() {
		keys[a.Key] = true
	}
	config.Flags().VisitAll(func(f *flag.Flag) {
		if !keys[f.Name] {
			t.Errorf("LogValue has no %q: add it, redacted if it is a secret", f.Name)
		}
	})
}

func TestEnvName(t *testing.T) {
	t.Parallel()
	for flagName, want := range map[string]string{
		"addr":              "BERTH_ADDR",
		"admin-addr":        "BERTH_ADMIN_ADDR",
		"refresh-token-ttl": "BERTH_REFRESH_TOKEN_TTL",
	} {
		if got := config.EnvName(flagName); got != want {
			t.Errorf("EnvName(%q) = %q, want %q", flagName, got, want)
		}
	}
}

func TestSecretNeverPrinted(t *testing.T) {
	t.Parallel()
	const value = "hunter2"
	s := config.Secret(value)
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("start", "key", s)
	encoded, err := json.Marshal(struct{ Key config.Secret }{s})
	if err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{
		fmt.Sprint(s), fmt.Sprintf("%v %s %+v %#v %q", s, s, s, s, s), logged.String(), string(encoded),
	} {
		if strings.Contains(out, value) {
			t.Errorf("secret printed: %s", out)
		}
		if !strings.Contains(out, "[redacted]") {
			t.Errorf("secret not marked redacted: %s", out)
		}
	}
	if s.Reveal() != value {
		t.Errorf("Reveal() = %q, want %q", s.Reveal(), value)
	}
	if config.Secret("").String() != "" {
		t.Error("an empty secret should print as empty, so that whether it is set stays visible")
	}
}
