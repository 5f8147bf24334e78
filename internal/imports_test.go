// Package internal_test keeps berth's import graph flowing one way:
// cmd → server → domain packages → adapters and leaves (see STYLE.md).
package internal_test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/berthhq/berth/"

// allowed lists, for each internal package, the internal packages it may
// import. A package missing here fails the test, so every new package gets
// its place in the graph decided on purpose.
var allowed = map[string][]string{
	"cmd/berth":                    {"internal/cli", "internal/config", "internal/server", "internal/store", "internal/telemetry", "internal/version"},
	"internal/server":              {"internal/access", "internal/admin", "internal/audit", "internal/auth", "internal/bus", "internal/oidc", "internal/openapi", "internal/openapi/docs", "internal/health", "internal/gen/grpc/health/v1/healthv1connect", "internal/quota", "internal/sandbox/docker", "internal/sandbox/process", "internal/config", "internal/event", "internal/fault", "internal/gen/berth/v1", "internal/gen/berth/v1/berthv1connect", "internal/stats", "internal/store", "internal/stream", "internal/sse", "internal/ws", "internal/task", "internal/taskenv", "internal/telemetry", "internal/valkey", "internal/cache", "internal/ratelimit", "internal/workspace", "internal/version", "web"},
	"internal/auth":                {"internal/access", "internal/audit", "internal/cache", "internal/fault", "internal/gen/berth/v1", "internal/gen/berth/v1/berthv1connect", "internal/store"},
	"internal/workspace":           {"internal/access", "internal/audit", "internal/bus", "internal/cache", "internal/sandbox", "internal/event", "internal/fault", "internal/gen/berth/v1", "internal/gen/berth/v1/berthv1connect", "internal/gitop", "internal/hostpath", "internal/page", "internal/store", "internal/stream"},
	"internal/stats":               {"internal/access", "internal/cache", "internal/fault", "internal/gen/berth/v1", "internal/gen/berth/v1/berthv1connect", "internal/store"},
	"internal/task":                {"internal/access", "internal/agent", "internal/bus", "internal/event", "internal/fault", "internal/gen/berth/v1", "internal/gen/berth/v1/berthv1connect", "internal/gitop", "internal/hostpath", "internal/page", "internal/sandbox", "internal/store", "internal/stream", "internal/taskdoc", "internal/taskenv", "internal/tasklog", "internal/telemetry"},
	"internal/stream":              {"internal/access", "internal/bus", "internal/event", "internal/fault", "internal/store", "internal/telemetry"},
	"internal/event":               {"internal/store"},
	"internal/sse":                 {"internal/access", "internal/event", "internal/fault", "internal/gen/berth/v1", "internal/store", "internal/stream", "internal/task", "internal/workspace"},
	"internal/ws":                  {"internal/access", "internal/event", "internal/fault", "internal/gen/berth/v1", "internal/store", "internal/stream", "internal/task", "internal/workspace"},
	"internal/agent":               {},
	"internal/gitop":               {},
	"internal/taskenv":             {},
	"internal/tasklog":             {"internal/bus", "internal/event", "internal/fault", "internal/store"},
	"internal/admin":               {"internal/access", "internal/audit", "internal/fault", "internal/gen/berth/v1", "internal/gen/berth/v1/berthv1connect", "internal/page", "internal/store"},
	"internal/audit":               {"internal/access", "internal/store"},
	"internal/access":              {"internal/gen/berth/v1", "internal/store"},
	"internal/page":                {"internal/gen/berth/v1"},
	"internal/store":               {"internal/fault", "internal/taskdoc"},
	"internal/taskdoc":             {},
	"internal":                     {},
	"internal/fault":               {},
	"internal/bus":                 {},
	"internal/sandbox":             {},
	"internal/hostpath":            {},
	"internal/sandbox/docker":      {"internal/hostpath", "internal/sandbox"},
	"internal/sandbox/process":     {"internal/hostpath", "internal/sandbox"},
	"internal/sandbox/sandboxtest": {"internal/sandbox"},
	"internal/oidc":                {"internal/auth", "internal/config", "internal/fault"},
	"internal/openapi":             {},
	"internal/openapi/docs":        {},
	"internal/health":              {"internal/gen/grpc/health/v1", "internal/gen/grpc/health/v1/healthv1connect"},
	"internal/config":              {},
	"internal/telemetry":           {},
	"internal/version":             {},
	"internal/cli":                 {"internal/gen/berth/v1", "internal/gen/berth/v1/berthv1connect"},
	"internal/testsvc":             {},
	"internal/valkey":              {"internal/bus", "internal/event", "internal/store", "internal/telemetry"},
	"internal/cache":               {"internal/telemetry", "internal/valkey"},
	"internal/ratelimit":           {"internal/telemetry", "internal/valkey"},
	"internal/quota":               {"internal/fault", "internal/telemetry", "internal/valkey"},

	"internal/gen/berth/v1":                       {},
	"internal/gen/berth/v1/berthv1connect":        {"internal/gen/berth/v1"},
	"internal/store/storetest":                    {"internal/fault", "internal/store", "internal/taskdoc"},
	"internal/gen/grpc/health/v1":                 {"internal/gen/berth/v1"},
	"internal/gen/grpc/health/v1/healthv1connect": {"internal/gen/grpc/health/v1"},
	"cmd/protoc-gen-berth-openapi":                {"internal/gen/berth/v1"},
	"web":                                         {},
	"internal/deploy":                             {"internal/config", "internal/sandbox/docker", "internal/sandbox/sandboxtest"},
	"internal/config/cmd/flagtable":               {"internal/config"},
	// The `just bench` harness sees berth as a client does: over HTTP.
	"tools/bench": {},
}

func TestImportGraph(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, module+"...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg := strings.TrimPrefix(fields[0], module)
		may, known := allowed[pkg]
		if !known {
			t.Errorf("%s has no entry in the allowed import graph", pkg)
			continue
		}
		for _, imp := range fields[1:] {
			if !strings.HasPrefix(imp, module) {
				continue
			}
			if dep := strings.TrimPrefix(imp, module); !slices.Contains(may, dep) {
				t.Errorf("%s imports %s, which the graph does not allow", pkg, dep)
			}
		}
	}
}
