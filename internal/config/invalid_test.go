package config_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/berthhq/berth/internal/config"
)

func TestInvalid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		flag    string // the flag the error names
		value   string // the value it quotes
		problem string // part of what it says is wrong
	}{
		{"addr without port", []string{"--addr", "localhost"}, nil, "addr", "localhost", "missing port"},
		{"addr with bad port", []string{"--addr", "127.0.0.1:http"}, nil, "addr", "127.0.0.1:http", "port number"},
		{"addr port too large", []string{"--addr", ":70000"}, nil, "addr", ":70000", "port number"},
		{"addr bad host", []string{"--addr", "a b:80"}, nil, "addr", "a b:80", "host name"},
		{"empty addr", []string{"--addr="}, nil, "addr", "", "cannot be disabled"},
		{"bad addr from env", nil, map[string]string{"BERTH_ADDR": "8080"}, "addr", "8080", "want host:port"},
		{"admin addr bad", []string{"--admin-addr", "9090"}, nil, "admin-addr", "9090", "want host:port"},
		{"admin addr same as addr", []string{"--addr", ":8080", "--admin-addr", ":8080"}, nil, "admin-addr", ":8080", "own port"},
		{"log format", []string{"--log-format", "xml"}, nil, "log-format", "xml", "json or text"},
		{"log format from env", nil, map[string]string{"BERTH_LOG_FORMAT": "logfmt"}, "log-format", "logfmt", "json or text"},
		{"log level", []string{"--log-level", "verbose"}, nil, "log-level", "verbose", "debug, info, warn, error"},
		{"wildcard origin", []string{"--allowed-origins", "https://a.example.com,*"}, nil, "allowed-origins", "*", "credentials"},
		{"wildcard origin from env", nil, map[string]string{"BERTH_ALLOWED_ORIGINS": "*"}, "allowed-origins", "*", "never accepted"},
		{"null origin", []string{"--allowed-origins", "null"}, nil, "allowed-origins", "null", "sandboxed"},
		{"wildcard subdomain", []string{"--allowed-origins", "https://*.example.com"}, nil, "allowed-origins", "https://*.example.com", "wildcards"},
		{"origin with a path", []string{"--allowed-origins", "https://a.example.com/app"}, nil, "allowed-origins", "https://a.example.com/app", "no path"},
		{"origin with a trailing slash", []string{"--allowed-origins", "https://a.example.com/"}, nil, "allowed-origins", "https://a.example.com/", "trailing slash"},
		{"origin without scheme", []string{"--allowed-origins", "a.example.com"}, nil, "allowed-origins", "a.example.com", "http or https"},
		{"origin with query", []string{"--allowed-origins", "https://a.example.com?x=1"}, nil, "allowed-origins", "https://a.example.com?x=1", "no path, query"},
		{"access ttl too short", []string{"--access-token-ttl", "30s"}, nil, "access-token-ttl", "30s", "1m to 24h"},
		{"access ttl too long", []string{"--access-token-ttl", "25h", "--refresh-token-ttl", "48h"}, nil, "access-token-ttl", "25h", "1m to 24h"},
		{"refresh ttl equal to access", []string{"--access-token-ttl", "1h", "--refresh-token-ttl", "1h"}, nil, "refresh-token-ttl", "1h", "longer than --access-token-ttl (1h)"},
		{"refresh ttl shorter than access", []string{"--refresh-token-ttl", "10m"}, nil, "refresh-token-ttl", "10m", "longer than --access-token-ttl (15m)"},
		{"duration syntax", []string{"--read-timeout", "ten"}, nil, "read-timeout", "ten", "want a duration"},
		{"duration syntax from env", nil, map[string]string{"BERTH_SHUTDOWN_TIMEOUT": "30"}, "shutdown-timeout", "30", "want a duration"},
		{"negative duration", []string{"--idle-timeout", "-1s"}, nil, "idle-timeout", "-1s", "0 (no limit) or more"},
		{"zero read header timeout", []string{"--read-header-timeout", "0"}, nil, "read-header-timeout", "0s", "positive"},
		{"zero shutdown timeout", []string{"--shutdown-timeout", "0s"}, nil, "shutdown-timeout", "0s", "positive"},
		{"size with unit", []string{"--max-body-bytes", "4MiB"}, nil, "max-body-bytes", "4MiB", "whole number of bytes"},
		{"zero size", []string{"--max-header-bytes", "0"}, nil, "max-header-bytes", "0", "positive"},
		{"bool from env", nil, map[string]string{"BERTH_SECURE_COOKIES": "yes please"}, "secure-cookies", "yes please", "true or false"},
		{"empty issuer", []string{"--jwt-issuer", " "}, nil, "jwt-issuer", " ", "non-empty"},
		{"empty data dir", []string{"--data-dir="}, nil, "data-dir", "", "directory path"},
		{"empty workspace root", []string{"--workspace-root="}, nil, "workspace-root", "", "empty root"},
		{"root workspace root", []string{"--workspace-root", "/"}, nil, "workspace-root", "/", "any host directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := config.LoadWithOutput(tt.args, env(tt.env), new(bytes.Buffer))
			if err == nil {
				t.Fatalf("Load = %+v, want an error", c)
			}
			var fe *config.FlagError
			if !errors.As(err, &fe) {
				t.Fatalf("Load error %q holds no *config.FlagError", err)
			}
			if fe.Flag != tt.flag || fe.Value != tt.value || !strings.Contains(fe.Problem, tt.problem) {
				t.Errorf("FlagError = {Flag: %q, Value: %q, Problem: %q}, want {%q, %q, …%q…}", fe.Flag, fe.Value, fe.Problem, tt.flag, tt.value, tt.problem)
			}
			// The message names the flag and its variable and quotes the value.
			for _, want := range []string{"--" + tt.flag, config.EnvName(tt.flag), fmt.Sprintf("%q", tt.value)} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %s", err, want)
				}
			}
			if n := len(flagErrors(err)); n != 1 {
				t.Errorf("error reports %d problems, want 1:\n%v", n, err)
			}
		})
	}
}

func TestAllProblemsReportedTogether(t *testing.T) {
	t.Parallel()
	_, err := config.LoadWithOutput(
		[]string{"--addr", "nope", "--read-timeout", "soon", "--allowed-origins", "*", "--refresh-token-ttl", "1m"},
		env(map[string]string{"BERTH_LOG_FORMAT": "yaml", "BERTH_MAX_BODY_BYTES": "big"}),
		new(bytes.Buffer))
	if err == nil {
		t.Fatal("Load succeeded, want an error")
	}
	var got []string
	for _, fe := range flagErrors(err) {
		got = append(got, fe.Flag)
	}
	want := []string{"addr", "allowed-origins", "log-format", "max-body-bytes", "read-timeout", "refresh-token-ttl"}
	if !sameSet(got, want) {
		t.Errorf("problems reported for %q, want %q; error:\n%v", got, want, err)
	}
	if n := strings.Count(err.Error(), "\n"); n != len(want) {
		t.Errorf("error has %d lines after the first, want one per problem (%d):\n%v", n, len(want), err)
	}
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	seen := map[string]int{}
	for _, s := range a {
		seen[s]++
	}
	for _, s := range b {
		seen[s]--
	}
	for _, n := range seen {
		if n != 0 {
			return false
		}
	}
	return true
}

func TestCommandLineErrors(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"--no-such-flag"}, {"extra"}, {"--addr"}} {
		var out bytes.Buffer
		_, err := config.LoadWithOutput(args, nil, &out)
		if err == nil {
			t.Errorf("Load(%q) succeeded, want an error", args)
			continue
		}
		if !strings.Contains(err.Error(), "--help") {
			t.Errorf("Load(%q) error %q does not point to --help", args, err)
		}
		if out.Len() != 0 {
			t.Errorf("Load(%q) wrote %q; errors are returned, not printed", args, out.String())
		}
	}
}

func TestWorkspaceFlagsRejectNonsense(t *testing.T) {
	t.Parallel()
	_, err := config.LoadWithOutput([]string{
		"--runtime", "kubernetes", "--workspace-memory", "4096", "--workspace-max-memory", "1024",
		"--workspace-cpus", "-1", "--workspace-cap-add", "not a cap", "--workspace-image", "",
		"--workspace-image-allow", "python:3.*,registry.local/[team",
	}, func(string) string { return "" }, io.Discard)
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{"--runtime", "BERTH_RUNTIME", "--workspace-memory", "--workspace-cpus", "--workspace-cap-add", "--workspace-image", "--workspace-image-allow", "registry.local/[team"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %s:\n%v", want, err)
		}
	}
}

func TestScaleFlagsRejectNonsense(t *testing.T) {
	t.Parallel()
	_, err := config.LoadWithOutput([]string{
		"--database-url", "mysql://root:hunter2@db/berth", "--database-max-conns", "0",
		"--valkey-url", "http://:hunter2@cache:6379", "--task-lease", "10ms",
		"--rate-anonymous", "fast", "--rate-principal", "10", "--rate-task-create", "-1:2",
		"--trusted-proxies", "10.0.0.0/8,not-an-ip", "--jwt-key", "hunter2",
	}, func(string) string { return "" }, io.Discard)
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{"--database-url", "--database-max-conns", "--valkey-url", "--task-lease", "--rate-anonymous", "--rate-principal", "--rate-task-create", "--trusted-proxies", "rate:burst", "--jwt-key"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %s:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("a password from a URL was printed:\n%v", err)
	}
}

func TestTaskEnvFlags(t *testing.T) {
	t.Parallel()
	got := load(t, []string{"--task-env-deny", "A_*", "--task-env-deny", "B,C", "--task-env-allow", "http_proxy"}, nil)
	if !reflect.DeepEqual(got.Tasks.EnvDeny, []string{"A_*", "B", "C"}) || !reflect.DeepEqual(got.Tasks.EnvAllow, []string{"http_proxy"}) {
		t.Errorf("deny %q, allow %q", got.Tasks.EnvDeny, got.Tasks.EnvAllow)
	}
	_, err := config.LoadWithOutput([]string{"--task-env-deny", "[A-", "--task-env-allow", "A/B"}, func(string) string { return "" }, io.Discard)
	if err == nil {
		t.Fatal("malformed patterns accepted")
	}
	for _, want := range []string{"--task-env-deny", "BERTH_TASK_ENV_DENY", "--task-env-allow", "[A-", "A/B"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %s:\n%v", want, err)
		}
	}
}

func TestPasswordHashMemoryHoldsOneHash(t *testing.T) {
	t.Parallel()
	_, err := config.LoadWithOutput([]string{"--password-hash-memory", "37"}, func(string) string { return "" }, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--password-hash-memory") || !strings.Contains(err.Error(), "at least 38") {
		t.Fatalf("--password-hash-memory 37: %v, want a problem naming the flag and its minimum", err)
	}
	if _, err := config.LoadWithOutput([]string{"--password-hash-memory", "38"}, func(string) string { return "" }, io.Discard); err != nil {
		t.Fatalf("--password-hash-memory 38: %v", err)
	}
}
