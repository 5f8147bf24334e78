package server

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"
)

// console serves the embedded web console (web/dist) at /, as a
// single-page app: a request for a file of the build gets the file, and a
// browser's request for any other path that is not the API's gets
// index.html, whose script then routes by the path (so /workspaces/<id>
// can be reloaded or shared).
//
// Who gets HTML: a request whose Accept names text/html, as a browser's
// navigation does. Everything else keeps the API's answers: `curl /` (Accept
// */*) and `curl -H 'Accept: application/json' /` get the JSON index, an
// unknown path gets the JSON 404. Paths under the API's prefixes are never
// shadowed, whatever the Accept.
type console struct {
	files map[string]*consoleFile // by path without the leading slash
}

type consoleFile struct {
	body, gz []byte // gz is nil when compressing does not pay
	ctype    string
	etag     string
	cache    string
}

// apiPrefixes are the paths the console never answers for, even when the
// mux has no route there: an unknown API path stays a JSON 404.
var apiPrefixes = []string{"/api/", "/auth/", "/ws", "/openapi.", "/docs", "/health", "/ready", "/metrics", "/berth.", "/grpc."}

// newConsole reads the build into memory (it is small), with an ETag and a
// gzip copy of each file made once.
func newConsole(dist fs.FS) (*console, error) {
	c := &console{files: map[string]*consoleFile{}}
	err := fs.WalkDir(dist, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := fs.ReadFile(dist, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		f := &consoleFile{body: body, etag: `"` + hex.EncodeToString(sum[:12]) + `"`, ctype: mime.TypeByExtension(path.Ext(p))}
		if f.ctype == "" {
			f.ctype = http.DetectContentType(body)
		}
		// Files under assets/ are named by their content hash: they never
		// change, so browsers may keep them for a year. Everything else
		// (index.html above all, which names the current assets) is
		// revalidated on every load.
		f.cache = "no-cache"
		if strings.HasPrefix(p, "assets/") {
			f.cache = "public, max-age=31536000, immutable"
		}
		if len(body) > 1024 {
			var buf bytes.Buffer
			zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression) // the level is valid
			_, _ = zw.Write(body)                                    // a bytes.Buffer does not fail
			_ = zw.Close()
			if buf.Len() < len(body)*9/10 {
				f.gz = buf.Bytes()
			}
		}
		c.files[p] = f
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("web console: %w", err)
	}
	if c.files["index.html"] == nil {
		return nil, fmt.Errorf("web console: the build has no index.html (run `just web`)")
	}
	return c, nil
}

// orIndex answers GET / with the console for browsers and with the JSON
// index (jsonIndex) for every other client.
func (c *console) orIndex(jsonIndex http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Vary", "Accept")
		if acceptsHTML(r) {
			c.write(w, r, c.files["index.html"])
			return
		}
		jsonIndex.ServeHTTP(w, r)
	})
}

// serve writes the build's file at the request's path, or index.html to a
// browser asking for a console page; it reports whether it answered.
func (c *console) serve(w http.ResponseWriter, r *http.Request) bool {
	p := strings.TrimPrefix(path.Clean(r.URL.Path), "/")
	if f, ok := c.files[p]; ok && p != "index.html" {
		c.write(w, r, f)
		return true
	}
	if strings.HasPrefix(p, "assets/") || !acceptsHTML(r) {
		return false // a missing asset is a 404, never the page
	}
	w.Header().Add("Vary", "Accept")
	c.write(w, r, c.files["index.html"])
	return true
}

func (c *console) write(w http.ResponseWriter, r *http.Request, f *consoleFile) {
	h := w.Header()
	h.Set("Content-Type", f.ctype)
	h.Set("Cache-Control", f.cache)
	body := f.body
	etag := f.etag
	if f.gz != nil {
		h.Add("Vary", "Accept-Encoding")
		if acceptsGzip(r) {
			body = f.gz
			etag = strings.TrimSuffix(f.etag, `"`) + `-gz"`
			h.Set("Content-Encoding", "gzip")
		}
	}
	h.Set("ETag", etag)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
}

func isAPIPath(p string) bool {
	for _, prefix := range apiPrefixes {
		if strings.HasPrefix(p, prefix) {
			return true
		}
	}
	return false
}

// acceptsHTML reports whether the request's Accept names text/html with a
// non-zero quality (browsers' navigations do; curl's */* does not count).
func acceptsHTML(r *http.Request) bool {
	return acceptsToken(r.Header.Values("Accept"), "text/html")
}

func acceptsGzip(r *http.Request) bool {
	return acceptsToken(r.Header.Values("Accept-Encoding"), "gzip")
}

func acceptsToken(values []string, want string) bool {
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			name, params, _ := strings.Cut(part, ";")
			if !strings.EqualFold(strings.TrimSpace(name), want) {
				continue
			}
			q := strings.TrimSpace(params)
			if rest, ok := strings.CutPrefix(q, "q="); ok {
				if f, err := strconv.ParseFloat(strings.TrimSpace(rest), 64); err == nil && f == 0 {
					continue
				}
			}
			return true
		}
	}
	return false
}
