package server_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestEveryErrorHasABody: the answers the server writes outside an RPC's
// own error path — an unknown route, a wrong method, a missing or unknown
// Content-Type, a body over the limit, a CSRF refusal, a WebSocket upgrade
// from a foreign origin — all carry a Connect-style JSON body with a code,
// a message a person can act on and the request id; GET / is a JSON index.
func TestEveryErrorHasABody(t *testing.T) {
	t.Parallel()
	srv := startServer(t, "--max-body-bytes", "1024", "--allowed-origins", "https://console.example.com")
	token := register(t, srv.clients(protocols[0]), "errors@example.com").GetTokens().GetAccessToken()
	big := strings.Repeat("x", 4096)
	for _, tc := range []struct {
		name, method, path, ctype, body string
		headers                         map[string]string
		status                          int
		code, says                      string
	}{
		{"unknown route", "GET", "/nothing/here", "", "", nil, 404, "not_found", "no such route"},
		{"GET on a POST-only RPC", "GET", "/berth.v1.TaskService/CreateTask", "", "", nil, 405, "unimplemented", "not allowed"},
		{"POST without Content-Type", "POST", "/berth.v1.AuthService/GetCurrentUser", "", "{}", nil, 415, "invalid_argument", "Content-Type"},
		{"unknown Content-Type", "POST", "/berth.v1.AuthService/GetCurrentUser", "text/csv", "{}", nil, 415, "invalid_argument", "text/csv"},
		{"body over the limit", "POST", "/berth.v1.AuthService/Login", "application/json", `{"email":"` + big + `"}`, nil, 413, "resource_exhausted", "too large"},
		{"cookie call from a foreign site", "POST", "/berth.v1.AuthService/GetCurrentUser", "application/json", "{}",
			map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example.com", "Cookie": "berth_session=x"}, 403, "permission_denied", "cross-origin"},
		{"CORS preflight from a foreign origin", "OPTIONS", "/berth.v1.AuthService/Login", "", "",
			map[string]string{"Origin": "https://evil.example.com", "Access-Control-Request-Method": "POST"}, 403, "permission_denied", "not allowed"},
		{"WebSocket from a foreign origin", "GET", "/ws", "", "",
			map[string]string{"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
				"Sec-WebSocket-Protocol": "berth.v1.json", "Origin": "https://evil.example.com", "Authorization": "Bearer " + token}, 403, "permission_denied", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), tc.method, srv.URL+tc.path, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if tc.ctype != "" {
				req.Header.Set("Content-Type", tc.ctype)
			}
			for k, v := range tc.headers {
				req.Header.Set(k, v)
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			raw, _ := io.ReadAll(res.Body)
			if res.StatusCode != tc.status {
				t.Fatalf("status %d, want %d (%s)", res.StatusCode, tc.status, raw)
			}
			if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Fatalf("Content-Type %q, body %q", ct, raw)
			}
			var body struct {
				Code    string `json:"code"`
				Message string `json:"message"`
				Details []struct {
					Type  string `json:"type"`
					Debug struct {
						Metadata map[string]string `json:"metadata"`
					} `json:"debug"`
				} `json:"details"`
			}
			if err := json.Unmarshal(raw, &body); err != nil {
				t.Fatalf("body %q: %v", raw, err)
			}
			if body.Code != tc.code || body.Message == "" || !strings.Contains(body.Message, tc.says) {
				t.Errorf("body = %s; want code %s and a message saying %q", raw, tc.code, tc.says)
			}
			if len(body.Details) != 1 || body.Details[0].Type != "google.rpc.ErrorInfo" ||
				body.Details[0].Debug.Metadata["request_id"] != res.Header.Get("X-Request-Id") || res.Header.Get("X-Request-Id") == "" {
				t.Errorf("details %+v do not carry the request id %q", body.Details, res.Header.Get("X-Request-Id"))
			}
		})
	}

	res, err := http.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var index struct {
		Name     string   `json:"name"`
		Services []string `json:"services"`
		Routes   []string `json:"routes"`
	}
	if err := json.NewDecoder(res.Body).Decode(&index); err != nil || res.StatusCode != 200 || index.Name != "berth" || len(index.Services) < 5 || len(index.Routes) == 0 {
		t.Errorf("GET / = %d %+v, %v", res.StatusCode, index, err)
	}
}

// TestValidationMessagesReadWell: a required field left empty says so in
// words a person reads ("value is required", "must not be empty"), not
// "must be at least 1 characters".
func TestValidationMessagesReadWell(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	token := register(t, srv.clients(protocols[0]), "words@example.com").GetTokens().GetAccessToken()
	for _, tc := range []struct{ procedure, body, field, says string }{
		{"/berth.v1.AuthService/Login", `{"email":"","password":"x"}`, "email", "is required"},
		{"/berth.v1.AuthService/RefreshToken", `{}`, "refresh_token", "is required"},
		{"/berth.v1.WorkspaceService/CreateWorkspace", `{"name":""}`, "name", "is required"},
		{"/berth.v1.WorkspaceService/UpdateWorkspace", `{"id":"00000000-0000-4000-8000-000000000000","name":""}`, "name", "must not be empty"},
	} {
		status, body, _ := post(t, srv.URL, tc.procedure, token, tc.body)
		msg, _ := body["message"].(string)
		if status != 400 || !strings.Contains(msg, tc.field) || !strings.Contains(msg, tc.says) || strings.Contains(msg, "characters") {
			t.Errorf("%s %s: %d %q; want 400 saying %q of %s", tc.procedure, tc.body, status, msg, tc.says, tc.field)
		}
	}
}
