package server_test

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
	"github.com/berthhq/berth/internal/sandbox/sandboxtest"
	"github.com/berthhq/berth/internal/testsvc"
)

// getWorkspaceRequest builds the curl-style Connect JSON POST for
// GetWorkspace with a bearer token.
func getWorkspaceRequest(b *testing.B, url, token, id string) func() *http.Request {
	body := []byte(`{"id":"` + id + `"}`)
	return func() *http.Request {
		req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		return req
	}
}

// processCPU is the CPU time the process has used so far, in all its
// threads (the garbage collector's too).
func processCPU(b *testing.B) time.Duration {
	var u syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &u); err != nil {
		b.Fatal(err)
	}
	return time.Duration(u.Utime.Nano() + u.Stime.Nano())
}

// reportCPU reports the process's CPU time per operation since start: on
// a shared machine, wall time per operation measures the neighbours' load
// as much as the code, CPU time much less.
func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(processCPU(b)-start)/float64(b.N), "cpu-ns/op")
}

func roundTrip(b *testing.B, client *http.Client, req *http.Request) []byte {
	res, err := client.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	out, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil || res.StatusCode != http.StatusOK {
		b.Fatalf("%d %s %v", res.StatusCode, out, err)
	}
	return out
}

// BenchmarkGetWorkspace compares an authenticated GetWorkspace over Connect
// JSON (middleware, JWT verification, access rule, validation, a SQLite read
// and protojson) with a bare net/http handler that serves the same bytes on
// the same kind of loopback listener. The ratio is berth's cost per request
// over the floor of HTTP itself. The berth figure is taken three ways: with
// the workspace read cache off (--cache-ttl 0), in process (no Valkey),
// and in Valkey (client-side cached).
func BenchmarkGetWorkspace(b *testing.B) {
	client := &http.Client{}
	// setup starts berth with flags and returns a request factory for one
	// workspace's GetWorkspace, and the answer's bytes.
	setup := func(b *testing.B, flags ...string) (func() *http.Request, []byte, string, string) {
		srv := startServer(b, flags...)
		c := srv.clients(protocols[0])
		token := register(b, c, "bench@example.com").GetTokens().GetAccessToken()
		res, err := c.Workspace.CreateWorkspace(as(b.Context(), token), &berthv1.CreateWorkspaceRequest{
			Name: "bench", Description: "benchmark workspace", Path: srv.mkdir(b, "bench"),
			Tags: []string{"a", "b"}, Metadata: map[string]string{"k": "v"},
		})
		if err != nil {
			b.Fatal(err)
		}
		id := res.GetWorkspace().GetId()
		newReq := getWorkspaceRequest(b, srv.URL+"/berth.v1.WorkspaceService/GetWorkspace", token, id)
		return newReq, roundTrip(b, client, newReq()), token, id
	}
	run := func(b *testing.B, newReq func() *http.Request) {
		b.ReportAllocs()
		cpu := processCPU(b)
		for b.Loop() {
			roundTrip(b, client, newReq())
		}
		reportCPU(b, cpu)
	}
	// The read cache off, in process (no Valkey), and in Valkey.
	b.Run("connect-json/uncached", func(b *testing.B) {
		newReq, _, _, _ := setup(b, "--cache-ttl", "0")
		run(b, newReq)
	})
	b.Run("connect-json/cached-local", func(b *testing.B) {
		newReq, _, _, _ := setup(b)
		run(b, newReq)
	})
	b.Run("connect-json/cached-valkey", func(b *testing.B) {
		newReq, _, _, _ := setup(b, "--valkey-url", testsvc.StartRedis(b).URL())
		run(b, newReq)
	})

	b.Run("bare-net-http", func(b *testing.B) {
		_, payload, token, id := setup(b)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		bare := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(payload)
		})}
		go func() { _ = bare.Serve(ln) }()
		b.Cleanup(func() { _ = bare.Close() })
		newBare := getWorkspaceRequest(b, "http://"+ln.Addr().String()+"/", token, id)
		b.ReportAllocs()
		cpu := processCPU(b)
		for b.Loop() {
			if got := roundTrip(b, client, newBare()); !strings.HasPrefix(string(got), `{"workspace"`) {
				b.Fatalf("bare handler served %s", got)
			}
		}
		reportCPU(b, cpu)
	})
}

// BenchmarkCreateTaskFirstLine measures, on a running Docker workspace, the
// time from CreateTask to the agent's first stored log line (the stand-in
// claude's init event), polling GetTaskLogs; it reports p50 and p95.
func BenchmarkCreateTaskFirstLine(b *testing.B) {
	cli := sandboxtest.Engine(b)
	srv := startServer(b,
		"--runtime", "docker", "--docker-host", cli.DaemonHost(), "--workspace-image", sandboxtest.Image(b),
		"--workspace-network", "none", "--claude-path", "/workspace/.bin/claude", "--anthropic-api-key", testAPIKey)
	c := srv.clients(protocols[0])
	ctx := as(b.Context(), register(b, c, "latency@example.com").GetTokens().GetAccessToken())
	dir := srv.mkdir(b, "latency")
	installClaudeTB(b, dir)
	ws, err := c.Workspace.CreateWorkspace(ctx, &berthv1.CreateWorkspaceRequest{Name: "latency", Path: dir})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { removeContainer(cli, ws.GetWorkspace().GetContainerId()) })
	if _, err := c.Workspace.StartWorkspace(ctx, &berthv1.StartWorkspaceRequest{Id: ws.GetWorkspace().GetId()}); err != nil {
		b.Fatal(err)
	}
	var samples []time.Duration
	for b.Loop() {
		start := time.Now()
		res, err := c.Task.CreateTask(ctx, &berthv1.CreateTaskRequest{WorkspaceId: ws.GetWorkspace().GetId(), Type: berthv1.TaskType_TASK_TYPE_CLAUDE_CHAT, Prompt: "hi"})
		if err != nil {
			b.Fatal(err)
		}
		for {
			logs, err := c.Task.GetTaskLogs(ctx, &berthv1.GetTaskLogsRequest{TaskId: res.GetTask().GetId(), AfterSeq: 1, Limit: 1})
			if err != nil {
				b.Fatal(err)
			}
			if len(logs.GetEntries()) > 0 {
				break
			}
			time.Sleep(time.Millisecond)
		}
		samples = append(samples, time.Since(start))
		for { // let it finish, so the next task does not queue behind it
			got, err := c.Task.GetTask(ctx, &berthv1.GetTaskRequest{Id: res.GetTask().GetId()})
			if err != nil {
				b.Fatal(err)
			}
			if s := got.GetTask().GetStatus(); s != berthv1.TaskStatus_TASK_STATUS_QUEUED && s != berthv1.TaskStatus_TASK_STATUS_RUNNING {
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	slices.Sort(samples)
	b.ReportMetric(float64(samples[len(samples)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(samples[len(samples)*95/100].Microseconds())/1000, "p95-ms")
}
