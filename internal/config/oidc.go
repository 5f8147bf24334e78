package config

import (
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// OIDCProvider is one OpenID Connect provider people can sign in with.
//
// Providers have no flags. Each is configured by a set of variables named
// after it, found by listing the environment for BERTH_OIDC_<NAME>_ISSUER:
//
//	BERTH_OIDC_<NAME>_ISSUER         issuer URL (required)
//	BERTH_OIDC_<NAME>_CLIENT_ID      client id registered at the provider (required)
//	BERTH_OIDC_<NAME>_CLIENT_SECRET  its secret (required)
//	BERTH_OIDC_<NAME>_SCOPES         default "openid email profile"; space or comma separated
//	BERTH_OIDC_<NAME>_DISPLAY_NAME   default the provider's name
//
// The provider's name is <NAME> in lower case; it appears in URLs, so it
// may hold only letters, digits, "-" and "_". The redirect URI to register
// at the provider is <public-url>/auth/oidc/<name>/callback.
type OIDCProvider struct {
	// Name is <NAME> in lower case, as it appears in URLs.
	Name string
	// DisplayName is what a login page shows on the provider's button.
	DisplayName string
	// Issuer is the provider's issuer URL exactly as given: the iss claim
	// of its ID tokens must equal it, and discovery reads
	// <Issuer>/.well-known/openid-configuration.
	Issuer string
	// ClientID is berth's client id at the provider, the audience its ID
	// tokens must name.
	ClientID string
	// ClientSecret is berth's client secret at the provider.
	ClientSecret Secret
	// Scopes are the scopes requested; they always include "openid".
	Scopes []string
}

// RedirectURI returns the callback URL of provider p for a server at
// publicURL (as in Config.PublicURL): the redirect URI to register at the
// provider.
func (p OIDCProvider) RedirectURI(publicURL string) string {
	return publicURL + "/auth/oidc/" + p.Name + "/callback"
}

// The variables of one OIDC provider: BERTH_OIDC_<NAME> plus one of these.
const (
	oidcPrefix       = "BERTH_OIDC_"
	oidcIssuer       = "_ISSUER"
	oidcClientID     = "_CLIENT_ID"
	oidcClientSecret = "_CLIENT_SECRET"
	oidcScopes       = "_SCOPES"
	oidcDisplayName  = "_DISPLAY_NAME"
)

var oidcSuffixes = []string{oidcIssuer, oidcClientID, oidcClientSecret, oidcScopes, oidcDisplayName}

// defaultOIDCScopes are requested when BERTH_OIDC_<NAME>_SCOPES is unset.
var defaultOIDCScopes = []string{"openid", "email", "profile"}

// getenvFrom returns a getenv that reads environ ("NAME=value" entries);
// for a name given twice the last entry wins, as with os/exec.
func getenvFrom(environ []string) func(string) string {
	vars := make(map[string]string, len(environ))
	for _, kv := range environ {
		if name, value, ok := strings.Cut(kv, "="); ok {
			vars[name] = value
		}
	}
	return func(name string) string { return vars[name] }
}

// resolveOIDC sets the public URL's default, checks it, and reads and
// checks the OIDC providers configured in environ.
func (c *Config) resolveOIDC(environ []string, p *problems) {
	c.OIDC = readOIDCProviders(environ, p)
	c.resolvePublicURL(p)
}

// resolvePublicURL derives PublicURL from Addr when it is not set, and
// otherwise checks and normalises it.
func (c *Config) resolvePublicURL(p *problems) {
	if c.PublicURL == "" {
		c.PublicURL = publicURLFromAddr(c.Addr)
		// A bad --addr is reported as such; only a valid one with port 0
		// leaves the public URL unknown.
		if _, _, err := net.SplitHostPort(c.Addr); err == nil && c.PublicURL == "" && len(c.OIDC) > 0 {
			p.add("public-url", "", "want the URL browsers reach this server at, such as https://berth.example.com: it cannot be derived from --addr %q, and the OIDC redirect URIs are built from it", c.Addr)
		}
		return
	}
	const want = "want an absolute http(s) URL such as https://berth.example.com"
	u, err := url.Parse(c.PublicURL)
	switch {
	case err != nil:
		p.add("public-url", c.PublicURL, "%s", want)
		return
	case u.Scheme != "http" && u.Scheme != "https":
		p.add("public-url", c.PublicURL, "%s; the scheme must be http or https", want)
		return
	case u.Opaque != "" || u.Host == "" || u.Hostname() == "":
		p.add("public-url", c.PublicURL, "%s; the host is missing", want)
		return
	case u.User != nil:
		p.add("public-url", c.PublicURL, "%s; it must not hold a user name or password", want)
		return
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(c.PublicURL, "#"):
		p.add("public-url", c.PublicURL, "%s; it must have no query or fragment (redirect URIs are built by appending a path)", want)
		return
	}
	if len(c.OIDC) > 0 && c.SecureCookies && u.Scheme == "http" && !isLoopbackHost(u.Hostname()) {
		p.add("public-url", c.PublicURL, "is plain http on a host other than localhost while --secure-cookies is on, so browsers would drop the sign-in cookies; use https, or --secure-cookies=false for development")
	}
	c.PublicURL = strings.TrimRight(c.PublicURL, "/")
}

// publicURLFromAddr returns http:// plus the listen address addr, with
// localhost for a host that listens on every interface, or "" when addr
// is not a host:port with a fixed port.
func publicURLFromAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "0" || port == "" {
		return ""
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port)
}

func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// readOIDCProviders returns the providers configured in environ, sorted by
// name, and adds a problem for every bad or stray BERTH_OIDC_ variable.
func readOIDCProviders(environ []string, p *problems) []OIDCProvider {
	getenv := getenvFrom(environ)
	// The variables, in a stable order; empty ones count as unset.
	var names []string
	seen := map[string]bool{}
	for _, kv := range environ {
		name, value, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, oidcPrefix) && value != "" && !seen[name] {
			seen[name] = true
			names = append(names, name)
		}
	}
	slices.Sort(names)

	// Each BERTH_OIDC_<NAME>_ISSUER names a provider.
	var keys []string // the <NAME>s, as written
	for _, name := range names {
		if key, ok := strings.CutSuffix(strings.TrimPrefix(name, oidcPrefix), oidcIssuer); ok {
			keys = append(keys, key)
		}
	}
	// Every other variable must belong to one of them.
	claimed := map[string]bool{}
	for _, key := range keys {
		for _, suffix := range oidcSuffixes {
			claimed[oidcPrefix+key+suffix] = true
		}
	}
	for _, name := range names {
		if claimed[name] {
			continue
		}
		rest := strings.TrimPrefix(name, oidcPrefix)
		if i := slices.IndexFunc(oidcSuffixes, func(s string) bool { return strings.HasSuffix(rest, s) }); i >= 0 {
			key := strings.TrimSuffix(rest, oidcSuffixes[i])
			p.addEnv(name, redactIf(getenv(name), oidcSuffixes[i] == oidcClientSecret),
				"belongs to OIDC provider %q, which has no %s: set it to the provider's issuer URL, or remove this variable", strings.ToLower(key), oidcPrefix+key+oidcIssuer)
			continue
		}
		p.addEnv(name, "", "is not a known setting; an OIDC provider is configured by BERTH_OIDC_<NAME>_ISSUER, _CLIENT_ID, _CLIENT_SECRET, _SCOPES and _DISPLAY_NAME")
	}

	var providers []OIDCProvider  // nil when there is none
	byName := map[string]string{} // provider name → the <NAME> that claimed it
	for _, key := range keys {
		env := func(suffix string) string { return oidcPrefix + key + suffix }
		pr := OIDCProvider{
			Name:         strings.ToLower(key),
			DisplayName:  strings.TrimSpace(getenv(env(oidcDisplayName))),
			Issuer:       strings.TrimSpace(getenv(env(oidcIssuer))),
			ClientID:     strings.TrimSpace(getenv(env(oidcClientID))),
			ClientSecret: Secret(getenv(env(oidcClientSecret))),
		}
		ok := true
		if problem := checkProviderName(pr.Name); problem != "" {
			p.addEnv(env(oidcIssuer), pr.Issuer, "%s", problem)
			ok = false
		} else if other, dup := byName[pr.Name]; dup {
			p.addEnv(env(oidcIssuer), pr.Issuer, "names OIDC provider %q, as %s does; provider names are not case-sensitive, so keep one", pr.Name, oidcPrefix+other+oidcIssuer)
			ok = false
		} else {
			byName[pr.Name] = key
		}
		if problem := checkIssuer(pr.Issuer); problem != "" {
			p.addEnv(env(oidcIssuer), pr.Issuer, "%s", problem)
			ok = false
		}
		if pr.ClientID == "" {
			p.addEnv(env(oidcClientID), "", "want the client id registered for berth at the provider; it is required")
			ok = false
		}
		if strings.TrimSpace(pr.ClientSecret.Reveal()) == "" {
			p.addEnv(env(oidcClientSecret), "", "want the client secret registered for berth at the provider; it is required")
			ok = false
		}
		pr.Scopes = defaultOIDCScopes
		if raw := getenv(env(oidcScopes)); raw != "" {
			pr.Scopes = splitScopes(raw)
			if !slices.Contains(pr.Scopes, "openid") {
				p.addEnv(env(oidcScopes), raw, `want a list that includes "openid", such as "openid email profile": without it the provider issues no ID token`)
				ok = false
			}
		}
		pr.Scopes = slices.Clone(pr.Scopes)
		if pr.DisplayName == "" {
			pr.DisplayName = pr.Name
		}
		if ok {
			providers = append(providers, pr)
		}
	}
	slices.SortFunc(providers, func(a, b OIDCProvider) int { return strings.Compare(a.Name, b.Name) })
	return providers
}

// checkProviderName returns what is wrong with a provider name, or "".
func checkProviderName(name string) string {
	const rule = "letters, digits, \"-\" and \"_\""
	if name == "" {
		return "names no OIDC provider: write the name between BERTH_OIDC_ and _ISSUER, such as BERTH_OIDC_GOOGLE_ISSUER (" + rule + ")"
	}
	if len(name) > 64 {
		return "names an OIDC provider with a name longer than 64 characters"
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return "names OIDC provider " + strconv.Quote(name) + ", but a provider's name appears in URLs and may hold only " + rule
		}
	}
	return ""
}

// checkIssuer returns what is wrong with an issuer URL, or "".
func checkIssuer(issuer string) string {
	const want = "want the provider's issuer, an absolute http(s) URL such as https://accounts.example.com"
	u, err := url.Parse(issuer)
	switch {
	case err != nil:
		return want
	case u.Scheme != "http" && u.Scheme != "https":
		return want + "; the scheme must be http or https"
	case u.Opaque != "" || u.Host == "" || u.Hostname() == "":
		return want + "; the host is missing"
	case u.User != nil:
		return want + "; it must not hold a user name or password"
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(issuer, "#"):
		return want + "; an issuer has no query or fragment"
	}
	return ""
}

// splitScopes splits a space- or comma-separated list, dropping empty
// entries and duplicates.
func splitScopes(s string) []string {
	var scopes []string
	for _, scope := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
		if !slices.Contains(scopes, scope) {
			scopes = append(scopes, scope)
		}
	}
	return scopes
}

func redactIf(value string, secret bool) string {
	if secret {
		return ""
	}
	return value
}

// oidcLogValue lists the providers for the start-up log line, each under
// its name, without its client secret.
func oidcLogValue(providers []OIDCProvider) slog.Value {
	attrs := make([]slog.Attr, 0, len(providers))
	for _, pr := range providers {
		attrs = append(attrs, slog.Group(pr.Name,
			slog.String("display-name", pr.DisplayName),
			slog.String("issuer", pr.Issuer),
			slog.String("client-id", pr.ClientID),
			slog.Any("scopes", pr.Scopes),
		))
	}
	return slog.GroupValue(attrs...)
}
