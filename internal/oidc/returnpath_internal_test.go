package oidc

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// FuzzReturnPath: whatever return_to a sign-in is started with, the
// callback's redirect stays on this site. returnPath gives "/" or raw
// itself, a path that starts with exactly one "/" (never "//" or "/\"),
// with no scheme, host or user and no control character; and the
// Location that http.Redirect writes for it, read the way a browser reads
// it (tabs and newlines dropped, "\" taken as "/"), resolves to this
// site's host.
func FuzzReturnPath(f *testing.F) {
	for _, s := range []string{
		"", "/", "/workspaces?x=1#top", "/ok/../../still-a-path", "/a/b/", "/?next=//evil.com",
		"//evil.com", "///evil.com", "////evil.com/x", `/\evil.com`, `\/evil.com`, `\\evil.com`,
		"/\t/evil.com", "/\n/evil.com", "/\r/evil.com", "\t//evil.com", " //evil.com", "/ /evil.com",
		"https://evil.com", "HTTPS://evil.com/", "http:evil.com", "//user@evil.com", "/@evil.com",
		"/%2F%2Fevil.com", "/%2f%5cevil.com", "/%5C%5Cevil.com", "%2F%2Fevil.com", "/.//evil.com",
		"/..//evil.com", "/a/..//evil.com", "/./\\evil.com", "/#//evil.com", "/?//evil.com",
		"javascript:alert(1)", "/javascript:alert(1)", "JaVaScRiPt:alert(1)", "data:text/html,x",
		"evil.com", "/\x00//evil.com", "/\x7f/evil.com", "/\u2028/evil.com", "/\uff0f/evil.com",
		"/\xff\xfe", strings.Repeat("/a", 1024), strings.Repeat("/a", 1025),
	} {
		f.Add(s)
	}
	base, err := url.Parse("https://berth.example/auth/oidc/example/callback")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		got := returnPath(raw)
		if got != "/" && got != raw {
			t.Fatalf("returnPath(%q) = %q, neither the input nor /", raw, got)
		}
		switch {
		case got == "" || got[0] != '/':
			t.Fatalf("returnPath(%q) = %q: not a path", raw, got)
		case strings.HasPrefix(got, "//") || strings.HasPrefix(got, `/\`) || strings.Contains(got, `\`):
			t.Fatalf("returnPath(%q) = %q: a browser reads it as another host", raw, got)
		}
		for _, r := range got {
			if r < 0x20 || r == 0x7f {
				t.Fatalf("returnPath(%q) = %q: holds control character %q", raw, got, r)
			}
		}
		u, err := url.Parse(got)
		if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil {
			t.Fatalf("returnPath(%q) = %q: parses as %#v (%v)", raw, got, u, err)
		}

		// What the callback sends: http.Redirect cleans the path.
		w := httptest.NewRecorder()
		http.Redirect(w, httptest.NewRequest(http.MethodGet, base.String(), nil), got, http.StatusSeeOther)
		loc := w.Header().Get("Location")
		// As a browser's URL parser takes it (WHATWG URL, special scheme):
		// tabs and newlines vanish, leading and trailing spaces and C0
		// controls are trimmed, "\" is "/".
		browser := strings.Map(func(r rune) rune {
			switch r {
			case '\t', '\n', '\r':
				return -1
			case '\\':
				return '/'
			}
			return r
		}, strings.TrimFunc(loc, func(r rune) bool { return r <= 0x20 }))
		if strings.HasPrefix(browser, "//") {
			t.Fatalf("returnPath(%q) = %q: Location %q is a network-path reference", raw, got, loc)
		}
		ref, err := url.Parse(browser)
		if err != nil {
			t.Fatalf("returnPath(%q) = %q: Location %q does not parse: %v", raw, got, loc, err)
		}
		if to := base.ResolveReference(ref); to.Scheme != base.Scheme || to.Host != base.Host || to.User != nil {
			t.Fatalf("returnPath(%q) = %q: Location %q leads to %s", raw, got, loc, to)
		}
	})
}
