package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/berthhq/berth/internal/openapi/docs"
)

// fetchDocs sends a GET with optional headers and returns the status, body and
// headers.
func fetchDocs(t *testing.T, url string, header ...string) (int, []byte, http.Header) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, body, res.Header
}

// TestDocsPage: GET /docs and /docs/ answer the page, with the docs CSP
// (no inline or eval script, no framing) while the rest of the server keeps
// its stricter policy; the page loads only files berth serves, each with
// its content type; the bundle is the vendored file; ETags revalidate; an
// unknown file is a 404; and the JSON index lists the routes.
func TestDocsPage(t *testing.T) {
	t.Parallel()
	srv := startServer(t)

	var page []byte
	for _, path := range []string{"/docs", "/docs/"} {
		status, body, h := fetchDocs(t, srv.URL+path)
		if status != http.StatusOK || !strings.HasPrefix(h.Get("Content-Type"), "text/html") {
			t.Fatalf("GET %s: %d %q", path, status, h.Get("Content-Type"))
		}
		if got := h.Get("Content-Security-Policy"); got != docs.CSP {
			t.Errorf("GET %s: CSP %q, want %q", path, got, docs.CSP)
		}
		if h.Get("X-Frame-Options") != "DENY" || h.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s lost the security headers: %v", path, h)
		}
		page = body
	}
	csp := map[string]string{}
	for _, d := range strings.Split(docs.CSP, ";") {
		name, value, _ := strings.Cut(strings.TrimSpace(d), " ")
		csp[name] = value
	}
	if csp["script-src"] != "'self'" || csp["default-src"] != "'self'" || csp["frame-ancestors"] != "'none'" || csp["connect-src"] != "'self'" {
		t.Errorf("the docs CSP must keep scripts, connections and everything else to 'self' and forbid framing: %q", docs.CSP)
	}
	if strings.Contains(docs.CSP, "unsafe-eval") || strings.Contains(docs.CSP, "http") {
		t.Errorf("the docs CSP allows eval or another origin: %q", docs.CSP)
	}
	if _, _, h := fetchDocs(t, srv.URL+"/health"); h.Get("Content-Security-Policy") == docs.CSP || strings.Contains(h.Get("Content-Security-Policy"), "unsafe-inline") {
		t.Errorf("the docs CSP leaked to /health: %q", h.Get("Content-Security-Policy"))
	}
	if bytes.Contains(page, []byte("<script>")) || bytes.Contains(page, []byte("://")) {
		t.Errorf("the page has an inline script or loads from another origin:\n%s", page)
	}
	for _, script := range []string{`<script src="/docs/redoc.standalone.js"`, `<script src="/docs/docs.js"`} {
		if !bytes.Contains(page, []byte(script)) {
			t.Errorf("the page lacks %s:\n%s", script, page)
		}
	}

	vendored, err := os.ReadFile(filepath.Join("..", "openapi", "docs", "redoc.standalone.js"))
	if err != nil {
		t.Fatal(err)
	}
	status, bundle, h := fetchDocs(t, srv.URL+"/docs/redoc.standalone.js")
	if status != http.StatusOK || h.Get("Content-Type") != "text/javascript; charset=utf-8" || !bytes.Equal(bundle, vendored) {
		t.Fatalf("GET the bundle: %d %q, %d bytes (want the %d vendored)", status, h.Get("Content-Type"), len(bundle), len(vendored))
	}
	if status, _, _ := fetchDocs(t, srv.URL+"/docs/redoc.standalone.js", "If-None-Match", h.Get("ETag")); status != http.StatusNotModified {
		t.Errorf("revalidating the bundle with its ETag: %d, want 304", status)
	}
	status, starter, h := fetchDocs(t, srv.URL+"/docs/docs.js")
	if status != http.StatusOK || h.Get("Content-Type") != "text/javascript; charset=utf-8" || !bytes.Contains(starter, []byte(`Redoc.init("/openapi.json"`)) {
		t.Errorf("GET docs.js: %d %q\n%s", status, h.Get("Content-Type"), starter)
	}
	if status, _, h := fetchDocs(t, srv.URL+"/docs/redoc.standalone.js.LICENSE.txt"); status != http.StatusOK || !strings.HasPrefix(h.Get("Content-Type"), "text/plain") {
		t.Errorf("GET the licence notice: %d %q", status, h.Get("Content-Type"))
	}
	for _, path := range []string{"/docs/nothing.js", "/docs/..%2Fopenapi.go", "/docs/docs.go"} {
		if status, _, _ := fetchDocs(t, srv.URL+path); status != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", path, status)
		}
	}

	status, body, _ := fetchDocs(t, srv.URL+"/")
	var index struct {
		Docs   string   `json:"docs"`
		Routes []string `json:"routes"`
	}
	if err := json.Unmarshal(body, &index); status != http.StatusOK || err != nil {
		t.Fatalf("GET /: %d %v", status, err)
	}
	for _, want := range []string{"GET /docs", "GET /docs/"} {
		if !strings.Contains(strings.Join(index.Routes, "\n")+"\n", want+"\n") {
			t.Errorf("the index lacks the route %q: %v", want, index.Routes)
		}
	}
	if !strings.Contains(index.Docs, "/docs") {
		t.Errorf("the index's docs line does not name /docs: %q", index.Docs)
	}
}

// TestDocsPageInBrowser opens /docs in Debian's chromium (playwright-core
// from internal/openapi/docs, driven by its browser-check.mjs) and checks
// that Redoc rendered the document: the API's title, the operations, its
// styles applied, no CSP violation but the expected one (the Redocly logo
// from their CDN, blocked) and nothing loaded from another origin.
func TestDocsPageInBrowser(t *testing.T) {
	t.Parallel()
	missing := func(format string, args ...any) {
		t.Helper()
		if os.Getenv("CI") == "true" {
			t.Fatalf(format+" (CI=true: a missing browser fails the run)", args...)
		}
		t.Skipf(format, args...)
	}
	const chromium = "/usr/bin/chromium"
	if _, err := os.Stat(chromium); err != nil {
		missing("no browser: %v (apt-get install chromium)", err)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		missing("no node: %v", err)
	}
	dir, err := filepath.Abs(filepath.Join("..", "openapi", "docs"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "playwright-core")); err != nil {
		missing("playwright-core is not installed: %v (npm ci --prefix internal/openapi/docs)", err)
	}

	srv := startServer(t)
	ctx, cancel := context.WithTimeout(t.Context(), within(t))
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join(dir, "browser-check.mjs"), srv.URL) // #nosec G204 -- G204: node and the script are the test's own
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CHROMIUM="+chromium, "DOCS_CHECK_TIMEOUT_MS="+strconv.FormatInt(within(t).Milliseconds(), 10))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var seen struct {
		Error          string   `json:"error"`
		Status         int      `json:"status"`
		CSP            string   `json:"csp"`
		Title          string   `json:"title"`
		Operations     int      `json:"operations"`
		FirstOperation string   `json:"firstOperation"`
		Blocked        []string `json:"blocked"`
		Foreign        []string `json:"foreign"`
		Problems       []string `json:"problems"`
	}
	lines := bytes.Split(bytes.TrimSpace(out), []byte("\n"))
	if jerr := json.Unmarshal(lines[len(lines)-1], &seen); jerr != nil {
		t.Fatalf("browser-check: %v (%v)\nstdout: %s\nstderr: %s", err, jerr, out, stderr.Bytes())
	}
	t.Logf("browser saw: %+v", seen)
	if err != nil {
		t.Fatalf("browser-check failed: %v: %+v\nstderr: %s", err, seen, stderr.Bytes())
	}
	doc := loadDocument(t)
	if seen.Status != http.StatusOK || seen.CSP != docs.CSP {
		t.Errorf("the page: %d with CSP %q", seen.Status, seen.CSP)
	}
	if !strings.HasPrefix(seen.Title, doc.Info.Title) {
		t.Errorf("the page's heading is %q, want the document's title %q", seen.Title, doc.Info.Title)
	}
	if seen.Operations < 1 || seen.FirstOperation == "" {
		t.Errorf("no operation rendered: %+v", seen)
	}
	if len(seen.Problems) > 0 || len(seen.Foreign) > 0 {
		t.Errorf("problems %q, loaded from elsewhere %q", seen.Problems, seen.Foreign)
	}
}
