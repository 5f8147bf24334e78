package server_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
	"github.com/berthhq/berth/internal/sandbox/sandboxtest"
	"github.com/berthhq/berth/internal/testsvc"
)

// agentLies are stand-in claude prompts whose result carries a number no
// real run reports, and the field the failure must name.
var agentLies = []struct{ prompt, field string }{
	{"[cost:-1000]", "total_cost_usd"},
	{"[cost:1e308]", "total_cost_usd"},
	{"[cost:1e308] again", "total_cost_usd"},
	{"[cost:1e400]", "total_cost_usd"},
	{`[cost:"NaN"]`, "total_cost_usd"},
	{"[turns:-1]", "num_turns"},
	{"[tokens:-5]", "usage.input_tokens"},
	{"[tokens:1e400]", "usage.input_tokens"},
}

// checkAgentLies runs every agentLies prompt in workspace wsID and checks
// that each task fails with AGENT_OUTPUT naming the field, that nothing
// of it was recorded or counted, and that the server still answers:
// /health, GetStats (own and global) with the cost unchanged, and
// /metrics with no infinite or negative cost.
func checkAgentLies(t *testing.T, srv *testServer, c clients, ctx context.Context, wsID string) {
	t.Helper()
	// A real run first, so the totals are not zero.
	ok, err := c.Task.CreateTask(ctx, &berthv1.CreateTaskRequest{WorkspaceId: wsID, Type: berthv1.TaskType_TASK_TYPE_CLAUDE_CHAT, Prompt: "honest"})
	if err != nil {
		t.Fatal(err)
	}
	if done := waitTask(t, c, ctx, ok.GetTask().GetId(), nil); done.GetStatus() != berthv1.TaskStatus_TASK_STATUS_SUCCEEDED ||
		done.GetResult().GetDetails().GetFields()["total_cost_usd"].GetNumberValue() <= 0 {
		t.Fatalf("honest run = %v", done)
	}
	own, err := c.Stats.GetStats(ctx, &berthv1.GetStatsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	global, err := c.Stats.GetStats(ctx, &berthv1.GetStatsRequest{Global: true})
	if err != nil {
		t.Fatal(err)
	}
	costBefore := metricValue(t, srv, "berth_agent_cost_usd_total")

	for _, lie := range agentLies {
		res, err := c.Task.CreateTask(ctx, &berthv1.CreateTaskRequest{WorkspaceId: wsID, Type: berthv1.TaskType_TASK_TYPE_CLAUDE_CHAT, Prompt: lie.prompt})
		if err != nil {
			t.Fatalf("%s: %v", lie.prompt, err)
		}
		done := waitTask(t, c, ctx, res.GetTask().GetId(), nil)
		if done.GetStatus() != berthv1.TaskStatus_TASK_STATUS_FAILED || done.GetError().GetCode() != "AGENT_OUTPUT" ||
			!strings.Contains(done.GetError().GetMessage(), lie.field) || done.GetResult() != nil {
			t.Errorf("%s: %v", lie.prompt, done)
		}
		if h, err := http.Get(srv.URL + "/health"); err != nil || h.StatusCode != http.StatusOK {
			t.Fatalf("%s: /health = %v, %v", lie.prompt, h, err)
		} else {
			h.Body.Close()
		}
	}

	ownAfter, err := c.Stats.GetStats(ctx, &berthv1.GetStatsRequest{})
	if err != nil {
		t.Fatalf("GetStats after the lies: %v", err)
	}
	globalAfter, err := c.Stats.GetStats(ctx, &berthv1.GetStatsRequest{Global: true})
	if err != nil {
		t.Fatalf("global GetStats after the lies: %v", err)
	}
	if ownAfter.GetTotalCostUsd() != own.GetTotalCostUsd() || globalAfter.GetTotalCostUsd() != global.GetTotalCostUsd() {
		t.Errorf("cost moved: own %v → %v, global %v → %v", own.GetTotalCostUsd(), ownAfter.GetTotalCostUsd(), global.GetTotalCostUsd(), globalAfter.GetTotalCostUsd())
	}
	if n := ownAfter.GetTasksByStatus()["failed"] - own.GetTasksByStatus()["failed"]; n != int64(len(agentLies)) {
		t.Errorf("%d more failed tasks in the stats, want %d", n, len(agentLies))
	}
	if after := metricValue(t, srv, "berth_agent_cost_usd_total"); after != costBefore {
		t.Errorf("berth_agent_cost_usd_total moved: %v → %v", costBefore, after)
	}
	metrics := scrape(t, srv)
	if bad := grepLines(metrics, `^[a-z].* (\+Inf|-Inf|NaN|-[0-9.e+]+)$`); bad != "" {
		t.Errorf("/metrics has non-finite or negative values:\n%s", bad)
	}
	if cost := metricValue(t, srv, "berth_agent_cost_usd_total"); strings.HasPrefix(cost, "-") || strings.Contains(cost, "Inf") {
		t.Errorf("berth_agent_cost_usd_total = %s", cost)
	}
	for _, where := range []string{"runner", "agent-parser", "heartbeat", "sse", "websocket"} {
		if want := `berth_panics_total{where="` + where + `"} 0`; !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if want := `berth_tasks_finished_total{status="failed",type="claude_chat"} ` + fmt.Sprint(len(agentLies)); !strings.Contains(metrics, want) {
		t.Errorf("/metrics lacks %s:\n%s", want, grepLines(metrics, "berth_tasks_finished_total"))
	}
}

// TestAgentOutputOnProcessRuntime: a stand-in claude on the host lies
// about its numbers; see checkAgentLies.
func TestAgentOutputOnProcessRuntime(t *testing.T) {
	t.Parallel()
	srv := startServer(t, "--claude-path", testsvc.FakeClaude(t), "--anthropic-api-key", testAPIKey)
	c := srv.clients(protocols[0])
	ctx := as(t.Context(), register(t, c, "liar@example.com").GetTokens().GetAccessToken())
	ws, err := c.Workspace.CreateWorkspace(ctx, &berthv1.CreateWorkspaceRequest{Name: "lies", Path: srv.mkdir(t, "lies")})
	if err != nil {
		t.Fatal(err)
	}
	checkAgentLies(t, srv, c, ctx, ws.GetWorkspace().GetId())
}

// TestAgentOutputOnDocker: the same, with the stand-in claude inside a
// real container.
func TestAgentOutputOnDocker(t *testing.T) {
	t.Parallel()
	cli := sandboxtest.Engine(t)
	srv := startServer(t, dockerFlags(t, cli, "--claude-path", "/workspace/.bin/claude", "--anthropic-api-key", testAPIKey)...)
	c := srv.clients(protocols[0])
	ctx := as(t.Context(), register(t, c, "dockerliar@example.com").GetTokens().GetAccessToken())
	dir := srv.mkdir(t, "lies")
	installClaude(t, dir)
	ws, err := c.Workspace.CreateWorkspace(ctx, &berthv1.CreateWorkspaceRequest{Name: "lies", Path: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeContainer(cli, ws.GetWorkspace().GetContainerId()) })
	checkAgentLies(t, srv, c, ctx, ws.GetWorkspace().GetId())
}
