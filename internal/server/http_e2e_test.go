package server_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"
	"connectrpc.com/grpcreflect/v2"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/berthhq/berth/internal/access"
	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
)

// post sends a Connect JSON POST as curl would and decodes the answer.
func post(t *testing.T, base, procedure, token, body string) (int, map[string]any, http.Header) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, base+procedure, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return do(t, req)
}

func do(t *testing.T, req *http.Request) (int, map[string]any, http.Header) {
	t.Helper()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if len(raw) > 0 && strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatalf("decode %s: %v", raw, err)
		}
	}
	return res.StatusCode, out, res.Header
}

// TestPlainHTTPJSON drives the API the way curl does: JSON POSTs, and GETs
// for side-effect-free RPCs, with snake_case field names as in the seeds.
func TestPlainHTTPJSON(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	status, body, header := post(t, srv.URL, "/berth.v1.AuthService/Register", "",
		`{"email":"curl@example.com","password":"correct horse battery","name":"Curl"}`)
	if status != http.StatusOK {
		t.Fatalf("register: %d %v", status, body)
	}
	if header.Get("X-Request-Id") == "" {
		t.Error("no X-Request-Id on the response")
	}
	tokens := body["tokens"].(map[string]any)
	token := tokens["access_token"].(string)
	if _, camel := tokens["accessToken"]; camel {
		t.Error("JSON field names must be snake_case")
	}
	if user := body["user"].(map[string]any); user["disabled"] != false {
		t.Errorf("zero values must be present in JSON: %v", user)
	}

	status, body, _ = post(t, srv.URL, "/berth.v1.WorkspaceService/CreateWorkspace", token,
		`{"name":"web","path":"`+srv.mkdir(t, "web")+`","tags":["a"],"git_url":"https://example.com/x.git"}`)
	if status != http.StatusOK {
		t.Fatalf("create: %d %v", status, body)
	}
	ws := body["workspace"].(map[string]any)
	if ws["status"] != "WORKSPACE_STATUS_STOPPED" || ws["git_url"] != "https://example.com/x.git" {
		t.Errorf("workspace JSON = %v", ws)
	}

	// Connect GET for a NO_SIDE_EFFECTS RPC.
	q := url.Values{"encoding": {"json"}, "message": {`{"id":"` + ws["id"].(string) + `"}`}}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/berth.v1.WorkspaceService/GetWorkspace?"+q.Encode(), nil)
	req.Header.Set("Authorization", "Bearer "+token)
	status, body, _ = do(t, req)
	if status != http.StatusOK || body["workspace"].(map[string]any)["name"] != "web" {
		t.Fatalf("GET GetWorkspace: %d %v", status, body)
	}

	// A mutating RPC is not served over GET.
	req, _ = http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/berth.v1.WorkspaceService/DeleteWorkspace?"+q.Encode(), nil)
	req.Header.Set("Authorization", "Bearer "+token)
	if status, _, _ = do(t, req); status != http.StatusMethodNotAllowed {
		t.Errorf("GET DeleteWorkspace = %d, want 405", status)
	}

	// Errors: JSON with code, message and details, and the HTTP status.
	status, body, _ = post(t, srv.URL, "/berth.v1.WorkspaceService/CreateWorkspace", token, `{"name":"","path":"relative"}`)
	if status != http.StatusBadRequest || body["code"] != "invalid_argument" || len(body["details"].([]any)) < 2 {
		t.Errorf("validation error = %d %v", status, body)
	}
	status, body, _ = post(t, srv.URL, "/berth.v1.WorkspaceService/ListWorkspaces", "", `{}`)
	if status != http.StatusUnauthorized || body["code"] != "unauthenticated" {
		t.Errorf("no token = %d %v", status, body)
	}
	status, body, _ = post(t, srv.URL, "/berth.v1.WorkspaceService/ListWorkspaces", token, `{"page_size":`)
	if status != http.StatusBadRequest {
		t.Errorf("malformed JSON = %d %v", status, body)
	}
}

// TestHeadersAndLimits checks request ids, the security headers, CORS and
// the body limit.
func TestHeadersAndLimits(t *testing.T) {
	t.Parallel()
	srv := startServer(t, "--allowed-origins", "https://console.example.com", "--max-body-bytes", "2048")

	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/health", nil)
	req.Header.Set("X-Request-Id", "client-chosen-42")
	status, body, header := do(t, req)
	if status != http.StatusOK || body["status"] != "ok" {
		t.Fatalf("/health = %d %v", status, body)
	}
	if header.Get("X-Request-Id") != "client-chosen-42" {
		t.Errorf("request id not echoed: %q", header.Get("X-Request-Id"))
	}
	for name, want := range map[string]string{
		"X-Content-Type-Options":    "nosniff",
		"X-Frame-Options":           "DENY",
		"X-Xss-Protection":          "1; mode=block",
		"Strict-Transport-Security": "max-age=31536000; includeSubDomains",
		"Referrer-Policy":           "strict-origin-when-cross-origin",
	} {
		if got := header.Get(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if !strings.Contains(header.Get("Content-Security-Policy"), "default-src 'self'") {
		t.Errorf("CSP = %q", header.Get("Content-Security-Policy"))
	}

	req, _ = http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/health", nil)
	req.Header.Set("X-Request-Id", "bad id\twith spaces")
	if _, _, header = do(t, req); header.Get("X-Request-Id") == "bad id\twith spaces" || header.Get("X-Request-Id") == "" {
		t.Errorf("an unusable client request id must be replaced, got %q", header.Get("X-Request-Id"))
	}

	preflight := func(origin string) http.Header {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodOptions, srv.URL+"/berth.v1.AuthService/Login", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "authorization,connect-protocol-version,content-type")
		_, _, h := do(t, req)
		return h
	}
	if h := preflight("https://console.example.com"); h.Get("Access-Control-Allow-Origin") != "https://console.example.com" || h.Get("Access-Control-Allow-Credentials") != "true" {
		t.Errorf("allowed origin preflight: %v", h)
	}
	if h := preflight("https://evil.example.net"); h.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("foreign origin was allowed: %v", h)
	}

	status, _, _ = post(t, srv.URL, "/berth.v1.AuthService/Login", "", `{"email":"`+strings.Repeat("a", 4096)+`"}`)
	if status != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized body = %d, want 413", status)
	}

	req, _ = http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/ready", nil)
	status, body, _ = do(t, req)
	checks, _ := body["checks"].(map[string]any)
	store, _ := checks["store"].(map[string]any)
	if status != http.StatusOK || body["status"] != "ready" || store["ok"] != true {
		t.Errorf("/ready = %d %v", status, body)
	}

	// The admin listener serves Prometheus metrics: Go runtime, HTTP and RPC.
	post(t, srv.URL, "/berth.v1.AuthService/ListAuthProviders", "", `{}`)
	res, err := http.Get(srv.AdminURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(res.Body)
	res.Body.Close()
	for _, want := range []string{"go_goroutines", "berth_http_requests_total", "rpc_server_call_duration_seconds", `rpc_method="berth.v1.AuthService/ListAuthProviders"`} {
		if !bytes.Contains(metrics, []byte(want)) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// It serves Go's profiles too; the API listener does not.
	for url, want := range map[string]int{
		srv.AdminURL + "/debug/pprof/goroutine?debug=1": http.StatusOK,
		srv.URL + "/debug/pprof/goroutine?debug=1":      http.StatusNotFound,
	} {
		res, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		profile, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != want || (want == http.StatusOK && !bytes.Contains(profile, []byte("goroutine profile: total"))) {
			t.Errorf("GET %s = %d %.80q, want %d", url, res.StatusCode, profile, want)
		}
	}
}

// TestReflectionListsEveryService asks the reflection service, over gRPC,
// which services exist.
func TestReflectionListsEveryService(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	client := grpcreflect.NewClient(connect.NewClient(connecthttp.NewTransport(httpClient(true), srv.URL, connecthttp.WithGRPC())))
	stream := client.NewStream(t.Context())
	defer stream.Close()
	names, err := stream.ListServices()
	if err != nil {
		t.Fatalf("ListServices: %v", err)
	}
	var got []string
	for _, n := range names {
		got = append(got, string(n))
	}
	for _, want := range append(srv.Server.Services(), "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection") {
		if !slices.Contains(got, want) {
			t.Errorf("reflection lacks %s (got %v)", want, got)
		}
	}
	if len(srv.Server.Services()) != 5 {
		t.Errorf("served services = %v, want 5", srv.Server.Services())
	}
}

// TestEveryMethodDeclaresAccess walks every method of every berth service in
// the compiled descriptors and fails if one has no access rule, or a rule
// that is not exactly public or one known permission.
func TestEveryMethodDeclaresAccess(t *testing.T) {
	t.Parallel()
	methods := 0
	protoregistry.GlobalFiles.RangeFilesByPackage("berth.v1", func(fd protoreflect.FileDescriptor) bool {
		for i := range fd.Services().Len() {
			svc := fd.Services().Get(i)
			for j := range svc.Methods().Len() {
				m := svc.Methods().Get(j)
				methods++
				rule, ok := access.RuleOf(m)
				switch {
				case !ok:
					t.Errorf("%s declares no access rule", m.FullName())
				case rule.Public == (rule.Permission != ""):
					t.Errorf("%s: rule %+v must be public or name one permission", m.FullName(), rule)
				case !rule.Public && !access.Known(rule.Permission):
					t.Errorf("%s: unknown permission %q", m.FullName(), rule.Permission)
				}
			}
		}
		return true
	})
	if methods < 30 {
		t.Fatalf("walked only %d methods; is the API registered?", methods)
	}
}

// TestUnimplementedSaysWhy: validation runs after authentication and
// before anything else. (It also checked the Unimplemented answer of the
// streaming RPCs until they were implemented; streams_e2e_test.go covers
// them now.)
func TestUnimplementedSaysWhy(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	c := srv.clients(protocols[0])
	ctx := as(t.Context(), register(t, c, "admin@example.com").GetTokens().GetAccessToken())
	id := "00000000-0000-4000-8000-000000000001"
	// Validation still runs first: a bad request is InvalidArgument, not
	// Unimplemented.
	_, err := c.Task.CreateTask(ctx, &berthv1.CreateTaskRequest{WorkspaceId: id, Type: berthv1.TaskType_TASK_TYPE_CLAUDE_CHAT})
	wantCode(t, err, connect.CodeInvalidArgument, "VALIDATION_ERROR")
	if !strings.Contains(errMessage(err), "prompt is required") {
		t.Errorf("missing prompt: %v", err)
	}
	// And unauthenticated callers learn nothing more.
	_, err = c.Task.ListTasks(t.Context(), &berthv1.ListTasksRequest{})
	wantCode(t, err, connect.CodeUnauthenticated, "UNAUTHORIZED")
}

// TestGzipBothWays sends a gzip-compressed JSON request and asks for a
// compressed answer, as a browser or `curl --compressed` would.
func TestGzipBothWays(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	c := srv.clients(protocols[0])
	token := register(t, c, "gzip@example.com").GetTokens().GetAccessToken()
	for i := range 5 {
		_, err := c.Workspace.CreateWorkspace(as(t.Context(), token), &berthv1.CreateWorkspaceRequest{
			Name: "gz" + strings.Repeat("x", i), Description: strings.Repeat("compressible ", 30), Path: srv.mkdir(t, "gz"+strings.Repeat("x", i)),
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, _ = zw.Write([]byte(`{"page_size":100}`))
	zw.Close()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+"/berth.v1.WorkspaceService/ListWorkspaces", &buf)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Content-Encoding", "gzip")
	req.Header.Set("Accept-Encoding", "gzip")
	req.Header.Set("Authorization", "Bearer "+token)
	tr := &http.Transport{DisableCompression: true} // keep the body as sent
	res, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("status %d, Content-Encoding %q", res.StatusCode, res.Header.Get("Content-Encoding"))
	}
	zr, err := gzip.NewReader(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	var out struct {
		Workspaces []json.RawMessage `json:"workspaces"`
	}
	if err := json.NewDecoder(zr).Decode(&out); err != nil || len(out.Workspaces) != 5 {
		t.Fatalf("decoded %d workspaces, %v", len(out.Workspaces), err)
	}
}
