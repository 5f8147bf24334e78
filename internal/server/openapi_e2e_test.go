package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
	"github.com/google/uuid"

	"github.com/berthhq/berth/internal/openapi"
)

// loadDocument loads the OpenAPI document the server embeds.
func loadDocument(t *testing.T) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(openapi.JSON())
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(t.Context()); err != nil {
		t.Fatal(err)
	}
	return doc
}

// TestOpenAPIDocumentsEveryRoute checks every pattern the server's mux
// serves against the document: an exact pattern needs its path with that
// method (POST for the Connect procedures, which connect-go registers
// without a method), and a subtree pattern ("/auth/oidc/", and the
// per-service "/berth.v1.AuthService/" connect-go adds for unknown methods)
// needs a documented path inside it.
func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	t.Parallel()
	doc := loadDocument(t)
	srv := startServer(t)
	routes := srv.Server.Routes()
	if len(routes) < 40 {
		t.Fatalf("the server lists %d routes; the mux is not recorded whole: %v", len(routes), routes)
	}
	for _, pattern := range routes {
		method, path, ok := strings.Cut(pattern, " ")
		if !ok {
			method, path = http.MethodPost, pattern
		}
		exact := strings.HasSuffix(path, "{$}") // "/{$}" is exactly "/"
		path = strings.TrimSuffix(path, "{$}")
		if strings.HasSuffix(path, "/") && !exact {
			found := false
			for p := range doc.Paths.Map() {
				found = found || strings.HasPrefix(p, path)
			}
			if !found {
				t.Errorf("route %q: no documented path under it", pattern)
			}
			continue
		}
		item := doc.Paths.Value(path)
		if item == nil || item.GetOperation(method) == nil {
			t.Errorf("route %q: %s %s is not in the document", pattern, method, path)
		}
	}

	// And the server answers with the document it embeds, through the
	// whole middleware chain and without credentials.
	res, err := http.Get(srv.URL + "/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(res.Body)
	_ = res.Body.Close()
	if err != nil || res.StatusCode != http.StatusOK || !bytes.Equal(body, openapi.JSON()) || res.Header.Get("ETag") == "" {
		t.Fatalf("GET /openapi.json: %d, ETag %q, %d bytes (%v); want 200 with the embedded document", res.StatusCode, res.Header.Get("ETag"), len(body), err)
	}
}

// conformance sends requests to a real server after checking them against
// the document, and checks each answer against the document's response for
// its status (an undocumented status fails).
type conformance struct {
	t      *testing.T
	base   string
	router routers.Router
}

// call validates the request, sends it and validates the answer, which it
// returns decoded.
func (c *conformance) call(method, path string, query url.Values, token string, body any, wantStatus int) map[string]any {
	c.t.Helper()
	return c.send(method, path, query, token, body, wantStatus, true)
}

// callInvalid sends a request that breaks a documented rule: the document
// must refuse it, and so must the server, with an answer the document
// describes.
func (c *conformance) callInvalid(method, path string, token string, body any) map[string]any {
	c.t.Helper()
	return c.send(method, path, nil, token, body, http.StatusBadRequest, false)
}

func (c *conformance) send(method, path string, query url.Values, token string, body any, wantStatus int, valid bool) map[string]any {
	c.t.Helper()
	var raw []byte
	if body != nil {
		var err error
		if raw, err = json.Marshal(body); err != nil {
			c.t.Fatal(err)
		}
	}
	u := c.base + path
	if query != nil {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(c.t.Context(), method, u, bytes.NewReader(raw))
	if err != nil {
		c.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	route, params, err := c.router.FindRoute(req)
	if err != nil {
		c.t.Fatalf("%s %s: not in the document: %v", method, path, err)
	}
	opts := &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true, AuthenticationFunc: bearerPresent}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts}
	if err := openapi3filter.ValidateRequest(c.t.Context(), in); valid && err != nil {
		c.t.Fatalf("%s %s: the request does not match the document: %v", method, path, err)
	} else if !valid && err == nil {
		c.t.Fatalf("%s %s %s: the document accepts a request the test meant to break a rule", method, path, raw)
	}
	req.Body = io.NopCloser(bytes.NewReader(raw)) // validation read it
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	answer, err := io.ReadAll(res.Body)
	_ = res.Body.Close()
	if err != nil {
		c.t.Fatal(err)
	}
	if res.StatusCode != wantStatus {
		c.t.Fatalf("%s %s: status %d (%s), want %d", method, path, res.StatusCode, answer, wantStatus)
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: res.StatusCode, Header: res.Header, Options: opts}
	out.SetBodyBytes(answer)
	if err := openapi3filter.ValidateResponse(c.t.Context(), out); err != nil {
		c.t.Fatalf("%s %s: the answer does not match the document: %v\n%s", method, path, err, answer)
	}
	var decoded map[string]any
	if err := json.Unmarshal(answer, &decoded); err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	return decoded
}

// bearerPresent accepts a request for the bearerAuth scheme when it carries
// a Bearer token, and refuses the other schemes, which these calls do not
// use: a non-public operation the test calls without a token fails.
func bearerPresent(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	if in.SecuritySchemeName == "bearerAuth" && strings.HasPrefix(in.RequestValidationInput.Request.Header.Get("Authorization"), "Bearer ") {
		return nil
	}
	return errors.New("no bearer token")
}

// TestOpenAPIAnswersMatchTheDocument calls a real server the way the
// document says, and checks the answers, successes and errors, against the
// documented response schemas: RPCs by POST and by Connect GET, health,
// readiness and the SSE routes' errors.
func TestOpenAPIAnswersMatchTheDocument(t *testing.T) {
	t.Parallel()
	doc := loadDocument(t)
	srv := startServer(t)
	// The document's server is "/", the origin it is served from: here,
	// the test server.
	doc.Servers = openapi3.Servers{{URL: srv.URL}}
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	c := &conformance{t: t, base: srv.URL, router: router}

	creds := map[string]any{"email": "ada@example.com", "password": "correct horse battery staple"}
	c.call(http.MethodPost, "/berth.v1.AuthService/Register", nil, "", map[string]any{
		"email": creds["email"], "password": creds["password"], "name": "Ada",
	}, http.StatusOK)
	login := c.call(http.MethodPost, "/berth.v1.AuthService/Login", nil, "", creds, http.StatusOK)
	token, _ := login["tokens"].(map[string]any)["access_token"].(string)
	if token == "" {
		t.Fatalf("Login: no access token in %v", login)
	}

	created := c.call(http.MethodPost, "/berth.v1.WorkspaceService/CreateWorkspace", nil, token, map[string]any{
		"name": "demo", "description": "my first workspace", "tags": []string{"go"}, "metadata": map[string]string{"team": "core"},
	}, http.StatusOK)
	id, _ := created["workspace"].(map[string]any)["id"].(string)
	if id == "" {
		t.Fatalf("CreateWorkspace: no id in %v", created)
	}

	// Connect GET for a side-effect-free method.
	got := c.call(http.MethodGet, "/berth.v1.WorkspaceService/GetWorkspace",
		url.Values{"encoding": {"json"}, "message": {`{"id":"` + id + `"}`}, "connect": {"v1"}}, token, nil, http.StatusOK)
	if name := got["workspace"].(map[string]any)["name"]; name != "demo" {
		t.Fatalf("GetWorkspace by GET: name %v, want demo", name)
	}
	list := c.call(http.MethodPost, "/berth.v1.WorkspaceService/ListWorkspaces", nil, token,
		map[string]any{"page": 1, "page_size": 10, "sort": "name"}, http.StatusOK)
	if ws, _ := list["workspaces"].([]any); len(ws) != 1 {
		t.Fatalf("ListWorkspaces: %v, want the one workspace", list)
	}

	// A series of the last day by hour, by POST and by Connect GET; a range
	// the method refuses is the documented 400.
	start := time.Now().Add(-24 * time.Hour).UTC().Format(time.RFC3339)
	series := map[string]any{"start": start, "bucket": "STATS_BUCKET_HOUR", "group": "STATS_GROUP_WORKSPACE"}
	if pts, ok := c.call(http.MethodPost, "/berth.v1.StatsService/GetStatsSeries", nil, token, series, http.StatusOK)["points"].([]any); !ok || len(pts) != 0 {
		t.Fatalf("GetStatsSeries with no tasks: %v, want no points", pts)
	}
	c.call(http.MethodGet, "/berth.v1.StatsService/GetStatsSeries",
		url.Values{"encoding": {"json"}, "message": {`{"start":"` + start + `","bucket":"STATS_BUCKET_DAY"}`}, "connect": {"v1"}}, token, nil, http.StatusOK)
	tooLong := map[string]any{"start": "2020-01-01T00:00:00Z", "end": "2021-06-01T00:00:00Z"}
	if bad := c.call(http.MethodPost, "/berth.v1.StatsService/GetStatsSeries", nil, token, tooLong, http.StatusBadRequest); bad["code"] != "invalid_argument" {
		t.Fatalf("GetStatsSeries over 366 days: %v, want code invalid_argument", bad)
	}

	// Errors: the Connect error body, with the documented status.
	notFound := c.call(http.MethodPost, "/berth.v1.WorkspaceService/GetWorkspace", nil, token,
		map[string]any{"id": uuid.NewString()}, http.StatusNotFound)
	if notFound["code"] != "not_found" {
		t.Fatalf("GetWorkspace of an unknown id: %v, want code not_found", notFound)
	}
	refused := c.call(http.MethodPost, "/berth.v1.AuthService/Login", nil, "",
		map[string]any{"email": "ada@example.com", "password": "not the password"}, http.StatusUnauthorized)
	if refused["code"] != "unauthenticated" {
		t.Fatalf("Login with a wrong password: %v, want code unauthenticated", refused)
	}

	// The plain-HTTP routes, from the hand-written part of the document.
	c.call(http.MethodGet, "/health", nil, "", nil, http.StatusOK)
	if ready := c.call(http.MethodGet, "/ready", nil, "", nil, http.StatusOK); ready["status"] != "ready" {
		t.Fatalf("/ready: %v", ready)
	}
	if gone := c.call(http.MethodGet, "/api/v1/tasks/"+uuid.NewString()+"/logs/stream", nil, token, nil, http.StatusNotFound); gone["code"] != "not_found" {
		t.Fatalf("SSE of an unknown task: %v, want code not_found", gone)
	}
	if gone := c.call(http.MethodGet, "/api/v1/workspaces/"+uuid.NewString()+"/events", nil, token, nil, http.StatusNotFound); gone["code"] != "not_found" {
		t.Fatalf("SSE of an unknown workspace: %v, want code not_found", gone)
	}

	// The documented rules refuse what protovalidate refuses.
	for _, body := range []map[string]any{{"page_size": 101}, {"sort": "size"}, {"search": strings.Repeat("x", 101)}} {
		if bad := c.callInvalid(http.MethodPost, "/berth.v1.WorkspaceService/ListWorkspaces", token, body); bad["code"] != "invalid_argument" {
			t.Fatalf("ListWorkspaces %v: %v, want code invalid_argument", body, bad)
		}
	}
	if bad := c.callInvalid(http.MethodPost, "/berth.v1.WorkspaceService/CreateWorkspace", token, map[string]any{"name": ""}); bad["code"] != "invalid_argument" {
		t.Fatalf("CreateWorkspace with no name: %v, want code invalid_argument", bad)
	}
}
