// Package openapi serves berth's OpenAPI 3.1 document, which
// protoc-gen-berth-openapi generates from the proto files into spec/
// (`just generate`; `just lint` fails when the committed files differ from
// what it writes). The files are embedded, so the binary serves the
// document of the API it was built from.
package openapi

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"net/http"
	"slices"
	"time"
)

//go:embed spec/openapi.json
var jsonDoc []byte

//go:embed spec/openapi.yaml
var yamlDoc []byte

// JSON returns a copy of the document as JSON.
func JSON() []byte { return slices.Clone(jsonDoc) }

// YAML returns a copy of the document as YAML.
func YAML() []byte { return slices.Clone(yamlDoc) }

// Mux is where Mount registers the document's routes (an *http.ServeMux).
type Mux interface {
	Handle(pattern string, handler http.Handler)
}

// Mount registers GET /openapi.json and GET /openapi.yaml on mux. Both are
// public: the document describes the API, it grants nothing.
func Mount(mux Mux) {
	mux.Handle("GET /openapi.json", serve(jsonDoc, "application/json"))
	mux.Handle("GET /openapi.yaml", serve(yamlDoc, "application/yaml"))
}

// serve answers with body and a strong ETag of its content. Caches may keep
// the document but must revalidate (no-cache): a redeploy changes it, and a
// revalidation that matches is a 304 without the body (http.ServeContent
// handles If-None-Match, HEAD and ranges).
func serve(body []byte, contentType string) http.Handler {
	sum := sha256.Sum256(body)
	etag := `"` + hex.EncodeToString(sum[:16]) + `"`
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", contentType)
		w.Header().Set("ETag", etag)
		w.Header().Set("Cache-Control", "public, no-cache")
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
	})
}
