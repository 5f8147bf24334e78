package config_test

import (
	"bytes"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/berthhq/berth/internal/config"
)

// env returns a getenv that reads vars.
func env(vars map[string]string) func(string) string {
	return func(name string) string { return vars[name] }
}

// load calls Load and fails the test on an error.
func load(t *testing.T, args []string, vars map[string]string) *config.Config {
	t.Helper()
	c, err := config.LoadWithOutput(args, env(vars), new(bytes.Buffer))
	if err != nil {
		t.Fatalf("Load(%q, %v): %v", args, vars, err)
	}
	return c
}

// abs is filepath.Abs that fails the test on an error.
func abs(t *testing.T, path string) string {
	t.Helper()
	a, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// flagErrors returns every *config.FlagError in err's tree.
func flagErrors(err error) []*config.FlagError {
	var found []*config.FlagError
	var walk func(error)
	walk = func(err error) {
		if fe, ok := err.(*config.FlagError); ok {
			found = append(found, fe)
		}
		switch u := err.(type) {
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				walk(e)
			}
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		}
	}
	walk(err)
	return found
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	got := load(t, nil, nil)
	dataDir := abs(t, "data")
	want := &config.Config{
		Addr:                  "127.0.0.1:8080",
		AdminAddr:             "127.0.0.1:9090",
		DataDir:               dataDir,
		WorkspaceRoots:        []string{filepath.Join(dataDir, "workspaces")},
		LogFormat:             config.LogFormatJSON,
		LogLevel:              slog.LevelInfo,
		AllowedOrigins:        []string{},
		AllowRegistration:     true,
		PasswordHashMemoryMiB: 160,
		SecureCookies:         true,
		PublicURL:             "http://127.0.0.1:8080",
		JWT: config.JWT{
			Issuer:          "berth",
			Audience:        "berth-api",
			AccessTokenTTL:  15 * time.Minute,
			RefreshTokenTTL: 720 * time.Hour,
			KeyFile:         filepath.Join(dataDir, "jwt-ed25519.pem"),
		},
		HTTP: config.HTTP{
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       60 * time.Second,
			WriteTimeout:      0,
			IdleTimeout:       120 * time.Second,
			MaxHeaderBytes:    1 << 20,
			MaxBodyBytes:      4 << 20,
		},
		ShutdownTimeout: 30 * time.Second,
		Runtime:         config.RuntimeAuto,
		Workspace: config.Workspace{
			Image: "berth-workspace:latest", Network: "bridge", User: config.DefaultWorkspaceUser(),
			MemoryMB: 2048, CPUs: 2, Pids: 512, MaxMemoryMB: 16384, MaxCPUs: 8, MaxPids: 4096,
			IdleTimeout: 30 * time.Minute,
		},
		Tasks: config.Tasks{
			MaxRunning: 4, MaxRunningPerWorkspace: 1, Timeout: 30 * time.Minute, ClaudePath: "claude",
			ClaudeIdleTimeout: 5 * time.Minute, ClaudeMaxTurns: 50, LogRetention: 720 * time.Hour, BudgetPeriod: 720 * time.Hour,
			Lease: 30 * time.Second,
		},
		Streams:  config.Streams{Heartbeat: 15 * time.Second, StallTimeout: 30 * time.Second, WSPingInterval: 20 * time.Second},
		Database: config.Database{MaxConns: 20},
		Valkey:   config.Valkey{CacheTTL: time.Minute},
		RateLimits: config.RateLimits{
			Anonymous: config.Rate{PerSecond: 20, Burst: 40}, AuthFailures: config.Rate{PerSecond: 0.2, Burst: 10},
			Principal: config.Rate{PerSecond: 100, Burst: 200}, TaskCreate: config.Rate{PerSecond: 1, Burst: 20},
			WSCommand: config.Rate{PerSecond: 10, Burst: 20},
		},
		Quotas: config.Quotas{
			MaxStreamsPerUser: 64, MaxRunningPerUser: 2, MaxQueuedPerUser: 100, MaxWorkspacesPerUser: 50,
			MaxTaskLogBytes: 16 << 20,
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", got, want)
	}
}

func TestEnvTwins(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	got := load(t, nil, map[string]string{
		"BERTH_ADDR":                      "0.0.0.0:8081",
		"BERTH_ADMIN_ADDR":                "off",
		"BERTH_DATA_DIR":                  dir,
		"BERTH_LOG_FORMAT":                "text",
		"BERTH_LOG_LEVEL":                 "DEBUG",
		"BERTH_ALLOWED_ORIGINS":           "https://Console.Example.com:443, http://localhost:5173",
		"BERTH_ALLOW_REGISTRATION":        "false",
		"BERTH_SECURE_COOKIES":            "0",
		"BERTH_JWT_ISSUER":                "https://berth.example.com",
		"BERTH_JWT_AUDIENCE":              "aud",
		"BERTH_ACCESS_TOKEN_TTL":          "5m",
		"BERTH_REFRESH_TOKEN_TTL":         "24h",
		"BERTH_JWT_KEY_FILE":              "/etc/berth/key.pem",
		"BERTH_READ_HEADER_TIMEOUT":       "2s",
		"BERTH_READ_TIMEOUT":              "0",
		"BERTH_WRITE_TIMEOUT":             "1m",
		"BERTH_IDLE_TIMEOUT":              "3m",
		"BERTH_MAX_HEADER_BYTES":          "8192",
		"BERTH_MAX_BODY_BYTES":            "1024",
		"BERTH_SHUTDOWN_TIMEOUT":          "5s",
		"BERTH_RUNTIME":                   "process",
		"BERTH_WORKSPACE_IMAGE":           "img:1",
		"BERTH_WORKSPACE_NETWORK":         "none",
		"BERTH_WORKSPACE_USER":            "2000:2000",
		"BERTH_WORKSPACE_MEMORY":          "512",
		"BERTH_WORKSPACE_CPUS":            "0.5",
		"BERTH_WORKSPACE_PIDS":            "64",
		"BERTH_WORKSPACE_MAX_MEMORY":      "1024",
		"BERTH_WORKSPACE_MAX_CPUS":        "1",
		"BERTH_WORKSPACE_MAX_PIDS":        "128",
		"BERTH_WORKSPACE_CAP_ADD":         "chown, CAP_SETUID",
		"BERTH_WORKSPACE_IMAGE_ALLOW":     "python:3.*, registry.local/team/*",
		"BERTH_WORKSPACE_IDLE_TIMEOUT":    "0",
		"BERTH_MAX_RUNNING_TASKS":         "8",
		"BERTH_MAX_RUNNING_PER_WORKSPACE": "2",
		"BERTH_TASK_TIMEOUT":              "10m",
		"BERTH_CLAUDE_PATH":               "/opt/claude",
		"BERTH_CLAUDE_IDLE_TIMEOUT":       "1m",
		"BERTH_ANTHROPIC_API_KEY":         "sk-test-secret",
		"BERTH_LOG_RETENTION":             "0",
		"BERTH_BUDGET_USD":                "12.5",
		"BERTH_BUDGET_PERIOD":             "24h",
		"BERTH_STREAM_HEARTBEAT":          "5s",
		"BERTH_STREAM_STALL_TIMEOUT":      "1m",
		"BERTH_WS_PING_INTERVAL":          "250ms",
		"BERTH_DATABASE_URL":              "postgres://berth:pw@db.internal:5432/berth?sslmode=require",
		"BERTH_DATABASE_MAX_CONNS":        "50",
		"BERTH_VALKEY_URL":                "rediss://:pw@cache.internal:6380/2",
		"BERTH_TASK_LEASE":                "10s",
		"BERTH_CACHE_TTL":                 "30s",
		"BERTH_RATE_ANONYMOUS":            "5:10",
		"BERTH_RATE_AUTH_FAILURES":        "0.5:3",
		"BERTH_RATE_PRINCIPAL":            "0",
		"BERTH_RATE_TASK_CREATE":          "2:4",
		"BERTH_RATE_WS_COMMAND":           "1:1",
		"BERTH_TRUSTED_PROXIES":           "10.0.0.0/8, ::1, 10.0.0.0/8",
		"BERTH_TASK_ENV_DENY":             "*_TOKEN, secret",
		"BERTH_TASK_ENV_ALLOW":            "PYTHONUNBUFFERED",
		"BERTH_MAX_STREAMS_PER_USER":      "8",
		"BERTH_MAX_CONNECTIONS":           "500",
		"BERTH_MAX_RUNNING_PER_USER":      "1",
		"BERTH_MAX_QUEUED_PER_USER":       "0",
		"BERTH_MAX_WORKSPACES_PER_USER":   "3",
		"BERTH_MAX_TASK_LOG_BYTES":        "65536",
		"BERTH_PASSWORD_HASH_MEMORY":      "64",
	})
	want := &config.Config{
		Addr:                  "0.0.0.0:8081",
		AdminAddr:             "",
		DataDir:               dir,
		WorkspaceRoots:        []string{filepath.Join(dir, "workspaces")},
		LogFormat:             config.LogFormatText,
		LogLevel:              slog.LevelDebug,
		AllowedOrigins:        []string{"https://console.example.com", "http://localhost:5173"},
		AllowRegistration:     false,
		PasswordHashMemoryMiB: 64,
		SecureCookies:         false,
		PublicURL:             "http://localhost:8081",
		JWT: config.JWT{
			Issuer:          "https://berth.example.com",
			Audience:        "aud",
			AccessTokenTTL:  5 * time.Minute,
			RefreshTokenTTL: 24 * time.Hour,
			KeyFile:         "/etc/berth/key.pem",
		},
		HTTP: config.HTTP{
			ReadHeaderTimeout: 2 * time.Second,
			ReadTimeout:       0,
			WriteTimeout:      time.Minute,
			IdleTimeout:       3 * time.Minute,
			MaxHeaderBytes:    8192,
			MaxBodyBytes:      1024,
		},
		ShutdownTimeout: 5 * time.Second,
		Runtime:         config.RuntimeProcess,
		Workspace: config.Workspace{
			Image: "img:1", Network: "none", User: "2000:2000",
			MemoryMB: 512, CPUs: 0.5, Pids: 64, MaxMemoryMB: 1024, MaxCPUs: 1, MaxPids: 128,
			CapAdd:     []string{"CHOWN", "SETUID"},
			ImageAllow: []string{"python:3.*", "registry.local/team/*"},
		},
		Tasks: config.Tasks{
			MaxRunning: 8, MaxRunningPerWorkspace: 2, Timeout: 10 * time.Minute, ClaudePath: "/opt/claude",
			ClaudeIdleTimeout: time.Minute, ClaudeMaxTurns: 50, AnthropicAPIKey: "sk-test-secret", BudgetUSD: 12.5, BudgetPeriod: 24 * time.Hour,
			Lease: 10 * time.Second, EnvDeny: []string{"*_TOKEN", "secret"}, EnvAllow: []string{"PYTHONUNBUFFERED"},
		},
		Database: config.Database{URL: "postgres://berth:pw@db.internal:5432/berth?sslmode=require", MaxConns: 50},
		Valkey:   config.Valkey{URL: "rediss://:pw@cache.internal:6380/2", CacheTTL: 30 * time.Second},
		RateLimits: config.RateLimits{
			Anonymous: config.Rate{PerSecond: 5, Burst: 10}, AuthFailures: config.Rate{PerSecond: 0.5, Burst: 3},
			TaskCreate: config.Rate{PerSecond: 2, Burst: 4}, WSCommand: config.Rate{PerSecond: 1, Burst: 1},
			TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")},
		},
		Streams: config.Streams{Heartbeat: 5 * time.Second, StallTimeout: time.Minute, WSPingInterval: 250 * time.Millisecond},
		Quotas: config.Quotas{
			MaxStreamsPerUser: 8, MaxConnections: 500, MaxRunningPerUser: 1, MaxQueuedPerUser: 0, MaxWorkspacesPerUser: 3,
			MaxTaskLogBytes: 65536,
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("from the environment:\n got %+v\nwant %+v", got, want)
	}
}

func TestFlagBeatsEnv(t *testing.T) {
	t.Parallel()
	got := load(t,
		[]string{"--addr", "127.0.0.1:1", "--log-level=warn", "--allow-registration=true", "--workspace-root", "/srv/a", "--access-token-ttl=2m"},
		map[string]string{
			"BERTH_ADDR":               "127.0.0.1:2",
			"BERTH_LOG_LEVEL":          "error",
			"BERTH_ALLOW_REGISTRATION": "false",
			"BERTH_WORKSPACE_ROOT":     "/srv/b,/srv/c",
			"BERTH_ACCESS_TOKEN_TTL":   "not a duration", // never parsed: the flag is set
			"BERTH_LOG_FORMAT":         "text",           // no flag: the variable applies
		})
	if got.Addr != "127.0.0.1:1" {
		t.Errorf("Addr = %q, want the flag's 127.0.0.1:1", got.Addr)
	}
	if got.LogLevel != slog.LevelWarn {
		t.Errorf("LogLevel = %v, want the flag's WARN", got.LogLevel)
	}
	if !got.AllowRegistration {
		t.Error("AllowRegistration = false, want the flag's true")
	}
	if want := []string{"/srv/a"}; !reflect.DeepEqual(got.WorkspaceRoots, want) {
		t.Errorf("WorkspaceRoots = %q, want only the flag's %q", got.WorkspaceRoots, want)
	}
	if got.JWT.AccessTokenTTL != 2*time.Minute {
		t.Errorf("AccessTokenTTL = %v, want the flag's 2m", got.JWT.AccessTokenTTL)
	}
	if got.LogFormat != config.LogFormatText {
		t.Errorf("LogFormat = %q, want the variable's text", got.LogFormat)
	}
}

func TestWorkspaceRoots(t *testing.T) {
	t.Parallel()
	list := string(os.PathListSeparator)
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want []string
	}{
		{
			name: "repeated flag, in order, duplicates dropped",
			args: []string{"--workspace-root", "/srv/a", "--workspace-root=/srv/b/", "--workspace-root", "/srv/a"},
			want: []string{"/srv/a", "/srv/b"},
		},
		{
			name: "relative flag made absolute and cleaned",
			args: []string{"--workspace-root", "projects/../work/./x"},
			want: []string{abs(t, "work/x")},
		},
		{
			name: "variable split on commas and the path list separator",
			env:  map[string]string{"BERTH_WORKSPACE_ROOT": "/srv/a," + "/srv/b" + list + " rel ,,"},
			want: []string{"/srv/a", "/srv/b", abs(t, "rel")},
		},
		{
			name: "default follows the data directory",
			args: []string{"--data-dir", "/var/lib/berth"},
			want: []string{"/var/lib/berth/workspaces"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := load(t, tt.args, tt.env)
			if !reflect.DeepEqual(got.WorkspaceRoots, tt.want) {
				t.Errorf("WorkspaceRoots = %q, want %q", got.WorkspaceRoots, tt.want)
			}
		})
	}
}

func TestPathsMadeAbsolute(t *testing.T) {
	t.Parallel()
	got := load(t, []string{"--data-dir", "var/../state", "--jwt-key-file", "keys/jwt.pem"}, nil)
	if want := abs(t, "state"); got.DataDir != want {
		t.Errorf("DataDir = %q, want %q", got.DataDir, want)
	}
	if want := abs(t, "keys/jwt.pem"); got.JWT.KeyFile != want {
		t.Errorf("JWT.KeyFile = %q, want %q", got.JWT.KeyFile, want)
	}
}

func TestAllowedOrigins(t *testing.T) {
	t.Parallel()
	got := load(t, []string{
		"--allowed-origins", "https://A.example.com,http://localhost:5173",
		"--allowed-origins", "http://[::1]:80,https://a.example.com",
	}, nil)
	want := []string{"https://a.example.com", "http://localhost:5173", "http://[::1]"}
	if !reflect.DeepEqual(got.AllowedOrigins, want) {
		t.Errorf("AllowedOrigins = %q, want %q", got.AllowedOrigins, want)
	}
}

func TestAdminAddrDisabled(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"--admin-addr="}, {"--admin-addr", "off"}} {
		if got := load(t, args, nil); got.AdminAddr != "" {
			t.Errorf("%q: AdminAddr = %q, want empty (disabled)", args, got.AdminAddr)
		}
	}
}
