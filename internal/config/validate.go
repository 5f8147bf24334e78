package config

import (
	"errors"
	"net"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// resolve fills the defaults that depend on the data directory, makes paths
// absolute, normalises lists and adds every problem it finds to p.
func (c *Config) resolve(p *problems) {
	c.checkAddrs(p)
	c.resolvePaths(p)
	c.checkOrigins(p)
	c.checkTokens(p)
	if c.PasswordHashMemoryMiB < 38 {
		p.add("password-hash-memory", strconv.FormatInt(c.PasswordHashMemoryMiB, 10),
			"want at least 38 (MiB): one argon2id hash takes 19 MiB, counted twice for the garbage it leaves until the next collection")
	}
	c.checkHTTP(p)
	c.checkWorkspace(p)
	c.checkTasks(p)
	c.checkStreams(p)
	c.checkScale(p)
	c.checkQuotas(p)
}

func (c *Config) checkAddrs(p *problems) {
	if c.Addr == "" {
		p.add("addr", c.Addr, "want host:port such as 127.0.0.1:8080; the main listener cannot be disabled")
	} else {
		checkAddr(p, "addr", c.Addr, "127.0.0.1:8080")
	}
	if c.AdminAddr == "" {
		return
	}
	if !checkAddr(p, "admin-addr", c.AdminAddr, "127.0.0.1:9090") {
		return
	}
	if sameListener(c.Addr, c.AdminAddr) {
		p.add("admin-addr", c.AdminAddr, "is the same address as --addr; the admin listener needs its own port (or \"off\")")
	}
}

// checkAddr reports whether addr is a valid listen address host:port, and
// adds a problem when it is not.
func checkAddr(p *problems, name, addr, example string) bool {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		reason := err.Error()
		if ae, ok := errors.AsType[*net.AddrError](err); ok {
			reason = ae.Err
		}
		p.add(name, addr, "want host:port such as %s (%s)", example, reason)
		return false
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		p.add(name, addr, "want a port number from 0 to 65535 after the colon, as in %s (0 picks a free port)", example)
		return false
	}
	if host != "" && net.ParseIP(host) == nil && !isHostname(host) {
		p.add(name, addr, "want an IP address or a host name before the colon, as in %s (leave it empty to listen on every interface)", example)
		return false
	}
	return true
}

// isHostname reports whether s looks like a DNS name: letters, digits,
// hyphens and dots.
func isHostname(s string) bool {
	for _, r := range s {
		ok := r == '-' || r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z'
		if !ok {
			return false
		}
	}
	return len(s) <= 253
}

// sameListener reports whether two valid addresses would bind the same
// host and fixed port. Port 0 never collides: each listener gets its own.
func sameListener(a, b string) bool {
	ha, pa, errA := net.SplitHostPort(a)
	hb, pb, errB := net.SplitHostPort(b)
	return errA == nil && errB == nil && pa != "0" && pa == pb && ha == hb
}

func (c *Config) resolvePaths(p *problems) {
	dataDirOK := false
	if c.DataDir == "" {
		p.add("data-dir", c.DataDir, "want a directory path such as ./data or /var/lib/berth")
	} else if abs, err := filepath.Abs(c.DataDir); err != nil {
		p.add("data-dir", c.DataDir, "cannot be made absolute: %v", err)
	} else {
		c.DataDir, dataDirOK = abs, true
	}

	if len(c.WorkspaceRoots) == 0 && dataDirOK {
		c.WorkspaceRoots = []string{filepath.Join(c.DataDir, "workspaces")}
	}
	roots := make([]string, 0, len(c.WorkspaceRoots))
	for _, root := range c.WorkspaceRoots {
		abs, err := filepath.Abs(root)
		switch {
		case strings.TrimSpace(root) == "":
			p.add("workspace-root", root, "want a directory path; an empty root is not allowed")
		case err != nil:
			p.add("workspace-root", root, "cannot be made absolute: %v", err)
		case abs == filepath.Dir(abs):
			p.add("workspace-root", root, "a file system root would let any host directory become a workspace; name the directory that holds your projects, such as /srv/projects")
		case !slices.Contains(roots, abs):
			roots = append(roots, abs)
		}
	}
	c.WorkspaceRoots = roots

	switch {
	case c.JWT.KeyFile == "" && dataDirOK:
		c.JWT.KeyFile = filepath.Join(c.DataDir, "jwt-ed25519.pem")
	case c.JWT.KeyFile != "":
		if abs, err := filepath.Abs(c.JWT.KeyFile); err != nil {
			p.add("jwt-key-file", c.JWT.KeyFile, "cannot be made absolute: %v", err)
		} else {
			c.JWT.KeyFile = abs
		}
	}
}

func (c *Config) checkOrigins(p *problems) {
	origins := make([]string, 0, len(c.AllowedOrigins))
	for _, o := range c.AllowedOrigins {
		normal, problem := normalizeOrigin(o)
		if problem != "" {
			p.add("allowed-origins", o, "%s", problem)
			continue
		}
		if !slices.Contains(origins, normal) {
			origins = append(origins, normal)
		}
	}
	c.AllowedOrigins = origins
}

// normalizeOrigin returns o as browsers send it in the Origin header (lower
// case, default port omitted), or a problem saying what is wrong with it.
func normalizeOrigin(o string) (normal, problem string) {
	const want = "want an origin scheme://host[:port] such as https://console.example.com"
	switch o {
	case "*":
		return "", `a wildcard is never accepted: cross-origin calls carry credentials (cookies, Authorization), so "*" would hand a signed-in user's access to any site; list each origin, such as https://console.example.com`
	case "null":
		return "", `"null" is the origin every sandboxed iframe and file:// page shares, so accepting it with credentials would let any of them in; list real origins, such as https://console.example.com`
	}
	u, err := url.Parse(o)
	if err != nil {
		return "", want
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return "", want + "; the scheme must be http or https"
	case u.Opaque != "" || u.Host == "" || u.Hostname() == "":
		return "", want + "; the host is missing"
	case strings.Contains(u.Host, "*"):
		return "", "wildcards are not supported; list each origin, such as https://console.example.com"
	case u.User != nil:
		return "", want + "; an origin has no user name or password"
	case u.Path != "" || u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return "", want + "; an origin has no path, query or fragment, not even a trailing slash"
	}
	host, port := strings.ToLower(u.Hostname()), u.Port()
	scheme := strings.ToLower(u.Scheme)
	if scheme == "https" && port == "443" || scheme == "http" && port == "80" {
		port = ""
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port != "" {
		host += ":" + port
	}
	return scheme + "://" + host, ""
}

func (c *Config) checkTokens(p *problems) {
	if strings.TrimSpace(c.JWT.Issuer) == "" {
		p.add("jwt-issuer", c.JWT.Issuer, "want a non-empty issuer such as berth or https://berth.example.com")
	}
	if strings.TrimSpace(c.JWT.Audience) == "" {
		p.add("jwt-audience", c.JWT.Audience, "want a non-empty audience such as berth-api")
	}
	access, refresh := c.JWT.AccessTokenTTL, c.JWT.RefreshTokenTTL
	accessOK := access >= time.Minute && access <= 24*time.Hour
	if !accessOK {
		p.add("access-token-ttl", formatDuration(access), "want a duration from 1m to 24h; access tokens cannot be revoked, so they must be short-lived")
	}
	if refresh <= 0 {
		p.add("refresh-token-ttl", formatDuration(refresh), "want a positive duration longer than --access-token-ttl, such as 720h")
	} else if accessOK && refresh <= access {
		p.add("refresh-token-ttl", formatDuration(refresh), "must be longer than --access-token-ttl (%s), or the refresh token would expire before the access token it renews", formatDuration(access))
	}
}

func (c *Config) checkHTTP(p *problems) {
	h := c.HTTP
	if h.ReadHeaderTimeout <= 0 {
		p.add("read-header-timeout", formatDuration(h.ReadHeaderTimeout), "want a positive duration such as 10s; without it a client can hold a connection by sending headers slowly")
	}
	for _, d := range []struct {
		name string
		d    time.Duration
	}{
		{"read-timeout", h.ReadTimeout},
		{"write-timeout", h.WriteTimeout},
		{"idle-timeout", h.IdleTimeout},
	} {
		if d.d < 0 {
			p.add(d.name, formatDuration(d.d), "want a duration of 0 (no limit) or more, such as 60s")
		}
	}
	if h.MaxHeaderBytes <= 0 {
		p.add("max-header-bytes", strconv.Itoa(h.MaxHeaderBytes), "want a positive number of bytes such as 1048576 (1 MiB)")
	}
	if h.MaxBodyBytes <= 0 {
		p.add("max-body-bytes", strconv.FormatInt(h.MaxBodyBytes, 10), "want a positive number of bytes such as 4194304 (4 MiB)")
	}
	if c.ShutdownTimeout <= 0 {
		p.add("shutdown-timeout", formatDuration(c.ShutdownTimeout), "want a positive duration such as 30s, the time in-flight calls get to finish")
	}
}
