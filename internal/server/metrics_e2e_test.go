package server_test

import (
	"bytes"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
)

// documentedAtStart are series the README documents, each with a known
// label set, that a server exposes before it has done anything (at zero).
// berth_valkey_up is documented too, but exists only with --valkey-url.
var documentedAtStart = []string{
	`berth_tasks_started_total{type="claude_chat"}`,
	`berth_tasks_started_total{type="git_operation"}`,
	`berth_tasks_started_total{type="docker_build"}`,
	`berth_tasks_finished_total{status="succeeded",type="claude_chat"}`,
	`berth_tasks_finished_total{status="failed",type="git_operation"}`,
	`berth_tasks_finished_total{status="cancelled",type="docker_build"}`,
	`berth_tasks_finished_total{status="timed_out",type="claude_chat"}`,
	`berth_task_duration_seconds_count{type="claude_chat"}`,
	`berth_tasks_queued`,
	`berth_tasks_running`,
	`berth_task_log_lines_total`,
	`berth_agent_cost_usd_total`,
	`berth_panics_total{where="runner"}`,
	`berth_stream_connections{transport="sse"}`,
	`berth_stream_events_sent_total{transport="websocket"}`,
	`berth_stream_lagged_total`,
	`berth_stream_dropped_clients_total{reason="slow",transport="sse"}`,
	`berth_stream_dropped_clients_total{reason="unresponsive",transport="websocket"}`,
	`berth_stream_dropped_clients_total{reason="revoked",transport="websocket"}`,
	`berth_websocket_commands_total{action="task.create",result="ok"}`,
	`berth_websocket_commands_total{action="workspace.get",result="ok"}`,
	`berth_stream_quota_refused_total{quota="principal"}`,
	`berth_stream_quota_refused_total{quota="instance"}`,
	`berth_streams_held`,
	`berth_connections_refused_total`,
	`berth_rate_limited_total{class="anonymous"}`,
	`berth_http_requests_in_flight`,
}

// TestMetricsDocumentedAndClean: a fresh server exposes every documented
// series with known labels at zero; RPC metrics tell gRPC-Web from gRPC
// and Connect (rpc_protocol); HTTP route labels are path patterns, the
// method a label of its own; target_info names berth; and promtool finds
// nothing to complain about in the exposition.
func TestMetricsDocumentedAndClean(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	fresh := scrape(t, srv)
	for _, series := range documentedAtStart {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` 0$`).MatchString(fresh) {
			t.Errorf("a fresh server's /metrics lacks %s at 0", series)
		}
	}
	if strings.Contains(fresh, "berth_cache_hit_ratio") {
		t.Error("berth_cache_hit_ratio is exported: the ratio is a query over berth_cache_hits_total and berth_cache_misses_total")
	}

	// One call over each protocol, and a plain HTTP route.
	for _, p := range []protocol{protocols[0], protocols[3], protocols[4]} {
		if _, err := srv.clients(p).Auth.ListAuthProviders(t.Context(), &berthv1.ListAuthProvidersRequest{}); err != nil {
			t.Fatalf("%s: ListAuthProviders: %v", p.name, err)
		}
	}
	res, err := httpClient(false).Get(srv.URL + "/health")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()

	metrics := scrape(t, srv)
	for _, proto := range []string{"connect", "grpc", "grpcweb"} {
		want := regexp.MustCompile(`(?m)^rpc_server_call_duration_seconds_count\{rpc_method="berth.v1.AuthService/ListAuthProviders",rpc_protocol="` + proto + `",[^}]*\} 1$`)
		if !want.MatchString(metrics) {
			t.Errorf("no RPC duration series with rpc_protocol=%q and count 1:\n%s", proto, grepLines(metrics, "^rpc_server_call_duration_seconds_count"))
		}
	}
	for _, want := range []string{
		`berth_http_requests_total{code="200",method="GET",route="/health"} 1`,
		`berth_http_requests_total{code="200",method="POST",route="/berth.v1.AuthService/ListAuthProviders"} 3`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s:\n%s", want, grepLines(metrics, "^berth_http_requests_total"))
		}
	}
	if lines := grepLines(metrics, `^berth_http_requests_total\{.*route="[A-Z]+ `); lines != "" {
		t.Errorf("route labels carry the method, which is a label of its own:\n%s", lines)
	}
	if !regexp.MustCompile(`(?m)^target_info\{.*service_name="berth".*\} 1$`).MatchString(metrics) ||
		!regexp.MustCompile(`(?m)^target_info\{.*service_instance_id="[0-9a-f-]{36}".*\} 1$`).MatchString(metrics) {
		t.Errorf("target_info does not name berth and its instance:\n%s", grepLines(metrics, "^target_info"))
	}

	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("promtool is not installed (Debian package prometheus); CI must check the exposition")
		}
		t.Skip("promtool is not installed (Debian package prometheus)")
	}
	cmd := exec.CommandContext(t.Context(), promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(metrics)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil || out.Len() > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out.String())
	}
}
