package server

import (
	"net/http"
	"net/netip"
	"testing"
)

func TestSourceAddress(t *testing.T) {
	t.Parallel()
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	for _, c := range []struct {
		name, remote string
		xff          []string
		trusted      []netip.Prefix
		want         string
	}{
		{"no proxies configured: the header is ignored", "203.0.113.9:5000", []string{"198.51.100.1"}, nil, "203.0.113.9"},
		{"untrusted peer: the header is ignored", "203.0.113.9:5000", []string{"198.51.100.1"}, trusted, "203.0.113.9"},
		{"trusted peer: the client it names", "10.1.2.3:5000", []string{"198.51.100.1"}, trusted, "198.51.100.1"},
		{"a spoofed entry left of the real client is not believed", "10.1.2.3:5000", []string{"1.2.3.4, 198.51.100.1"}, trusted, "198.51.100.1"},
		{"trusted hops are skipped from the right", "[::1]:5000", []string{"198.51.100.1, 10.0.0.7", "10.9.9.9"}, trusted, "198.51.100.1"},
		{"only trusted hops: the peer", "10.1.2.3:5000", []string{"10.0.0.7"}, trusted, "10.1.2.3"},
		{"trusted peer without the header", "10.1.2.3:5000", nil, trusted, "10.1.2.3"},
		{"a malformed chain: the peer", "10.1.2.3:5000", []string{"198.51.100.1, garbage"}, trusted, "10.1.2.3"},
		{"IPv4-mapped addresses are unmapped", "10.1.2.3:5000", []string{"::ffff:198.51.100.1"}, trusted, "198.51.100.1"},
	} {
		r := &http.Request{RemoteAddr: c.remote, Header: http.Header{}}
		for _, v := range c.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		if got := sourceAddress(r, c.trusted); got != c.want {
			t.Errorf("%s: got %s, want %s", c.name, got, c.want)
		}
	}
}
