package server_test

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
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
// over the floor of HTTP itself.
func BenchmarkGetWorkspace(b *testing.B) {
	srv := startServer(b)
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
	client := &http.Client{}

	newReq := getWorkspaceRequest(b, srv.URL+"/berth.v1.WorkspaceService/GetWorkspace", token, id)
	payload := roundTrip(b, client, newReq())

	b.Run("connect-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			roundTrip(b, client, newReq())
		}
	})

	b.Run("bare-net-http", func(b *testing.B) {
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
		for b.Loop() {
			if got := roundTrip(b, client, newBare()); !strings.HasPrefix(string(got), `{"workspace"`) {
				b.Fatalf("bare handler served %s", got)
			}
		}
	})
}
