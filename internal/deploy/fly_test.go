package deploy

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berthhq/berth/internal/config"
)

// parseTOML reads the subset of TOML fly.toml uses: [tables],
// [[arrays.of.tables]], and key = value lines whose value is a basic
// "string", an integer or a boolean, with # comments. Keys come back
// flattened: "http_service.internal_port", "http_service.checks.0.path".
// Anything else is an error, so a file the reader would misread fails the
// test rather than passing it.
func parseTOML(text string) (map[string]any, error) {
	out := map[string]any{}
	prefix := ""
	arrays := map[string]int{} // array of tables → entries so far
	for n, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(stripComment(line))
		if line == "" {
			continue
		}
		bad := func(format string, args ...any) error {
			return fmt.Errorf("line %d: %q: %s", n+1, line, fmt.Sprintf(format, args...))
		}
		switch {
		case strings.HasPrefix(line, "[["):
			name, ok := strings.CutSuffix(line[2:], "]]")
			if !ok {
				return nil, bad("unclosed [[")
			}
			name = strings.TrimSpace(name)
			prefix = name + "." + strconv.Itoa(arrays[name]) + "."
			arrays[name]++
		case strings.HasPrefix(line, "["):
			name, ok := strings.CutSuffix(line[1:], "]")
			if !ok {
				return nil, bad("unclosed [")
			}
			prefix = strings.TrimSpace(name) + "."
		default:
			key, raw, ok := strings.Cut(line, "=")
			if !ok {
				return nil, bad("want key = value")
			}
			key, raw = prefix+strings.TrimSpace(key), strings.TrimSpace(raw)
			if _, dup := out[key]; dup {
				return nil, bad("%s given twice", key)
			}
			switch {
			case strings.HasPrefix(raw, `"`):
				s, err := strconv.Unquote(raw)
				if err != nil {
					return nil, bad("string: %v", err)
				}
				out[key] = s
			case raw == "true" || raw == "false":
				out[key] = raw == "true"
			default:
				i, err := strconv.ParseInt(raw, 10, 64)
				if err != nil {
					return nil, bad("value is not a string, integer or boolean")
				}
				out[key] = i
			}
		}
	}
	return out, nil
}

// stripComment drops a # comment that is not inside a "string".
func stripComment(line string) string {
	in := false
	for i := 0; i < len(line); i++ {
		switch line[i] {
		case '\\':
			if in {
				i++
			}
		case '"':
			in = !in
		case '#':
			if !in {
				return line[:i]
			}
		}
	}
	return line
}

// flyDuration reads a Fly duration: an integer number of seconds or a Go
// duration string such as "30s".
func flyDuration(v any) (time.Duration, error) {
	switch v := v.(type) {
	case int64:
		return time.Duration(v) * time.Second, nil
	case string:
		return time.ParseDuration(v)
	}
	return 0, fmt.Errorf("%v (%T) is not a duration", v, v)
}

func TestParseTOML(t *testing.T) {
	t.Parallel()
	got, err := parseTOML(`a = "x # not a comment" # comment
[t]
  n = 3
  b = true
  [[t.list]]
    p = "/one"
  [[t.list]]
    p = "/two"
[u]
  s = "q\"q"
`)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"a": "x # not a comment", "t.n": int64(3), "t.b": true,
		"t.list.0.p": "/one", "t.list.1.p": "/two", "u.s": `q"q`}
	if !maps.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	for _, bad := range []string{"[t", "k", "k = [1, 2]", "k = 1\nk = 2", `k = "open`} {
		if _, err := parseTOML(bad); err == nil {
			t.Errorf("parseTOML(%q) = nil error", bad)
		}
	}
}

func TestFlyTomlAgreesWithServer(t *testing.T) {
	t.Parallel()
	fly, err := parseTOML(readRepoFile(t, "fly.toml"))
	if err != nil {
		t.Fatalf("fly.toml: %v", err)
	}
	imgEnv := imageEnv(t, finalStage(t, readRepoFile(t, "Dockerfile")))
	httpPort, err := port(imgEnv["BERTH_ADDR"])
	if err != nil {
		t.Fatalf("Dockerfile BERTH_ADDR: %v", err)
	}
	adminPort, err := port(imgEnv["BERTH_ADMIN_ADDR"])
	if err != nil {
		t.Fatalf("Dockerfile BERTH_ADMIN_ADDR: %v", err)
	}

	want := func(key string, v any) {
		t.Helper()
		if got, ok := fly[key]; !ok {
			t.Errorf("fly.toml: %s is missing, want %v", key, v)
		} else if got != v {
			t.Errorf("fly.toml: %s = %v (%T), want %v (%T)", key, got, got, v, v)
		}
	}
	want("build.dockerfile", "Dockerfile")
	want("http_service.internal_port", int64(httpPort))
	want("http_service.auto_start_machines", true)
	want("http_service.min_machines_running", int64(0))
	switch v := fly["http_service.auto_stop_machines"]; v {
	case "stop", "suspend", true:
	default:
		t.Errorf(`fly.toml: http_service.auto_stop_machines = %v, want "stop", "suspend" or true`, v)
	}
	want("metrics.port", int64(adminPort))
	want("metrics.path", "/metrics") // internal/server: the admin listener serves GET /metrics
	want("mounts.destination", imgEnv["BERTH_DATA_DIR"])
	want("kill_signal", "SIGTERM") // cmd/berth: serve stops gracefully on SIGINT or SIGTERM
	// Credentials come from `fly secrets set`, never from the file: none
	// is in [env], and the file says which secrets scale-out needs.
	for _, secret := range []string{"BERTH_DATABASE_URL", "BERTH_VALKEY_URL", "BERTH_JWT_KEY", "BERTH_ANTHROPIC_API_KEY"} {
		if _, ok := fly["env."+secret]; ok {
			t.Errorf("fly.toml: %s is in [env]; it is a secret: set it with fly secrets set", secret)
		}
	}
	for _, secret := range []string{"BERTH_DATABASE_URL", "BERTH_VALKEY_URL", "BERTH_JWT_KEY"} {
		if !strings.Contains(readRepoFile(t, "fly.toml"), "fly secrets set") || !strings.Contains(readRepoFile(t, "fly.toml"), secret) {
			t.Errorf("fly.toml does not say to set %s with fly secrets set", secret)
		}
	}

	// The check: at least one, and each a GET of /ready (the main listener's
	// readiness endpoint, which `berth healthcheck` uses too).
	checks := 0
	for i := 0; ; i++ {
		p, ok := fly[fmt.Sprintf("http_service.checks.%d.path", i)]
		if !ok {
			break
		}
		checks++
		if p != "/ready" {
			t.Errorf("fly.toml: http_service.checks[%d].path = %v, want /ready", i, p)
		}
		if m, ok := fly[fmt.Sprintf("http_service.checks.%d.method", i)]; ok && m != "GET" {
			t.Errorf("fly.toml: http_service.checks[%d].method = %v, want GET", i, m)
		}
	}
	if checks == 0 {
		t.Error("fly.toml: no [[http_service.checks]]")
	}

	// The [env] berth runs with on Fly, loaded as berth serve would.
	var environ []string
	for _, k := range slices.Sorted(maps.Keys(fly)) {
		if name, ok := strings.CutPrefix(k, "env."); ok {
			s, isString := fly[k].(string)
			if !isString {
				t.Errorf("fly.toml: [env] %s = %v: Fly wants strings", name, fly[k])
			}
			environ = append(environ, name+"="+s)
		}
	}
	for _, k := range []string{"BERTH_ADDR", "BERTH_ADMIN_ADDR", "BERTH_DATA_DIR"} {
		if v, ok := fly["env."+k]; ok && v != imgEnv[k] {
			t.Errorf("fly.toml: [env] %s = %v, but the image sets %s", k, v, imgEnv[k])
		}
	}
	cfg, err := config.LoadEnv(nil, environ, io.Discard)
	if err != nil {
		t.Fatalf("berth serve with fly.toml's [env] %q: %v", environ, err)
	}
	// An [env] entry may be left out when the image sets it; Fly runs the
	// image with its ENV, then [env] on top.
	addr, adminAddr := cfg.Addr, cfg.AdminAddr
	if _, ok := fly["env.BERTH_ADDR"]; !ok {
		addr = imgEnv["BERTH_ADDR"]
	}
	if _, ok := fly["env.BERTH_ADMIN_ADDR"]; !ok {
		adminAddr = imgEnv["BERTH_ADMIN_ADDR"]
	}
	if p, err := port(addr); err != nil || p != httpPort {
		t.Errorf("berth listens on %s, but fly.toml's internal_port is %d", addr, httpPort)
	}
	if !strings.HasPrefix(addr, "0.0.0.0:") && !strings.HasPrefix(addr, "[::]:") && !strings.HasPrefix(addr, ":") {
		t.Errorf("berth listens on %s: Fly's proxy reaches it only on all addresses", addr)
	}
	if p, err := port(adminAddr); err != nil || p != adminPort {
		t.Errorf("berth's admin listener is on %q, but fly.toml's metrics port is %d", adminAddr, adminPort)
	}

	// Fly sends kill_signal, then SIGKILL after kill_timeout: berth's
	// graceful shutdown must end before it, configured or by default.
	kill, err := flyDuration(fly["kill_timeout"])
	if err != nil {
		t.Fatalf("fly.toml: kill_timeout: %v", err)
	}
	defaults, err := config.LoadEnv(nil, nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if defaults.ShutdownTimeout > kill {
		t.Errorf("berth's default --shutdown-timeout %v is longer than fly.toml's kill_timeout %v: without BERTH_SHUTDOWN_TIMEOUT Fly would kill it mid-shutdown",
			defaults.ShutdownTimeout, kill)
	}
	if _, ok := fly["env.BERTH_SHUTDOWN_TIMEOUT"]; !ok {
		t.Errorf("fly.toml: [env] BERTH_SHUTDOWN_TIMEOUT is not set; set it below kill_timeout (%v) so shutdown ends before the SIGKILL", kill)
	} else if cfg.ShutdownTimeout >= kill {
		t.Errorf("fly.toml: BERTH_SHUTDOWN_TIMEOUT %v is not below kill_timeout %v", cfg.ShutdownTimeout, kill)
	}
}
