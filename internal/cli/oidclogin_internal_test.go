package cli

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestLoopback: the CLI's listener takes one code, and only with its
// login's state, on GET /callback; everything else is refused.
func TestLoopback(t *testing.T) {
	t.Parallel()
	l := &loopback{state: randomString(), codes: make(chan string, 1), results: make(chan string, 1)}
	srv := httptest.NewServer(l)
	t.Cleanup(srv.Close)
	get := func(method, path string) (int, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("%s %s: headers %v lack no-store and no-referrer", method, path, resp.Header)
		}
		return resp.StatusCode, string(body)
	}
	for _, c := range []struct {
		method, path string
		status       int
	}{
		{http.MethodGet, "/", http.StatusNotFound},
		{http.MethodGet, "/other?code=c&state=" + l.state, http.StatusNotFound},
		{http.MethodPost, "/callback?code=c&state=" + l.state, http.StatusNotFound},
		{http.MethodGet, "/callback?code=c&state=wrong", http.StatusBadRequest},
		{http.MethodGet, "/callback?code=c", http.StatusBadRequest},
		{http.MethodGet, "/callback?state=" + l.state, http.StatusBadRequest},
	} {
		if status, body := get(c.method, c.path); status != c.status {
			t.Errorf("%s %s = %d %q, want %d", c.method, c.path, status, body, c.status)
		}
	}
	select {
	case code := <-l.codes:
		t.Fatalf("a refused request handed over the code %q", code)
	default:
	}

	l.results <- "done, close this tab"
	status, body := get(http.MethodGet, "/callback?code=the-code&state="+l.state)
	if status != http.StatusOK || !strings.Contains(body, "close this tab") {
		t.Errorf("the login's callback = %d %q", status, body)
	}
	if code := <-l.codes; code != "the-code" {
		t.Errorf("handed over %q", code)
	}
	// One code was taken: a second with the right state (a reload) is not.
	if status, _ := get(http.MethodGet, "/callback?code=other&state="+l.state); status != http.StatusConflict {
		t.Errorf("a second callback = %d, want 409", status)
	}
}
