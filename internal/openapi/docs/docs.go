// Package docs serves the /docs page: berth's OpenAPI document (which
// internal/openapi serves at /openapi.json) rendered in the browser by
// Redoc. Everything the page loads is embedded in the binary and served by
// it — no CDN: index.html, docs.js (the call that starts Redoc, a file
// rather than an inline script) and Redoc's standalone bundle, vendored
// from the npm package pinned in package.json (`just docs-page` copies it
// out of node_modules; `just lint` fails when the copy differs).
package docs

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"net/http"
	"strings"
	"time"
)

//go:embed index.html docs.js redoc.standalone.js redoc.standalone.js.LICENSE.txt
var files embed.FS

// CSP is the Content-Security-Policy of the page and its files. It is the
// server's policy (default-src 'self'; no inline script, no eval, no
// framing) with two additions that Redoc needs, so it is set on /docs only
// and the rest of the server keeps the stricter one:
//
//   - style-src 'unsafe-inline': Redoc styles itself with styled-components,
//     which writes its CSS into <style> elements it creates at run time, and
//     sets style attributes; without it the page renders unstyled. Inline
//     style cannot run code; scripts stay 'self' only.
//
//   - worker-src blob:: Redoc's search index runs in a Web Worker that the
//     bundle builds from its own code as a blob: URL. No other origin may
//     supply a worker.
//
//   - img-src data:: the bundle's icons (the link icon of each heading)
//     are data: SVG images in its CSS, as is the page's empty favicon.
//
// Redoc's sidebar also shows the Redocly logo from their CDN; img-src keeps
// it from loading (Redoc hides the image when it fails), so the page makes
// no request to any other origin. Measured in chromium with
// internal/openapi/docs/browser-check.mjs: with the server's policy alone
// Redoc renders nothing.
const CSP = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; " +
	"worker-src 'self' blob:; connect-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

// Mux is where Mount registers the page's routes (an *http.ServeMux).
type Mux interface {
	Handle(pattern string, handler http.Handler)
}

// asset is one embedded file, ready to serve.
type asset struct {
	body        []byte
	contentType string
	etag        string
}

// Mount registers GET /docs (the page) and GET /docs/ (the page again at
// /docs/, and at /docs/{file} what it loads) on mux. They are public, like
// the document. /docs/ is one subtree route rather than /docs/{$} and
// /docs/{file}, so the OpenAPI document lists the page once, at /docs
// (its lint refuses paths that end in a slash).
func Mount(mux Mux) {
	page := serve(load("index.html", "text/html; charset=utf-8"))
	assets := map[string]http.Handler{
		"":                                page,
		"docs.js":                         serve(load("docs.js", "text/javascript; charset=utf-8")),
		"redoc.standalone.js":             serve(load("redoc.standalone.js", "text/javascript; charset=utf-8")),
		"redoc.standalone.js.LICENSE.txt": serve(load("redoc.standalone.js.LICENSE.txt", "text/plain; charset=utf-8")),
	}
	mux.Handle("GET /docs", page)
	mux.Handle("GET /docs/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A fixed set of names: nothing else under /docs/ is served.
		if h, ok := assets[strings.TrimPrefix(r.URL.Path, "/docs/")]; ok {
			h.ServeHTTP(w, r)
			return
		}
		http.NotFound(w, r)
	}))
}

// load reads an embedded file; they are all there, or the build failed.
func load(name, contentType string) asset {
	body, err := files.ReadFile(name)
	if err != nil {
		panic("docs: " + err.Error())
	}
	sum := sha256.Sum256(body)
	return asset{body: body, contentType: contentType, etag: `"` + hex.EncodeToString(sum[:16]) + `"`}
}

// serve answers with a's body, its ETag and the page's CSP. Like the
// document, caches may keep the files but must revalidate (no-cache): a
// redeploy changes them, and a revalidation that matches is a 304.
func serve(a asset) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", CSP)
		h.Set("Content-Type", a.contentType)
		h.Set("ETag", a.etag)
		h.Set("Cache-Control", "public, no-cache")
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
	})
}
