package server_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/hex"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/berthhq/berth/internal/config"
	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
	"github.com/berthhq/berth/internal/sandbox/sandboxtest"
	"github.com/berthhq/berth/internal/server"
	"github.com/berthhq/berth/internal/telemetry"
	"github.com/berthhq/berth/internal/testsvc"
)

// otlpReceiver is a real OTLP/HTTP trace receiver on loopback: it decodes
// each protobuf ExportTraceServiceRequest and keeps its spans with their
// resources.
type otlpReceiver struct {
	*httptest.Server

	mu        sync.Mutex
	spans     []*tracepb.Span
	resources []map[string]string
	bad       []string
}

func newOTLPReceiver(t *testing.T) *otlpReceiver {
	rc := &otlpReceiver{}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := rc.read(r)
		if err != nil {
			rc.note(err.Error())
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var req coltrace.ExportTraceServiceRequest
		if err := proto.Unmarshal(body, &req); err != nil {
			rc.note("undecodable export: " + err.Error())
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rc.mu.Lock()
		for _, rs := range req.GetResourceSpans() {
			rc.resources = append(rc.resources, attrMap(rs.GetResource().GetAttributes()))
			for _, ss := range rs.GetScopeSpans() {
				rc.spans = append(rc.spans, ss.GetSpans()...)
			}
		}
		rc.mu.Unlock()
		out, _ := proto.Marshal(&coltrace.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *otlpReceiver) read(r *http.Request) ([]byte, error) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" {
		return nil, &badRequest{r.Method + " " + r.URL.Path}
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/x-protobuf" {
		return nil, &badRequest{"content type " + ct}
	}
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			return nil, err
		}
		defer zr.Close()
		body = zr
	}
	return io.ReadAll(body)
}

type badRequest struct{ what string }

func (e *badRequest) Error() string { return "unexpected export request: " + e.what }

func (rc *otlpReceiver) note(s string) {
	rc.mu.Lock()
	rc.bad = append(rc.bad, s)
	rc.mu.Unlock()
}

// trace returns the spans received so far of trace id, by span id.
func (rc *otlpReceiver) trace(id string) map[string]*tracepb.Span {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	out := map[string]*tracepb.Span{}
	for _, s := range rc.spans {
		if hex.EncodeToString(s.GetTraceId()) == id {
			out[hex.EncodeToString(s.GetSpanId())] = s
		}
	}
	return out
}

func attrMap(kvs []*commonpb.KeyValue) map[string]string {
	m := map[string]string{}
	for _, kv := range kvs {
		m[kv.GetKey()] = kv.GetValue().GetStringValue()
	}
	return m
}

// descends reports whether span s has ancestor id in spans.
func descends(spans map[string]*tracepb.Span, s *tracepb.Span, ancestor string) bool {
	for range len(spans) {
		parent := hex.EncodeToString(s.GetParentSpanId())
		if parent == ancestor {
			return true
		}
		next, ok := spans[parent]
		if !ok {
			return false
		}
		s = next
	}
	return false
}

// lockedBuffer is a log sink several goroutines write.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startLoggedServer starts berth like startServer, its log written to logs.
func startLoggedServer(t *testing.T, logs io.Writer, flags ...string) *testServer {
	t.Helper()
	dir := t.TempDir()
	root := filepath.Join(dir, "workspaces")
	args := append([]string{
		"--data-dir", filepath.Join(dir, "data"), "--workspace-root", root,
		"--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--shutdown-timeout", "15s",
		"--runtime", "process",
		"--rate-anonymous", "0", "--rate-auth-failures", "0", "--rate-principal", "0", "--rate-task-create", "0",
	}, flags...)
	cfg, err := config.LoadWithOutput(args, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	logger, err := telemetry.NewLogger(logs, "json", slog.LevelInfo)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(t.Context(), cfg, logger, telemetry.NewRegistry(), time.Now)
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	adminLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln, adminLn) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if err := srv.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return &testServer{DataDir: cfg.DataDir, URL: "http://" + ln.Addr().String(), AdminURL: "http://" + adminLn.Addr().String(), Root: root, Server: srv}
}

// TestTraceReachesOTLPReceiver: with OTEL_EXPORTER_OTLP_ENDPOINT pointing
// at a real OTLP/HTTP receiver, a CreateTask call carrying a traceparent
// continues that trace: the RPC's server span, the store queries it made,
// and the task's run with its exec all arrive in one trace, parent by
// parent; the stand-in claude sees the exec's span in TRACEPARENT; the
// response names the trace; and log lines written inside carry trace_id.
func TestTraceReachesOTLPReceiver(t *testing.T) {
	checkTrace(t, []string{"--claude-path", testsvc.FakeClaude(t)}, traceHooks{}, nil)
}

// TestTraceReachesOTLPReceiverOnDocker: the same on the Docker runtime,
// where the Engine API calls (starting the container, the exec) are client
// spans in the trace too, and TRACEPARENT reaches the CLI in the container.
func TestTraceReachesOTLPReceiverOnDocker(t *testing.T) {
	cli := sandboxtest.Engine(t)
	flags := dockerFlags(t, cli, "--claude-path", "/workspace/.bin/claude")
	checkTrace(t, flags, traceHooks{
		prepare: func(dir string) { installClaude(t, dir) },
		created: func(w *berthv1.Workspace) { t.Cleanup(func() { removeContainer(cli, w.GetContainerId()) }) },
	}, func(t *testing.T, spans map[string]*tracepb.Span, rpcID string) {
		var engine []string
		for _, s := range spans {
			attrs := attrMap(s.GetAttributes())
			if s.GetKind() == tracepb.Span_SPAN_KIND_CLIENT && attrs["http.request.method"] != "" && descends(spans, s, rpcID) {
				engine = append(engine, s.GetName())
			}
		}
		if !slices.ContainsFunc(engine, func(n string) bool { return strings.HasSuffix(n, "/exec") }) {
			t.Errorf("no Engine API exec call in the trace under the RPC; Engine calls there: %v", engine)
		}
	})
}

// traceHooks adapt checkTrace to a runtime; nil hooks are skipped.
type traceHooks struct {
	prepare func(dir string)           // readies the workspace's directory
	created func(w *berthv1.Workspace) // sees the workspace just created
}

// checkTrace runs the trace test on a server started with flags, then more
// checks (when not nil) on the trace's spans.
func checkTrace(t *testing.T, flags []string, hooks traceHooks, more func(t *testing.T, spans map[string]*tracepb.Span, rpcID string)) {
	rc := newOTLPReceiver(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rc.URL)
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
	t.Setenv("OTEL_TRACES_SAMPLER", "parentbased_always_on")
	t.Setenv("OTEL_SERVICE_NAME", "")
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=test")
	t.Setenv("OTEL_SDK_DISABLED", "")
	t.Setenv("OTEL_TRACES_EXPORTER", "")
	var logs lockedBuffer
	srv := startLoggedServer(t, &logs, append(flags, "--anthropic-api-key", testAPIKey)...)
	project := srv.mkdir(t, "traced")
	if hooks.prepare != nil {
		hooks.prepare(project)
	}
	c := srv.clients(protocols[0])
	token := register(t, c, "tracer@example.com").GetTokens().GetAccessToken()
	ws, err := c.Workspace.CreateWorkspace(as(t.Context(), token), &berthv1.CreateWorkspaceRequest{Name: "traced", Path: project})
	if err != nil {
		t.Fatal(err)
	}
	if hooks.created != nil {
		hooks.created(ws.GetWorkspace())
	}

	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	ctx, info := connect.NewClientContext(t.Context())
	info.RequestHeader().Set("Authorization", "Bearer "+token)
	info.RequestHeader().Set("traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	res, err := c.Task.CreateTask(ctx, &berthv1.CreateTaskRequest{
		WorkspaceId: ws.GetWorkspace().GetId(), Type: berthv1.TaskType_TASK_TYPE_CLAUDE_CHAT, Prompt: "trace me [env:TRACEPARENT]",
	})
	if err != nil {
		t.Fatal(err)
	}
	if tp := info.ResponseHeader().Get("traceparent"); !strings.HasPrefix(tp, "00-"+traceID+"-") {
		t.Errorf("response traceparent %q: want the request's trace %s", tp, traceID)
	}
	id := res.GetTask().GetId()
	read := as(t.Context(), token)
	done := waitTask(t, c, read, id, nil)
	if done.GetStatus() != berthv1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("task ended %v: %v", done.GetStatus(), done.GetError())
	}

	// The CLI got the exec span's context.
	var envLine string
	for _, e := range allLogs(t, c, read, id) {
		if strings.Contains(e.GetMessage(), "env TRACEPARENT") {
			envLine = e.GetMessage()
		}
	}
	if !strings.Contains(envLine, "env TRACEPARENT=00-"+traceID+"-") {
		t.Fatalf("the CLI's TRACEPARENT: %q, want one in trace %s", envLine, traceID)
	}
	execSpanID := strings.TrimSuffix(envLine, "-01")
	execSpanID = execSpanID[strings.LastIndex(execSpanID, "-")+1:]

	// One trace: RPC server span → store queries, and → task run → exec.
	var rpc, exec *tracepb.Span
	var spans map[string]*tracepb.Span
	storeUnder := 0
	eventually(t, "the trace's spans at the receiver", func() bool {
		spans = rc.trace(traceID)
		rpc, exec, storeUnder = nil, nil, 0
		for _, s := range spans {
			if s.GetName() == "berth.v1.TaskService/CreateTask" && s.GetKind() == tracepb.Span_SPAN_KIND_SERVER {
				rpc = s
			}
		}
		if rpc == nil {
			return false
		}
		rpcID := hex.EncodeToString(rpc.GetSpanId())
		for sid, s := range spans {
			if _, ok := attrMap(s.GetAttributes())["db.system.name"]; ok && descends(spans, s, rpcID) {
				storeUnder++
			}
			if s.GetName() == "task.exec" && sid == execSpanID && descends(spans, s, rpcID) {
				exec = s
			}
		}
		return storeUnder > 0 && exec != nil
	})
	if hex.EncodeToString(rpc.GetParentSpanId()) == "" {
		t.Error("the RPC span has no parent: the request's traceparent was not continued")
	}
	if got := attrMap(exec.GetAttributes())["process.executable.name"]; got != "claude" {
		t.Errorf("exec span's executable %q, want claude", got)
	}
	names := map[string]bool{}
	for _, s := range spans {
		names[s.GetName()] = true
	}
	for _, want := range []string{"task claude_chat", "task.claim", "task.prepare", "task.finish"} {
		if !names[want] {
			t.Errorf("the trace has no %q span (has %v)", want, names)
		}
	}

	if more != nil {
		more(t, spans, hex.EncodeToString(rpc.GetSpanId()))
	}

	rc.mu.Lock()
	bad, resources := rc.bad, rc.resources
	rc.mu.Unlock()
	if len(bad) > 0 {
		t.Errorf("malformed exports: %v", bad)
	}
	res0 := resources[0]
	if res0["service.name"] != "berth" || res0["service.version"] == "" || res0["service.instance.id"] == "" || res0["deployment.environment.name"] != "test" {
		t.Errorf("resource %v: want service.name=berth, a version, an instance id and OTEL_RESOURCE_ATTRIBUTES", res0)
	}

	// The access log line of the traced request names the trace.
	var found bool
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, `"msg":"request"`) && strings.Contains(l, `"trace_id":"`+traceID+`"`) && strings.Contains(l, `"span_id":"`) {
			found = true
		}
	}
	if !found {
		t.Errorf("no request log line carries trace_id %s:\n%s", traceID, logs.String())
	}
}
