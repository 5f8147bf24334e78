package config_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"log/slog"
	"strings"
	"testing"

	"github.com/berthhq/berth/internal/config"
)

func TestFlagTableListsEveryFlag(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	if err := config.WriteFlagTable(&b); err != nil {
		t.Fatal(err)
	}
	rows := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(rows) < 2 || rows[0] != "| flag | environment | default | meaning |" || rows[1] != "|---|---|---|---|" {
		t.Fatalf("table header:\n%s", b.String())
	}
	rows = rows[2:]
	n := 0
	config.Flags().VisitAll(func(f *flag.Flag) {
		if n >= len(rows) {
			t.Errorf("no row for --%s", f.Name)
			n++
			return
		}
		row := rows[n]
		n++
		want := "| `--" + f.Name + "` | `" + config.EnvName(f.Name) + "` | "
		if !strings.HasPrefix(row, want) {
			// VisitAll is in name order, the table in --help order: find it.
			row = ""
			for _, r := range rows {
				if strings.HasPrefix(r, want) {
					row = r
				}
			}
		}
		if row == "" {
			t.Errorf("no row starting %q", want)
			return
		}
		// Five unescaped bars: four cells, none broken by its text.
		if bars := strings.Count(row, "|") - strings.Count(row, `\|`); bars != 5 {
			t.Errorf("row for --%s has %d cell bars, want 5: %s", f.Name, bars, row)
		}
		if f.Usage == "" || !strings.Contains(row, f.Usage) {
			t.Errorf("row for --%s lacks its usage %q: %s", f.Name, f.Usage, row)
		}
	})
	if n != len(rows) {
		t.Errorf("table has %d rows, Flags() %d flags", len(rows), n)
	}
}

func TestFlagTableDefaults(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	if err := config.WriteFlagTable(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| `--addr` | `BERTH_ADDR` | `127.0.0.1:8080` |",
		"| `--access-token-ttl` | `BERTH_ACCESS_TOKEN_TTL` | `15m` |",
		"| `--workspace-root` | `BERTH_WORKSPACE_ROOT` | `<data-dir>/workspaces` |",
		"| `--allowed-origins` | `BERTH_ALLOWED_ORIGINS` | none |",
		"| `--max-connections` | `BERTH_MAX_CONNECTIONS` | 0 (derived) |",
		"| `--rate-auth-failures` | `BERTH_RATE_AUTH_FAILURES` | `0.2:10` |",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q", want)
		}
	}
}

// The standard parsers refuse surrounding spaces; the variables of numbers,
// durations, booleans and levels have always been trimmed.
func TestValuesTrimmed(t *testing.T) {
	t.Parallel()
	got := load(t, []string{"--log-level", " warn "}, map[string]string{
		"BERTH_WORKSPACE_MEMORY": " 512 ",
		"BERTH_WORKSPACE_CPUS":   " 1.5",
		"BERTH_TASK_TIMEOUT":     "10m ",
		"BERTH_SECURE_COOKIES":   " false",
		"BERTH_MAX_BODY_BYTES":   " 1024 ",
		"BERTH_RATE_PRINCIPAL":   " 5 : 10 ",
	})
	if got.LogLevel != slog.LevelWarn || got.Workspace.MemoryMB != 512 || got.Workspace.CPUs != 1.5 ||
		got.Tasks.Timeout.String() != "10m0s" || got.SecureCookies || got.HTTP.MaxBodyBytes != 1024 ||
		got.RateLimits.Principal != (config.Rate{PerSecond: 5, Burst: 10}) {
		t.Errorf("trimmed values not read: %+v", got)
	}
}

// A value that does not parse keeps the default (the standard parsers
// write their zero), so it is reported once and not again as a zero.
func TestBadValueKeepsDefault(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"--read-header-timeout", "soon"},
		{"--max-header-bytes", "lots"},
		{"--database-max-conns", "many"},
		{"--workspace-max-cpus", "all"},
	} {
		_, err := config.LoadWithOutput(args, nil, new(bytes.Buffer))
		if err == nil {
			t.Fatalf("%q accepted", args)
		}
		fes := flagErrors(err)
		if len(fes) != 1 || "--"+fes[0].Flag != args[0] || fes[0].Value != args[1] || !strings.HasPrefix(fes[0].Problem, "want a ") {
			t.Errorf("%q: %v", args, err)
		}
	}
}

func TestLogValueReadsTheConfig(t *testing.T) {
	t.Parallel()
	c := load(t, []string{"--addr", "127.0.0.1:7", "--jwt-key", "-----BEGIN PRIVATE KEY----- hunter2", "--trusted-proxies", "10.0.0.0/8"}, nil)
	before := *c
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("start", "config", c)
	var line struct {
		Config map[string]any `json:"config"`
	}
	if err := json.Unmarshal(logged.Bytes(), &line); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]any{
		"addr":             "127.0.0.1:7",
		"admin-addr":       "127.0.0.1:9090",
		"jwt-key":          true, // only whether it is set
		"database-url":     false,
		"access-token-ttl": "15m",
		"workspace-memory": float64(2048),
		"workspace-cpus":   float64(2),
		"rate-anonymous":   "20:40",
		"log-level":        "INFO",
		"log-format":       "json",
		"secure-cookies":   true,
	} {
		if got := line.Config[key]; got != want {
			t.Errorf("logged %s = %#v, want %#v", key, got, want)
		}
	}
	if got, _ := line.Config["trusted-proxies"].([]any); len(got) != 1 || got[0] != "10.0.0.0/8" {
		t.Errorf("logged trusted-proxies = %#v", line.Config["trusted-proxies"])
	}
	if strings.Contains(logged.String(), "hunter2") {
		t.Errorf("secret logged: %s", logged.String())
	}
	if c.Addr != before.Addr || c.JWT != before.JWT || c.DataDir != before.DataDir {
		t.Errorf("LogValue changed the config: %+v", c)
	}
}
