package openapi_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/berthhq/berth/internal/openapi"
)

// TestDocumentIsValidOpenAPI31 has an independent implementation,
// kin-openapi, load and validate the document as OpenAPI 3.1 (JSON Schema
// 2020-12 schemas, every $ref resolving), and checks the YAML rendering is
// the same document as the JSON one.
func TestDocumentIsValidOpenAPI31(t *testing.T) {
	t.Parallel()
	fromJSON, err := openapi3.NewLoader().LoadFromData(openapi.JSON())
	if err != nil {
		t.Fatalf("loading openapi.json: %v", err)
	}
	if !fromJSON.IsOpenAPI31OrLater() || fromJSON.OpenAPI != "3.1.0" {
		t.Fatalf("openapi = %q, want 3.1.0", fromJSON.OpenAPI)
	}
	if err := fromJSON.Validate(t.Context()); err != nil {
		t.Fatalf("openapi.json does not validate: %v", err)
	}
	fromYAML, err := openapi3.NewLoader().LoadFromData(openapi.YAML())
	if err != nil {
		t.Fatalf("loading openapi.yaml: %v", err)
	}
	if err := fromYAML.Validate(t.Context()); err != nil {
		t.Fatalf("openapi.yaml does not validate: %v", err)
	}
	a, err := json.Marshal(fromJSON)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(fromYAML)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatal("openapi.yaml and openapi.json describe different documents")
	}
}

// TestServed checks both routes answer with the embedded document, an ETag,
// and a 304 for a matching If-None-Match.
func TestServed(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	openapi.Mount(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	for _, c := range []struct {
		path, contentType string
		body              []byte
	}{
		{"/openapi.json", "application/json", openapi.JSON()},
		{"/openapi.yaml", "application/yaml", openapi.YAML()},
	} {
		res := get(t, srv.URL+c.path, "")
		body, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatal(err)
		}
		if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != c.contentType || !bytes.Equal(body, c.body) {
			t.Fatalf("GET %s: %d %q, %d bytes; want 200 %q and the document", c.path, res.StatusCode, res.Header.Get("Content-Type"), len(body), c.contentType)
		}
		etag := res.Header.Get("ETag")
		if etag == "" || res.Header.Get("Cache-Control") == "" {
			t.Fatalf("GET %s: ETag %q, Cache-Control %q; want both", c.path, etag, res.Header.Get("Cache-Control"))
		}
		if res := get(t, srv.URL+c.path, etag); res.StatusCode != http.StatusNotModified {
			t.Fatalf("GET %s with If-None-Match %s: %d, want 304", c.path, etag, res.StatusCode)
		}
		if res := get(t, srv.URL+c.path, `"other"`); res.StatusCode != http.StatusOK {
			t.Fatalf("GET %s with a stale If-None-Match: %d, want 200", c.path, res.StatusCode)
		}
	}
}

func get(t *testing.T, url, ifNoneMatch string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ifNoneMatch != "" {
		req.Header.Set("If-None-Match", ifNoneMatch)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = res.Body.Close() })
	return res
}
